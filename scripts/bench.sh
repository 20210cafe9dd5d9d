#!/usr/bin/env bash
# bench.sh: every benchmark and load run, each bounded, against the real
# PostgreSQL that with-postgres.sh provides and the simulator over
# loopback; then the figures table (bench/targets.json) printed and
# written to bench/results.json (a figure run several times is the
# median of its runs). BENCH_QUICK=1 runs small sizes (a smoke
# run); the default sizes are the issues' (1,000,000 bindings, 10,000,000
# CDRs for invoices).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench
raw=bench/raw.txt
: >"$raw"

if [ -n "${BENCH_QUICK:-}" ]; then
  export CALLBRIDGE_BENCH_ROLLUP_CDRS=20000 CALLBRIDGE_BENCH_INVOICE_CDRS=100000
  n_cb=500 n_e2e=100 n_cdr=5000 n_dp=2000 n_q=5000 t=200ms
else
  export CALLBRIDGE_BENCH_ROLLUP_CDRS=${CALLBRIDGE_BENCH_ROLLUP_CDRS:-1000000}
  export CALLBRIDGE_BENCH_INVOICE_CDRS=${CALLBRIDGE_BENCH_INVOICE_CDRS:-10000000}
  n_cb=5000 n_e2e=500 n_cdr=50000 n_dp=20000 n_q=100000 t=2s
fi

run() { # run PKG PATTERN BENCHTIME [extra go test flags]
  local pkg=$1 pat=$2 bt=$3; shift 3
  echo "-- $pkg $pat ($bt)" >&2
  go test -run '^$' -bench "$pat" -benchtime "$bt" -benchmem -timeout 60m "$@" "$pkg" | tee -a "$raw" | grep -E '^(Benchmark|ok|FAIL|---)' >&2 || true
}

run ./rating   'Price$|PriceBands$'                 "$t" -cpu 1 -count 5
run ./rating   'ParseCSV$'                          1x
run ./routing  'Resolve$'                           "$t" -cpu 1 -count 5
run ./esl      'EventsPlainHangupComplete$|ParseEvent$|BgAPI$' "$t" -count 3
run ./controller 'DialplanLookup$'                  "${n_dp}x"
run ./controller 'Quote$|QuoteInProcess$'           "${n_q}x"
run ./controller 'CreateCallback$'                  "${n_cb}x"
run ./callback 'CallbacksEndToEnd$'                 "${n_e2e}x"
run ./cdr 'CDRPipelineEndToEnd$'                    "${n_cdr}x"
run ./postgres 'WriteBatch$'                        "$t"
run ./postgres 'DailyRollup$|MonthlyInvoice$'       1x

go run ./bench -targets bench/targets.json -out bench/results.json <"$raw" | sed -n '/^FIGURE/,$p'
echo "results: bench/results.json (raw output: $raw)"
