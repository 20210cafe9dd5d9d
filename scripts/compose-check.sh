#!/usr/bin/env bash
# compose-check.sh: validates docker/docker-compose.yml with `docker-compose config`,
# installing Debian's docker-compose when it is missing and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f docker/docker-compose.yml ] || { echo "compose-check: docker/docker-compose.yml missing" >&2; exit 1; }
if ! command -v docker-compose >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >&2
  else
    echo "compose-check: docker-compose is not installed (Debian: sudo apt-get install docker-compose)" >&2
    exit 1
  fi
fi
envfile=docker/.env.example
docker-compose --env-file "$envfile" -f docker/docker-compose.yml config -q
echo "docker/docker-compose.yml: valid"
