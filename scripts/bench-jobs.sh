#!/usr/bin/env bash
# Reproduces the jobs HTTP figures in docs/benchmarks.md: POST and GET
# /api/v1/orgs/{org}/jobs at 64 connections beside /healthz in one run, the
# same GET spread round-robin over 1,000 orgs, and the resident memory of
# the server and of a separate worker process under that load.
#
#   scripts/bench-jobs.sh                    (needs wrk: apt-get install wrk)
#   DURATION=30s CONNECTIONS=64 ORGS=1000 scripts/bench-jobs.sh
#   BIN=/tmp/orgstack-other scripts/bench-jobs.sh
#   CPU=1 scripts/bench-jobs.sh    (also: where the CPU went during the POST run)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-64}
ORGS=${ORGS:-1000}
WORKER_CONCURRENCY=${WORKER_CONCURRENCY:-64}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }

# BIN=path measures another build of orgstack (say, one kept aside to
# compare two builds run after run); by default the release build here.
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p orgstack
  BIN=$PWD/target/release/orgstack
fi
DIR=$(mktemp -d /tmp/orgstack-bench.XXXXXX)
chmod 755 "$DIR"
export BIND_ADDR=127.0.0.1:18080 METRICS_ADDR=127.0.0.1:19464 RUST_LOG=warn
unset DATABASE_URL REDIS_URL
BASE=http://$BIND_ADDR
# The server (with the scheduler) and private PostgreSQL and Redis; the
# worker runs as a process of its own, so each one's memory can be read.
(cd "$DIR" && exec "$BIN" dev --no-worker --data-dir "$DIR/dev") > "$DIR/dev.log" 2>&1 &
DEV=$!
WORKER=
cleanup() {
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

echo "seeding: the bench org, $ORGS more, and a member of all of them"
PASSWORD='bench horse battery staple'
{
  echo "orgs:"
  echo "  - { name: Bench, slug: bench }"
  for i in $(seq 1 "$ORGS"); do printf '  - { name: "Org %d", slug: org-%05d }\n' "$i" "$i"; done
  echo "users:"
  echo "  - email: bench@example.com"
  echo "    password_env: BENCH_PASSWORD"
  echo "    memberships:"
  echo "      - { org: bench, role: member }"
  for i in $(seq 1 "$ORGS"); do printf '      - { org: org-%05d, role: member }\n' "$i"; done
} > "$DIR/seed.yaml"
BENCH_PASSWORD=$PASSWORD "$BIN" seed "$DIR/seed.yaml" >/dev/null

(cd "$DIR" && exec "$BIN" worker --concurrency "$WORKER_CONCURRENCY") > "$DIR/worker.log" 2>&1 &
WORKER=$!
TOKEN=$(curl -sf -H 'content-type: application/json' \
  -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}" "$BASE/api/v1/auth/login" |
  sed 's/.*"token":"\([^"]*\)".*/\1/')
# Signing in hashes the password with argon2id (19 MiB of working memory);
# give the allocator time to return it, so the figures below are the load's.
sleep 20

cat > "$DIR/auth.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
cat > "$DIR/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"kind":"noop"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
cat > "$DIR/post_orgs.lua" <<LUA
local n = 0
local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer $TOKEN" }
request = function()
  n = n + 1
  return wrk.format("POST", string.format("/api/v1/orgs/org-%05d/jobs", n % $ORGS + 1), headers, '{"kind":"noop"}')
end
LUA
cat > "$DIR/get_orgs.lua" <<LUA
local n = 0
local headers = { ["Authorization"] = "Bearer $TOKEN" }
request = function()
  n = n + 1
  return wrk.format("GET", string.format("/api/v1/orgs/org-%05d/jobs?limit=50", n % $ORGS + 1), headers)
end
LUA

# Memory (kB) of a process each second: resident (RSS), proportional
# (PSS: shared pages, such as the binary's code that the server and the
# worker both map, split between the processes; the measure quoted for
# Celery and gunicorn) and anonymous (heap and stacks, the process's own).
sample() {
  while kill -0 "$1" 2>/dev/null; do
    awk '$1=="Rss:" {r=$2} $1=="Pss:" {p=$2} $1=="Anonymous:" {a=$2} END {print r, p, a}' \
      "/proc/$1/smaps_rollup" >> "$2" 2>/dev/null
    sleep 1
  done
}
sample "$DEV" "$DIR/server.mem" &
sample "$WORKER" "$DIR/worker.mem" &
peak() { # file: peak RSS, peak PSS, peak anonymous (MB)
  awk '$1>r {r=$1} $2>p {p=$2} $3>a {a=$3} END {printf "RSS %.1f MB, PSS %.1f MB, anonymous %.1f MB", r/1024, p/1024, a/1024}' "$1"
}
now() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

