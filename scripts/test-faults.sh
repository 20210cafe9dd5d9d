#!/usr/bin/env bash
# test-faults.sh: the fault and security suites (tests built with the
# `faults` tag, named TestFault* and TestSecurity*), then every fuzz target
# for a bounded number of executions (FUZZTIME, default 50000x each) from
# its corpus under testdata/fuzz. A count, not a duration: Go 1.26's fuzz
# coordinator can report a spurious "context deadline exceeded" when a
# duration-based -fuzztime expires (golang/go#75804, fixed in Go 1.27).
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-50000x}

echo "== fault and security suites"
go test -race -count=1 -tags faults -timeout 20m -run 'TestFault|TestSecurity' ./...

echo "== fuzzing ($fuzztime per target)"
git ls-files '*_test.go' | xargs grep -l '^func Fuzz' 2>/dev/null | while read -r f; do
  pkg=./$(dirname "$f")
  grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r target; do
    echo "-- $pkg $target"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -timeout 5m "$pkg"
  done
done
