#!/usr/bin/env bash
# Runs every Go fuzz target in the module for the given budget each:
# an execution count (default 20000x) or a duration (./scripts/fuzz.sh 5m).
# CI uses counts: with a duration, Go 1.26's fuzz coordinator can report a
# spurious "context deadline exceeded" when its workers are slow to stop
# at the deadline on a loaded machine (golang/go#75804, fixed in Go 1.27).
set -euo pipefail
fuzztime=${1:-20000x}
cd "$(dirname "$0")/.."
found=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    found=$((found + 1))
    echo "== fuzz $pkg $target ($fuzztime)"
    go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -timeout 10m
  done
done
echo "fuzz: $found targets"