run() { # label, then wrk arguments
  local label=$1; shift
  local out; out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$@")
  printf '%-44s %9s req/s   p50 %8s   p99 %8s   non-2xx %s   errors %s\n' "$label" \
    "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk '$1=="50%" {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")" \
    "$(awk '/Non-2xx/ {print $5}' <<<"$out" | grep . || echo 0)" \
    "$(awk '/Socket errors/ {print $0}' <<<"$out" | grep . || echo 0)"
}
drained() {
  for _ in $(seq 1 600); do
    local left; left=$("$BIN" queues --json | tr -d ' \n' | grep -o '"depth":[0-9]*,"in_flight":[0-9]*' | head -1)
    [ "$left" = '"depth":0,"in_flight":0' ] && return 0
    sleep 1
  done
  echo "the queue did not drain"; return 1
}

# CPU time (ticks) of every process: pid, name, user + system. Processes
# that start later (PostgreSQL backends a growing pool opens) count from
# zero; those that have ended by then (wrk) only in the machine's total.
ticks() {
  awk 'FNR == 1 { match($0, /.*\) /); split(substr($0, RLENGTH + 1), f, " ")
                  name = substr($0, index($0, "(") + 1, RLENGTH - index($0, "(") - 2)
                  print FILENAME, name, f[12] + f[13] }' /proc/[0-9]*/stat 2>/dev/null |
    sed 's|^/proc/\([0-9]*\)/stat|\1|' || true
}
cpu_split() { # ticks before, ticks after: CPU seconds per process group
  awk -v dev="$DEV" -v worker="$WORKER" -v hz="$(getconf CLK_TCK)" '
    NR == FNR { before[$1] = $NF; next }
    { d = $NF - before[$1]; if (d <= 0) next
      g = ($1 == dev) ? "server" : ($1 == worker) ? "worker" : $2
      if (g ~ /^(server|worker|postgres|redis-server)$/) t[g] += d; else t["other"] += d }
    END { for (g in t) printf "  %-13s %6.2f s\n", g, t[g] / hz }' "$1" "$2" | sort -k2 -rn
}

echo "server RSS at start: $(now "$DEV") kB, worker RSS at start: $(now "$WORKER") kB"
run "GET /healthz" "$BASE/healthz"
[ -n "${CPU:-}" ] && { ticks > "$DIR/ticks0"; head -1 /proc/stat > "$DIR/stat0"; }
run "POST /orgs/bench/jobs (noop)" -s "$DIR/post.lua" "$BASE/api/v1/orgs/bench/jobs"
if [ -n "${CPU:-}" ]; then
  ticks > "$DIR/ticks1"; head -1 /proc/stat > "$DIR/stat1"
  echo "CPU during that run, by process (user + system):"
  cpu_split "$DIR/ticks0" "$DIR/ticks1"
  # The machine's own count (the cpu line of /proc/stat): what no process
  # above shows (wrk, softirq work for loopback networking) and idle time.
  paste -d' ' "$DIR/stat0" "$DIR/stat1" | awk -v hz="$(getconf CLK_TCK)" \
    '{ printf "  machine: busy %.2f s (softirq %.2f s), idle %.2f s\n", (($13+$14+$15+$18+$19)-($2+$3+$4+$7+$8))/hz, ($19-$8)/hz, ($16-$5)/hz }'
fi
run "POST /orgs/{1 of $ORGS}/jobs, round-robin" -s "$DIR/post_orgs.lua" "$BASE"
drained
echo "queue drained by the worker"
run "GET /orgs/bench/jobs?limit=50" -s "$DIR/auth.lua" "$BASE/api/v1/orgs/bench/jobs?limit=50"
run "GET /orgs/{1 of $ORGS}/jobs?limit=50, round-robin" -s "$DIR/get_orgs.lua" "$BASE"
run "GET /orgs/bench/jobs?limit=50 (again)" -s "$DIR/auth.lua" "$BASE/api/v1/orgs/bench/jobs?limit=50"
echo "peak memory during the runs: server $(peak "$DIR/server.mem"); worker $(peak "$DIR/worker.mem")"
