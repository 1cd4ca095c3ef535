#!/usr/bin/env bash
# Seeds the data set the admin-tui scale figures in docs/benchmarks.md are
# measured on: 10,000 orgs (provisioned through the org registry, 8 at a
# time), 100,000 users with 10 memberships per org, 1,000,000 jobs with
# logs, audit events, flags with overrides, the platform admin
# ops@scale.example, and the dead and waiting jobs in Redis.
#
# It goes to a database and a Redis key prefix of its own, never to the
# development or test data:
#
#   SCALE_DATABASE_URL  default postgres://postgres@127.0.0.1:5432/orgstack_scale
#                       (the database is created if missing)
#   SCALE_REDIS_URL     default redis://127.0.0.1:6379
#   SCALE_REDIS_PREFIX  default orgstack-scale
#   SCALE_OPS_PASSWORD  ops@scale.example's password (default "scale operator password")
#
#   scripts/seed-scale.sh [--orgs N] [--users N] [--jobs N] [--parallel N] [--no-vacuum]
#
# Rerunning resumes where a run stopped and changes nothing once complete.
# Prints how long each part took.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p orgstack-tests --bin seed-scale -- "$@"
