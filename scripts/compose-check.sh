#!/usr/bin/env bash
# compose-check.sh: validates docker/docker-compose.yml with the example
# settings as `docker compose config` would, through the compose
# specification's Go library (docker/compose_test.go): no Docker install.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -count=1 -run 'TestCompose|TestEnvExample' ./docker
echo "docker/docker-compose.yml: valid"
