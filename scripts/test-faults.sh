#!/usr/bin/env bash
# test-faults.sh: the fault and security suites (tests built with the
# `faults` tag, named TestFault* and TestSecurity*), then every fuzz target
# for a bounded time (FUZZTIME, default 10s each) with its corpus under testdata/fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}

echo "== fault and security suites"
go test -race -count=1 -tags faults -timeout 20m -run 'TestFault|TestSecurity' ./...

echo "== fuzzing ($fuzztime per target)"
git ls-files '*_test.go' | xargs grep -l '^func Fuzz' 2>/dev/null | while read -r f; do
  pkg=./$(dirname "$f")
  grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r target; do
    echo "-- $pkg $target"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
  done
done
