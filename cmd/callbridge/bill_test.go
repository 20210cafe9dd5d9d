package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"

	"github.com/google/uuid"
)

// TestBillScopesAndClosedMonths runs `callbridge bill` as an operator
// would: a rollup for one account leaves the other's rollups alone, a
// rollup or invoice run in another zone than the account's rollups is
// refused, and invoices are issued only for months closed past the
// grace.
func TestBillScopesAndClosedMonths(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, dbURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var accs [2]string
	for i := range accs {
		a := &callbridge.Account{Name: "bill " + uuid.NewString()[:8], Currency: "EUR"}
		if _, err := postgres.NewAccountService(db).CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
		accs[i] = a.ID
	}
	store := postgres.NewCDRStore(db)
	// 2026-10-20 15:00 UTC is the 20th in New York and in UTC.
	start := time.Date(2026, 10, 20, 15, 0, 0, 0, time.UTC)
	if _, err := store.EnsurePartitions(ctx, start, 1); err != nil {
		t.Fatal(err)
	}
	var cdrs []*callbridge.CDR
	for i, a := range []string{accs[0], accs[0], accs[1]} {
		at := start.Add(time.Duration(i) * time.Minute)
		cdrs = append(cdrs, &callbridge.CDR{UUID: uuid.NewString(), Leg: "a", AccountID: a, Direction: "outbound",
			Callee: "4930123456", Node: "fs1", StartAt: at, AnswerAt: at.Add(time.Second), EndAt: at.Add(61 * time.Second),
			DurationMS: 61000, BillMS: 60000, HangupCause: "NORMAL_CLEARING", Disposition: "answered",
			Sell: 123_456, SellCurrency: "EUR", SellPrefix: "4930"})
	}
	if _, err := store.WriteBatch(ctx, cdrs, nil); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CALLBRIDGE_DATABASE_URL": dbURL}
	getenv := func(k string) string { return env[k] }
	bill := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"bill"}, args...), getenv, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	calls := func(acc string) (n int64) {
		db.QueryRowContext(ctx, `SELECT coalesce(sum(calls), 0) FROM rollups WHERE account_id = $1`, acc).Scan(&n)
		return n
	}

	// --account rolls up that account only.
	if out, err := bill("rollup", "--date", "2026-10-20", "--account", accs[0], "--timezone", "America/New_York"); err != nil {
		t.Fatalf("rollup: %v: %s", err, out)
	}
	if a, b := calls(accs[0]), calls(accs[1]); a != 2 || b != 0 {
		t.Errorf("after rolling up account 0: calls %d and %d, want 2 and 0 (the other account untouched)", a, b)
	}

	// The same day in UTC is refused: account 0's October was rolled up
	// in New York. Nothing changes.
	out, err := bill("rollup", "--date", "2026-10-20", "--timezone", "UTC")
	if err == nil || !strings.Contains(err.Error(), "were made in America/New_York, not UTC") {
		t.Errorf("UTC rollup after New York: %v: %s", err, out)
	}
	if a, b := calls(accs[0]), calls(accs[1]); a != 2 || b != 0 {
		t.Errorf("after the refused UTC rollup: calls %d and %d, want 2 and 0", a, b)
	}
	// So is a UTC invoice run of the month.
	if out, err := bill("invoice", "--month", "2026-10", "--account", accs[0], "--timezone", "UTC", "--report-dir", t.TempDir()); err == nil ||
		!strings.Contains(err.Error(), "America/New_York") {
		t.Errorf("UTC invoice of a New York month: %v: %s", err, out)
	}

	// Months that are not closed are refused, before anything runs.
	now := time.Now().UTC()
	for _, month := range []string{now.Format("2006-01"), now.AddDate(0, 2, 0).Format("2006-01")} {
		out, err := bill("invoice", "--month", month, "--report-dir", t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "it can be invoiced from") {
			t.Errorf("invoice --month %s: %v: %s", month, err, out)
		}
	}
	// The grace is CALLBRIDGE_INVOICE_GRACE: last month is refused while
	// the grace covers now.
	env["CALLBRIDGE_INVOICE_GRACE"] = callbridge.MaxInvoiceGrace.String()
	last := time.Date(now.Year(), now.Month()-1, 1, 0, 0, 0, 0, time.UTC)
	if now.Before(last.AddDate(0, 1, 0).Add(callbridge.MaxInvoiceGrace)) {
		if out, err := bill("invoice", "--month", last.Format("2006-01"), "--report-dir", t.TempDir()); err == nil ||
			!strings.Contains(err.Error(), "grace") {
			t.Errorf("invoice of last month within the grace: %v: %s", err, out)
		}
	}
	env["CALLBRIDGE_INVOICE_GRACE"] = "-1h"
	if _, err := bill("invoice", "--month", "2026-10"); exitCode(err) != 2 {
		t.Errorf("a negative grace: %v, want a usage error", err)
	}
	delete(env, "CALLBRIDGE_INVOICE_GRACE")

	// October, closed, in New York: both accounts invoiced in cents; the
	// rollup catches account 1 up in New York too.
	dir := t.TempDir()
	out, err = bill("invoice", "--month", "2026-10", "--timezone", "America/New_York", "--report-dir", dir)
	if err != nil {
		t.Fatalf("invoice: %v: %s", err, out)
	}
	// Account 0: 2 × 0.123456 = 0.246912 → 0.25; account 1: 0.12.
	for _, want := range []string{"total 0.25 EUR", "total 0.12 EUR", "2 document(s) issued for 2026-10"} {
		if !strings.Contains(out, want) {
			t.Errorf("invoice output lacks %q: %s", want, out)
		}
	}
	if out, err := bill("invoice", "--month", "2026-10", "--timezone", "America/New_York", "--report-dir", dir); err != nil ||
		!strings.Contains(out, "0 document(s) issued") {
		t.Errorf("re-run: %v: %s", err, out)
	}

	// A draft of an open month (what make demo shows): files written,
	// nothing issued.
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	cdrs[0].UUID, cdrs[0].StartAt = uuid.NewString(), now.Add(-time.Minute)
	running := cdrs[0].StartAt.In(ny).Format("2006-01")
	if _, err := store.EnsurePartitions(ctx, cdrs[0].StartAt, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := store.WriteBatch(ctx, cdrs[:1], nil); err != nil {
		t.Fatal(err)
	}
	draftDir := t.TempDir()
	out, err = bill("invoice", "--draft", "--month", running, "--account", accs[0], "--timezone", "America/New_York", "--report-dir", draftDir)
	if err != nil || !strings.Contains(out, "drafted (not issued) invoice DRAFT") || !strings.Contains(out, "total 0.12 EUR") {
		t.Fatalf("draft: %v: %s", err, out)
	}
	html, err := os.ReadFile(filepath.Join(draftDir, "invoices", running, "DRAFT-invoice-"+accs[0]+".html"))
	if err != nil || !strings.Contains(string(html), "Draft invoice") {
		t.Errorf("draft page: %v", err)
	}
	var issued int
	db.QueryRowContext(ctx, `SELECT count(*) FROM invoices WHERE period = $1`, running).Scan(&issued)
	if issued != 0 {
		t.Errorf("a draft issued %d invoices", issued)
	}
}

