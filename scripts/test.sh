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

echo "== go test -race"
go test -race -count=1 -timeout 20m ./...
