#!/usr/bin/env bash
# Runs every fuzz target in the module for the given time each (default 20s).
# A crasher is saved under the package's testdata/fuzz and fails the run.
#
# Go up to 1.26 can end a fuzz run that found nothing with a bare "context
# deadline exceeded" when -fuzztime runs out while a worker is busy (the
# fuzzing coordinator's shutdown race, https://go.dev/issue/75804, fixed in
# Go 1.27). Such a run wrote no failing input; it counts as passed once the
# target's corpus replays cleanly. Any other failure fails the run.
set -euo pipefail
time=${1:-20s}
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
    echo "== $pkg $target ($time)"
    if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$time" "$pkg" 2>&1 | tee "$log"; then
      continue
    fi
    if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written to' "$log"; then
      echo "== $pkg $target: stopped by the fuzzing engine's deadline race (go.dev/issue/75804) with no failing input; replaying its corpus"
      go test -count=1 -run "^${target}\$" "$pkg"
      continue
    fi
    exit 1
  done
done
