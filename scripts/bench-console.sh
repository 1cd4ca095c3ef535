#!/usr/bin/env bash
# Reproduces the "admin-tui at scale" figures in docs/benchmarks.md, on the
# data set of scripts/seed-scale.sh (run that first):
#
#   scripts/bench-console.sh                   both parts below
#   scripts/bench-console.sh --frames-only [-- BENCH ARGS]
#       cargo bench --bench console: time to first full frame, per-frame
#       render time of every view, load time of every view's data
#   scripts/bench-console.sh --memory-only
#       the resident memory of the real admin-tui (release build) on the
#       live dashboard, sampled every minute for MINUTES (default 10)
#       minutes, while an `orgstack worker` runs against the same database
#       and prefix and `orgstack jobs enqueue` adds about RATE (default 2)
#       jobs a second to 20 orgs (ORGSTACK_BIN and ADMIN_TUI_BIN skip the
#       build and use those binaries)
#
# Same variables as scripts/seed-scale.sh (SCALE_DATABASE_URL,
# SCALE_REDIS_URL, SCALE_REDIS_PREFIX). Needs tmux.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=all
case "${1:-}" in
  --frames-only) MODE=frames; shift; [ "${1:-}" = "--" ] && shift ;;
  --memory-only) MODE=memory; shift ;;
esac
MINUTES=${MINUTES:-10}
RATE=${RATE:-2}
SCALE_DATABASE_URL=${SCALE_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/orgstack_scale}
SCALE_REDIS_URL=${SCALE_REDIS_URL:-redis://127.0.0.1:6379}
SCALE_REDIS_PREFIX=${SCALE_REDIS_PREFIX:-orgstack-scale}
export SCALE_DATABASE_URL SCALE_REDIS_URL SCALE_REDIS_PREFIX
command -v tmux >/dev/null || { echo "tmux is not installed (apt-get install tmux)"; exit 1; }

if [ "$MODE" != memory ]; then
  cargo bench -q -p orgstack-tests --bench console -- "$@"
fi
[ "$MODE" = frames ] && exit 0

# ORGSTACK_BIN and ADMIN_TUI_BIN may name binaries already built (such as
# the bench build's orgstack-cli and admin-tui-cli, the same programs).
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
if [ -z "${ORGSTACK_BIN:-}" ] || [ -z "${ADMIN_TUI_BIN:-}" ]; then
  cargo build --release -q -p orgstack -p admin-tui
fi
BIN=${ORGSTACK_BIN:-$TARGET/release/orgstack}
TUI=${ADMIN_TUI_BIN:-$TARGET/release/admin-tui}
DIR=$(mktemp -d /tmp/orgstack-console.XXXXXX)
chmod 755 "$DIR"
VARS="DATABASE_URL=$SCALE_DATABASE_URL REDIS_URL=$SCALE_REDIS_URL REDIS_KEY_PREFIX=$SCALE_REDIS_PREFIX RUST_LOG=warn PATH=$PATH"
SESSION=console-memory-$$
WORKER= LOOP=
cleanup() {
  tmux kill-session -t "$SESSION" 2>/dev/null || true
  [ -n "$LOOP" ] && kill "$LOOP" 2>/dev/null
  [ -n "$WORKER" ] && kill -TERM "$WORKER" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

# shellcheck disable=SC2086 # VARS is a list of NAME=value words
(cd "$DIR" && exec env -i $VARS "$BIN" worker --concurrency 4) > "$DIR/worker.log" 2>&1 &
WORKER=$!
# A steady trickle of jobs into orgs 1 to 20: no-ops, and sleeps that log.
(
  n=0
  while :; do
    n=$((n + 1))
    slug=$(printf 'scale-%05d' $((n % 20 + 1)))
    if [ $((n % 2)) = 0 ]; then kind=noop payload=null; else kind=sleep payload='{"ms":50,"lines":3}'; fi
    # shellcheck disable=SC2086
    (cd "$DIR" && env -i $VARS "$BIN" jobs enqueue "$slug" "$kind" --payload "$payload") \
      >/dev/null 2>>"$DIR/enqueue.err" && echo "$n" > "$DIR/enqueued"
    sleep "$(awk "BEGIN {print 1 / $RATE}")"
  done
) &
LOOP=$!

tmux new-session -d -s "$SESSION" -x 160 -y 48 \
  "cd '$DIR' && exec env -i $VARS TERM=xterm-256color '$TUI' --as ops@scale.example"
TUI_PID=$(tmux list-panes -t "$SESSION" -F '#{pane_pid}')
for _ in $(seq 1 300); do
  tmux capture-pane -p -t "$SESSION" | grep -q PostgreSQL && break
  sleep 0.1
done
kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }
echo "admin-tui (pid $TUI_PID) on the live dashboard; worker pid $WORKER; about $RATE jobs/s enqueued"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-7s %14s %14s %16s %10s\n' minute "admin-tui RSS" "admin-tui peak" "worker RSS" enqueued
for m in $(seq 0 "$MINUTES"); do
  [ "$m" -gt 0 ] && sleep 60
  kill -0 "$TUI_PID" 2>/dev/null || { echo "admin-tui exited; its screen:"; tmux capture-pane -p -t "$SESSION" || true; exit 1; }
  printf '%-7s %11s kB %11s kB %13s kB %10s\n' "$m" "$(kb "$TUI_PID" VmRSS)" "$(kb "$TUI_PID" VmHWM)" \
    "$(kb "$WORKER" VmRSS 2>/dev/null || echo -)" "$(cat "$DIR/enqueued" 2>/dev/null || echo 0)"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "the dashboard after $MINUTES minutes:"
tmux capture-pane -p -t "$SESSION" | sed -n '1,16p'
[ -s "$DIR/enqueue.err" ] && { echo "what orgstack jobs enqueue printed on stderr (last 3 lines):"; tail -3 "$DIR/enqueue.err"; }
exit 0
