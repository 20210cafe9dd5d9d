#!/usr/bin/env bash
# test-print.sh: renders the sample invoice and credit note in headless
# Chromium (tests built with the `chromium` tag, billing/print_test.go):
# no content wider than A4's or Letter's printable width, a screenshot per
# paper that is not blank, and a one-page PDF per document. Chromium is
# installed with apt-get when missing and running as root; otherwise the
# script stops here saying so. PRINT_DIR (default .tmp/print) keeps the
# PNG and PDF files for a person to look at.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 && ! command -v google-chrome >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing chromium (apt-get install chromium) to render invoices"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
  else
    echo "test-print: chromium is not installed; install it (apt-get install chromium) and run again" >&2
    exit 1
  fi
fi

dir=${PRINT_DIR:-.tmp/print}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
echo "== invoices in headless Chromium (files in $dir)"
CALLBRIDGE_PRINT_DIR="$dir" go test -count=1 -tags chromium -run TestInvoicePrintsInChromium -timeout 10m ./billing/
