#!/usr/bin/env bash
# Reproduces the "admin-tui over SSH" figures in docs/benchmarks.md: bytes
# per second that `admin-tui ssh-serve` sends to one OpenSSH client (80x24,
# in tmux) on the idle dashboard and on the live one (a worker running noop
# jobs enqueued over HTTP at about 100 a second).
#
# The figures come from the server's own per-session counters, logged when a
# session ends: `bytes_sent` (terminal output on the channel) and
# `wire_bytes_sent` (everything written to the TCP connection: SSH framing,
# encryption, MACs, keepalives). Each rate is the difference between a long
# and a short session (handshake and first screen cancel out), divided by
# the difference in their lengths.
#
#   scripts/bench-ssh.sh                 (needs tmux, ssh, curl)
#   SECONDS_LONG=70 SECONDS_SHORT=10 PROFILE=release scripts/bench-ssh.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_LONG=${SECONDS_LONG:-70}
SECONDS_SHORT=${SECONDS_SHORT:-10}
PROFILE=${PROFILE:-debug}
for tool in tmux ssh ssh-keygen curl; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install tmux openssh-client curl)"; exit 1; }
done

# What is measured is bytes, not speed: a debug build does (and builds faster).
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p orgstack -p admin-tui
else
  cargo build -q -p orgstack -p admin-tui
fi
BIN_DIR=${CARGO_TARGET_DIR:-$PWD/target}/$PROFILE
ORGSTACK=$BIN_DIR/orgstack
TUI=$BIN_DIR/admin-tui
DIR=$(mktemp -d /tmp/orgstack-bench-ssh.XXXXXX)
chmod 755 "$DIR"
export BIND_ADDR=127.0.0.1:18082 METRICS_ADDR=127.0.0.1:19466 RUST_LOG=warn NO_COLOR=1
unset DATABASE_URL REDIS_URL
BASE=http://$BIND_ADDR
PORT=${PORT:-12222}
SESSION=orgstack-bench-ssh-$$
(cd "$DIR" && exec "$ORGSTACK" dev --no-worker --data-dir "$DIR/dev") > "$DIR/dev.log" 2>&1 &
DEV=$!
SERVE=
WORKER=
LOAD=
cleanup() {
  tmux kill-session -t "$SESSION" 2>/dev/null || true
  for pid in $LOAD $WORKER $SERVE; do kill "$pid" 2>/dev/null || true; done
  kill -INT "$DEV" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
for _ in $(seq 1 600); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done
export DATABASE_URL=$(grep -o 'postgres://[^ ]*' "$DIR/dev.log" | head -1)
export REDIS_URL=$(grep -o 'redis://[^ ]*' "$DIR/dev.log" | head -1)

ssh-keygen -q -t ed25519 -N '' -C bench -f "$DIR/key"
"$ORGSTACK" admin-keys add --user admin@example.com --key-file "$DIR/key.pub" >/dev/null
(cd "$DIR" && RUST_LOG=info SSH_HOST_KEY="$DIR/host_key" exec "$TUI" ssh-serve --listen "127.0.0.1:$PORT") \
  2> "$DIR/serve.log" &
SERVE=$!
for _ in $(seq 1 200); do grep -q "serving admin-tui over SSH" "$DIR/serve.log" && break; sleep 0.1; done

# One session of $1 seconds on the dashboard; prints "seconds bytes_sent wire_bytes_sent".
session() {
  local before; before=$(grep -c "console session ended" "$DIR/serve.log" || true)
  tmux new-session -d -s "$SESSION" -x 80 -y 24 \
    "ssh -F /dev/null -tt -p $PORT -i $DIR/key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
     -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes -o LogLevel=ERROR op@127.0.0.1"
  for _ in $(seq 1 300); do tmux capture-pane -p -t "$SESSION" | grep -q "PostgreSQL up" && break; sleep 0.1; done
  sleep "$1"
  tmux capture-pane -p -t "$SESSION" | grep -o 'jobs/s: [0-9]* now' | tail -1 >> "$DIR/shown" || true
  tmux send-keys -t "$SESSION" q
  for _ in $(seq 1 100); do
    [ "$(grep -c "console session ended" "$DIR/serve.log" || true)" -gt "$before" ] && break
    sleep 0.1
  done
  tmux kill-session -t "$SESSION" 2>/dev/null || true
  grep "console session ended" "$DIR/serve.log" | tail -1 |
    sed -E 's/.*seconds="?([0-9.]+)"? bytes_sent=([0-9]+) wire_bytes_sent=([0-9]+).*/\1 \2 \3/'
}

# Bytes per second between a short and a long session.
measure() {
  local label=$1 short long
  short=$(session "$SECONDS_SHORT")
  long=$(session "$SECONDS_LONG")
  awk -v label="$label" -v s="$short" -v l="$long" 'BEGIN {
    split(s, a, " "); split(l, b, " ");
    dt = b[1] - a[1];
    printf "%-28s %7.1f B/s on the channel   %7.1f B/s on the wire   (sessions of %.1f s: %d / %d B; %.1f s: %d / %d B)\n",
      label, (b[2] - a[2]) / dt, (b[3] - a[3]) / dt, a[1], a[2], a[3], b[1], b[2], b[3]
  }'
}

measure "idle dashboard"

"$ORGSTACK" worker --concurrency 4 > "$DIR/worker.log" 2>&1 &
WORKER=$!
TOKEN=$(curl -sf -H 'content-type: application/json' \
  -d '{"email":"admin@example.com","password":"orgstack-dev-password"}' \
  "$BASE/api/v1/auth/login" | sed 's/.*"token":"\([^"]*\)".*/\1/')
URLS=$(for _ in $(seq 1 20); do printf '%s ' "$BASE/api/v1/orgs/demo/jobs"; done)
(
  while true; do
    # shellcheck disable=SC2086
    curl -s -o /dev/null -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
      -d '{"kind":"noop"}' $URLS || true
    sleep 0.2
  done
) > /dev/null 2>&1 &
LOAD=$!
sleep 5   # the worker's counters and the sparkline fill up
measure "live dashboard (jobs/s)"
kill "$LOAD" 2>/dev/null || true
echo "load: noop jobs over HTTP, 20 every 0.2 s, one worker (concurrency 4); the live dashboard showed $(tail -1 "$DIR/shown");"
echo "$(nproc) cores, $(uptime | sed 's/.*load average/load average/')"
