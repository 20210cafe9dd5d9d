#!/usr/bin/env bash
# lint.sh VERSION: gofmt, go vet and staticcheck (installed at the pinned VERSION if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-v0.7.0}
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi
# The suites behind build tags are code too: vet and check them as well.
tags="faults realswitch cluster capacity"
go vet ./...
go vet -tags "$tags" ./...
sc=$(go env GOPATH)/bin/staticcheck
if ! [ -x "$sc" ] || ! "$sc" -version 2>/dev/null | grep -q "${version#v}"; then
  go install "honnef.co/go/tools/cmd/staticcheck@$version"
fi
"$sc" -tags "$tags" ./...
echo "lint: clean"
