#!/usr/bin/env bash
# Reproduces the accounts figures in docs/benchmarks.md: authenticated reads
# against /healthz in one run, login throughput, server memory, and how many
# PostgreSQL transactions the warm authenticated reads cost.
#
#   scripts/bench-api.sh            (needs wrk: apt-get install wrk)
#   DURATION=30s CONNECTIONS=64 scripts/bench-api.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-64}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }

cargo build --release -q -p orgstack
BIN=$PWD/target/release/orgstack
DIR=$(mktemp -d /tmp/orgstack-bench.XXXXXX)
chmod 755 "$DIR"
export BIND_ADDR=127.0.0.1:18080 METRICS_ADDR=127.0.0.1:19464 RUST_LOG=warn
unset DATABASE_URL REDIS_URL
BASE=http://$BIND_ADDR
(cd "$DIR" && exec "$BIN" dev --data-dir "$DIR/dev") > "$DIR/dev.log" 2>&1 &
DEV=$!
cleanup() { kill -INT "$DEV" 2>/dev/null || true; wait "$DEV" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
for _ in $(seq 1 300); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done
export DATABASE_URL=$(grep -o 'postgres://[^ ]*' "$DIR/dev.log" | head -1)
export REDIS_URL=$(grep -o 'redis://[^ ]*' "$DIR/dev.log" | head -1)

PASSWORD='bench horse battery staple'
ORGSTACK_PASSWORD=$PASSWORD "$BIN" org create "Bench" --slug bench --owner bench@example.com >/dev/null
# 64 more accounts for the login run: attempts on one account run one at a
# time (the throttle's per-email turn), so a throughput run uses many.
{ echo "users:"; for i in $(seq 0 63); do echo "  - { email: login$i@example.com, password_env: BENCH_PASSWORD }"; done; } > "$DIR/users.yaml"
BENCH_PASSWORD=$PASSWORD "$BIN" seed "$DIR/users.yaml" >/dev/null
login_body="{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}"
TOKEN=$(curl -sf -H 'content-type: application/json' -d "$login_body" "$BASE/api/v1/auth/login" | sed 's/.*"token":"\([^"]*\)".*/\1/')
KEY=$(curl -sf -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"name":"bench","role":"viewer"}' "$BASE/api/v1/orgs/bench/api_keys" | sed 's/.*"token":"\([^"]*\)".*/\1/')

rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$DEV/status"; }
xacts() { psql "$DATABASE_URL" -Atc "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"; }
run() { # label, then wrk arguments
  local label=$1; shift
  local out; out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$@")
  printf '%-28s %10s req/s   p50 %8s   p99 %8s   non-2xx %s\n' "$label" \
    "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk '$1=="50%" {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")" \
    "$(awk '/Non-2xx/ {print $5}' <<<"$out" | grep . || echo 0)"
}

echo "server RSS before: $(rss)"
run "GET /healthz" "$BASE/healthz"
curl -sf -H "authorization: Bearer $TOKEN" "$BASE/api/v1/orgs/bench" >/dev/null   # warm the caches
curl -sf -H "authorization: Bearer $KEY" "$BASE/api/v1/orgs/bench" >/dev/null
sleep 1
before=$(xacts)
run "GET /orgs/bench (session)" -H "authorization: Bearer $TOKEN" "$BASE/api/v1/orgs/bench"
run "GET /orgs/bench (API key)" -H "authorization: Bearer $KEY" "$BASE/api/v1/orgs/bench"
after=$(xacts)
echo "PostgreSQL transactions during both authenticated runs: $((after - before))"
cat > "$DIR/login.lua" <<LUA
-- Each connection signs in as its own account (64 accounts).
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"email":"login%d@example.com","password":"$PASSWORD"}', n % 64)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end
LUA
run "POST /auth/login" -s "$DIR/login.lua" "$BASE/api/v1/auth/login"
echo "server RSS right after: $(rss)"
sleep 15
echo "server RSS 15 s later: $(rss)"
