#!/usr/bin/env bash
# demo.sh: the whole system on local defaults. Needs a PostgreSQL URL in
# CALLBRIDGE_DATABASE_URL (scripts/with-postgres.sh provides a throwaway
# one). Starts the FreeSWITCH simulator and the controller, runs the
# scripted tour, then leaves the API running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

# From a terminal, Ctrl-C sends SIGINT to every process of the terminal's
# foreground process group, make included, and make then dies of it
# (status 130) whatever this script does. So the demo runs itself again as
# a job of its own (bash job control: its own process group, given the
# terminal while it runs): Ctrl-C reaches only the demo, which stops
# cleanly, and make sees it exit 0.
if [ -t 0 ] && [ -z "${CALLBRIDGE_DEMO_JOB:-}" ]; then
  set -m
  rc=0
  CALLBRIDGE_DEMO_JOB=1 "$PWD/scripts/demo.sh" "$@" || rc=$?
  exit "$rc"
fi

http_port=${DEMO_HTTP_PORT:-8080}
esl_port=${DEMO_ESL_PORT:-8021}
bin=bin/callbridge
logs=${DEMO_LOG_DIR:-.tmp/demo}
mkdir -p "$logs" "$logs/spool" "$logs/reports"
case $logs in /*) state=$logs ;; *) state=$PWD/$logs ;; esac

export CALLBRIDGE_HTTP_ADDR="127.0.0.1:$http_port"
export CALLBRIDGE_ESL="127.0.0.1:$esl_port"
export CALLBRIDGE_ESL_PASSWORD=ClueCon
export CALLBRIDGE_ADMIN_TOKEN=${CALLBRIDGE_ADMIN_TOKEN:-demo-admin-token}
export CALLBRIDGE_DIALPLAN_USER=freeswitch
export CALLBRIDGE_DIALPLAN_PASSWORD=demo-dialplan-secret
export CALLBRIDGE_WEBHOOK_SECRET=demo-webhook-secret
export CALLBRIDGE_SPOOL_DIR="$state/spool" # directories must be absolute
export CALLBRIDGE_REPORT_DIR="$state/reports"
export CALLBRIDGE_LOG_FORMAT=text
export CALLBRIDGE_MAX_CPS=20

for port in "$http_port" "$esl_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: port $port is in use; set DEMO_HTTP_PORT / DEMO_ESL_PORT" >&2
    exit 1
  fi
done

# The simulator and the controller run in process groups of their own
# (set -m around their start), so the terminal's Ctrl-C reaches only this
# script and the command in the foreground: the script then stops the
# controller first, lets it drain (live calls end on the simulator, CDRs
# are flushed) and stops the simulator after it. A second signal during
# the drain would cut it short, so each gets exactly one SIGTERM.
pids=() # fsim, serve
stopping=""
cleanup() {
  [ -n "$stopping" ] && return
  stopping=1
  local i p rc
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    p=${pids[i]}
    kill -TERM "$p" 2>/dev/null || continue
    rc=0
    wait "$p" 2>/dev/null || rc=$?
    if [ "$i" = 1 ]; then
      if [ "$rc" = 0 ]; then echo "demo: callbridge serve drained and stopped"
      else echo "demo: callbridge serve exited with status $rc (log $logs/serve.log)" >&2; fi
    fi
  done
}
trap cleanup EXIT
# Ctrl-C (or SIGTERM, or the terminal closing) is how the demo is meant to
# end: the EXIT trap drains and stops everything, and the demo exits 0 so
# make does not report an error.
trap 'exit 0' INT TERM
trap 'exit 129' HUP

echo "demo: simulated FreeSWITCH on 127.0.0.1:$esl_port (log $logs/fsim.log)"
set -m
$bin fsim --listen "127.0.0.1:$esl_port" --password ClueCon \
  --dialplan-url "http://127.0.0.1:$http_port/fs/dialplan" \
  --dialplan-user freeswitch --dialplan-password demo-dialplan-secret \
  --gateway carrier --gateway cheap:refuse \
  </dev/null >"$logs/fsim.log" 2>&1 &
pids+=($!)

echo "demo: callbridge serve on 127.0.0.1:$http_port (log $logs/serve.log)"
$bin serve </dev/null >"$logs/serve.log" 2>&1 &
pids+=($!)
set +m

$bin tour --api "http://127.0.0.1:$http_port" --admin-token "$CALLBRIDGE_ADMIN_TOKEN" \
  --esl "127.0.0.1:$esl_port" --esl-password ClueCon

echo
echo "== Billing: roll up today and draft this month's invoice (callbridge bill)"
$bin bill rollup --date "$(date -u +%F)"
echo "-- issuing this month's invoice is refused while the month is open:"
if $bin bill invoice --month "$(date -u +%Y-%m)" --report-dir "$logs/reports"; then
  echo "demo: an open month was invoiced" >&2
  exit 1
fi
$bin bill invoice --draft --month "$(date -u +%Y-%m)" --report-dir "$logs/reports"
csv=$(find "$logs/reports" -name '*.csv' -path '*invoices*' | sort | tail -1)
html=$(find "$logs/reports" -name '*.html' -path '*invoices*' | sort | tail -1)
if [ -n "$csv" ]; then echo "-- $csv"; cat "$csv"; fi
if [ -n "$html" ]; then echo "Invoice page (open in a browser): $(cd "$(dirname "$html")" && pwd)/$(basename "$html")"; fi

cat <<TXT

== The API is running at http://127.0.0.1:$http_port (admin token: $CALLBRIDGE_ADMIN_TOKEN)
   Simulated FreeSWITCH: 127.0.0.1:$esl_port, password ClueCon. Logs: $logs/
   Try:  curl -s http://127.0.0.1:$http_port/readyz
         curl -s -H "Authorization: Bearer $CALLBRIDGE_ADMIN_TOKEN" http://127.0.0.1:$http_port/metrics | grep callbridge_
   Press Ctrl-C to stop (the controller drains and exits).
TXT
rc=0
wait "${pids[1]}" || rc=$?
echo "demo: callbridge serve exited with status $rc (log $logs/serve.log)" >&2
exit 1
