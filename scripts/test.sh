#!/usr/bin/env bash
# test.sh: what `make test` runs once a PostgreSQL server is available.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '^vendor/') 2>&1 || true)
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi

echo "== go vet"
go vet ./...

echo "== compose file (compose-go, no Docker needed)"
scripts/compose-check.sh

# TestDocs runs the shell commands README.md and docs/ show, which use curl
# and jq (and make, for TestDemoInterrupt's make demo).
missing=()
for tool in curl jq make; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing ${missing[*]} (apt-get install): the documents' commands need them"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "test: ${missing[*]} missing: the documents' commands need them (Debian: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

echo "== go test -race"
go test -race -count=1 -timeout 20m ./...
