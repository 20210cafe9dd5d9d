#!/usr/bin/env bash
# test-freeswitch.sh: what `make test-freeswitch` (and, with
# REALSWITCH_SUITE=cluster, `make test-cluster`) runs: the real-switch
# suite (realswitch/, build tag realswitch) against the FreeSWITCH in
# FREESWITCH_DIR (default ../shared/freeswitch), with sipp as carriers and
# phones, on loopback with free ports. PostgreSQL comes from
# scripts/with-postgres.sh (the Makefile wraps this script in it).
#
# On a fresh Debian machine it installs what is missing, with apt-get when
# root (saying what), or fails saying what to install: FreeSWITCH's runtime
# libraries (../shared/freeswitch/README.md) and sip-tester (sipp 3.6).
# No FreeSWITCH is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

fsdir="${FREESWITCH_DIR:-../shared/freeswitch}"
if [ ! -x "$fsdir/run.sh" ]; then
  echo "test-freeswitch: no FreeSWITCH in $fsdir (no run.sh)." >&2
  echo "  Set FREESWITCH_DIR to a FreeSWITCH 1.10 build holding run.sh, bin/ and mod/:" >&2
  echo "  the one in ../shared/freeswitch (see its README.md), or build v1.10.12 with the" >&2
  echo "  15 modules of freeswitch-conf/autoload_configs/modules.conf.xml." >&2
  exit 1
fi
export FREESWITCH_DIR="$(cd "$fsdir" && pwd)"

# Debian packages of the libraries the build links to, and sipp.
packages=(libcurl4 libedit2 libfreetype6 libjpeg62-turbo libpcre3 libsndfile1 libspeex1
  libspeexdsp1 libsqlite3-0 libssl3 libtiff6 libuuid1 sip-tester)
# REALSWITCH_SUITE=cluster (make test-cluster) runs the scale-out suite,
# which also needs Kamailio (Debian's kamailio 5.6).
suite="${REALSWITCH_SUITE:-realswitch}"
case "$suite" in
  realswitch) ;;
  cluster) packages+=(kamailio) ;;
  *) echo "test-freeswitch: unknown REALSWITCH_SUITE $suite (realswitch or cluster)" >&2; exit 2 ;;
esac
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-freeswitch: installing ${missing[*]} (apt-get install)..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  else
    echo "test-freeswitch: missing packages: ${missing[*]}" >&2
    echo "  Install them (Debian: sudo apt-get install ${missing[*]})." >&2
    exit 1
  fi
fi

# Every library FreeSWITCH and its modules need must resolve.
unresolved=$(LD_LIBRARY_PATH="$FREESWITCH_DIR/lib" ldd "$FREESWITCH_DIR/bin/freeswitch" "$FREESWITCH_DIR"/mod/*.so 2>/dev/null | grep "not found" | sort -u || true)
if [ -n "$unresolved" ]; then
  echo "test-freeswitch: FreeSWITCH in $FREESWITCH_DIR lacks libraries:" >&2
  echo "$unresolved" >&2
  exit 1
fi

echo "== go test -tags $suite ./$suite/ (FreeSWITCH in $FREESWITCH_DIR)"
# go test runs GOMAXPROCS (here 2) parallel tests at a time by default;
# the scenarios mostly wait on timers, so several run at once, but not
# all: with every scenario's sipp playing RTP on two cores, sipp and
# FreeSWITCH fell half a second behind each other and the 100 ms
# billmsec-versus-talk-time checks failed by load, not by callbridge.
exec go test -tags "$suite" -count=1 -timeout 15m -parallel 6 "./$suite/" -v "$@"
