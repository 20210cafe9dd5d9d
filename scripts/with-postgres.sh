#!/usr/bin/env bash
# with-postgres.sh CMD...: runs CMD with a PostgreSQL server available.
#
# If CALLBRIDGE_TEST_DATABASE_URL, DATABASE_URL or CALLBRIDGE_DATABASE_URL
# is set, that server is used as it is. Otherwise a throwaway cluster is
# created with initdb in a temporary directory, started on a free port on
# 127.0.0.1, exported as DATABASE_URL, CALLBRIDGE_TEST_DATABASE_URL and
# CALLBRIDGE_DATABASE_URL, and stopped and removed when CMD ends.
# PostgreSQL's binaries are installed with apt-get when missing and we are
# root; otherwise the script says what to install.
set -euo pipefail

url="${CALLBRIDGE_TEST_DATABASE_URL:-${DATABASE_URL:-${CALLBRIDGE_DATABASE_URL:-}}}"
if [ -n "$url" ]; then
  export CALLBRIDGE_TEST_DATABASE_URL="$url" DATABASE_URL="$url"
  export CALLBRIDGE_DATABASE_URL="${CALLBRIDGE_DATABASE_URL:-$url}"
  exec "$@"
fi

find_bin() {
  local d
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"; return 0
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

bindir=$(find_bin || true)
if [ -z "$bindir" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "with-postgres: installing PostgreSQL (apt-get install postgresql)..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    bindir=$(find_bin)
  else
    echo "with-postgres: PostgreSQL is not installed. Install it (Debian: sudo apt-get install postgresql)" >&2
    echo "               or set DATABASE_URL to a server you can create databases on." >&2
    exit 1
  fi
fi

dir=$(mktemp -d -t callbridge-pg.XXXXXX)
run_as=()
if [ "$(id -u)" = 0 ]; then
  # initdb refuses to run as root: use the postgres system user.
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$dir"
  run_as=(runuser -u postgres --)
fi

cleanup() {
  "${run_as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

"${run_as[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 || {
  cat "$dir/initdb.log" >&2; exit 1; }

started=""
for _ in 1 2 3 4 5 6 7 8; do
  port=$(( 20000 + RANDOM % 40000 ))
  if "${run_as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c shared_buffers=256MB" \
      start >/dev/null 2>&1; then
    started=1; break
  fi
done
[ -n "$started" ] || { echo "with-postgres: could not start PostgreSQL:" >&2; cat "$dir/server.log" >&2; exit 1; }

url="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
export CALLBRIDGE_TEST_DATABASE_URL="$url" DATABASE_URL="$url" CALLBRIDGE_DATABASE_URL="$url"
echo "with-postgres: throwaway PostgreSQL on 127.0.0.1:$port ($dir)" >&2
set +e
"$@"
rc=$?
exit $rc