// callbridge bill unrated lists the month's calls no rate priced, as CSV
// an operator opens to add the missing rates.
func TestBillUnratedListsCallsToFix(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, dbURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a := &callbridge.Account{Name: "unrated " + uuid.NewString()[:8], Currency: "EUR"}
	if _, err := postgres.NewAccountService(db).CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	store := postgres.NewCDRStore(db)
	at := time.Date(2026, 10, 20, 15, 0, 0, 0, time.UTC)
	if _, err := store.EnsurePartitions(ctx, at, 1); err != nil {
		t.Fatal(err)
	}
	cdr := func(callee string, flags callbridge.CDRFlags, sell int64) *callbridge.CDR {
		return &callbridge.CDR{UUID: uuid.NewString(), Leg: "a", AccountID: a.ID, Direction: "outbound",
			Callee: callee, Node: "fs1", StartAt: at, AnswerAt: at.Add(time.Second), EndAt: at.Add(61 * time.Second),
			DurationMS: 61000, BillMS: 60000, HangupCause: "NORMAL_CLEARING", Disposition: "answered",
			Sell: sell, SellCurrency: "EUR", Flags: flags}
	}
	if _, err := store.WriteBatch(ctx, []*callbridge.CDR{
		cdr("882123456", callbridge.CDRUnrated, 0), cdr("4930123456", 0, 1000), cdr("3912345", callbridge.CDRUnratedDefault, 12_314_800),
	}, nil); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	env := map[string]string{"CALLBRIDGE_DATABASE_URL": dbURL}
	if err := run(ctx, []string{"bill", "unrated", "--month", "2026-10", "--account", a.ID}, func(k string) string { return env[k] }, &out, &errOut); err != nil {
		t.Fatalf("bill unrated: %v: %s", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "uuid,account_id,start_at,leg,callee,") {
		t.Fatalf("bill unrated printed %q, want a header and 2 calls", out.String())
	}
	body := strings.Join(lines[1:], "\n")
	for _, want := range []string{",882123456,", ",unrated,60000,0.00,EUR", ",3912345,", ",unrated_default,60000,12.3148,EUR"} {
		if !strings.Contains(body, want) {
			t.Errorf("bill unrated lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "4930123456") {
		t.Errorf("a rated call is listed:\n%s", body)
	}
}
