#!/usr/bin/env bash
# Checks the systemd units of this folder with `systemd-analyze verify` (and
# their hardening with `systemd-analyze security`), as .ci/run does.
#
#   deploy/systemd/verify.sh [BINARY]
#
# `verify` wants every ExecStart binary to exist, so the units are checked
# as copies whose /usr/local/bin/orgstack points at BINARY: by default the
# test build of the real command line, target/debug/orgstack-cli (the same
# main as the `orgstack` binary; `cargo test` builds it). The worker
# template is checked as its instance orgstack-worker@default.service.
# systemd-analyze reports unknown keys and bad values only as warnings, so
# any output at all fails the check.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-${CARGO_TARGET_DIR:-$here/../../target}/debug/orgstack-cli}"
[ -x "$bin" ] || { echo "verify.sh: no executable at $bin (run cargo test first)" >&2; exit 1; }
bin="$(realpath "$bin")"
command -v systemd-analyze >/dev/null || { echo "verify.sh: systemd-analyze is missing (apt-get install systemd)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
units=()
for unit in "$here"/*.service "$here"/*.target; do
  name="$(basename "$unit")"
  sed "s#/usr/local/bin/orgstack\\b#$bin#g" "$unit" >"$work/$name"
  case "$name" in
    *@.service) # a template is verified through one instance
      ln -s "$name" "$work/${name%@.service}@default.service"
      units+=("$work/${name%@.service}@default.service") ;;
    *) units+=("$work/$name") ;;
  esac
done

# The copies must differ from the originals only in the binary's path.
if grep -l /usr/local/bin/orgstack "$work"/* >/dev/null 2>&1; then
  echo "verify.sh: a unit still names /usr/local/bin/orgstack after the rewrite" >&2
  exit 1
fi

out="$(cd "$work" && systemd-analyze verify --man=no "${units[@]}" 2>&1)" || {
  printf '%s\n' "$out" >&2
  echo "verify.sh: systemd-analyze verify failed" >&2
  exit 1
}
if [ -n "$out" ]; then
  printf '%s\n' "$out" >&2
  echo "verify.sh: systemd-analyze verify warned (treated as a failure)" >&2
  exit 1
fi

# Every long-running unit keeps its hardening: exposure at most 2.5 of 10
# ("OK"; the units score 1.8).
for unit in "${units[@]}"; do
  case "$unit" in *.target) continue ;; esac
  if ! report="$(cd "$work" && systemd-analyze security --offline=yes --threshold=25 "$unit" 2>&1)"; then
    printf '%s\n' "$report" | tail -n 5 >&2
    echo "verify.sh: $(basename "$unit") is less hardened than expected" >&2
    exit 1
  fi
done

echo "systemd units verified: $(cd "$here" && ls ./*.service ./*.target | xargs -n1 basename | tr '\n' ' ')"
