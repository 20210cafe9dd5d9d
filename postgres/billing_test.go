package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"callbridge"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"

	"github.com/google/uuid"
	"github.com/lib/pq"
)

// billingAccount creates an account for billing tests.
func billingAccount(t testing.TB, db *postgres.DB, prepaid bool) string {
	t.Helper()
	a := &callbridge.Account{Name: "billing " + uuid.NewString()[:8], Prepaid: prepaid, Currency: "EUR"}
	if _, err := postgres.NewAccountService(db).CreateAccount(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	return a.ID
}

// cdr is the part of a CDR billing reads.
type cdr struct {
	uuid, account, prefix, gateway string
	// deck is the sell deck's id ("" when unrated by a deck).
	deck              string
	start             time.Time
	billMS, sell, buy int64
	// flags are the CDR's flag names (callbridge.CDRFlags.Names).
	flags []string
}

// insertCDRs stores CDRs the way the CDR writer does (cdr_keys, then cdrs,
// in one statement).
func insertCDRs(t testing.TB, db *postgres.DB, cs ...cdr) {
	t.Helper()
	for _, c := range cs {
		if c.uuid == "" {
			c.uuid = uuid.NewString()
		}
		if c.gateway == "" {
			c.gateway = "carrier1"
		}
		var answer *time.Time
		disp := "no_answer"
		if c.billMS > 0 {
			a := c.start.Add(2 * time.Second)
			answer, disp = &a, "answered"
		}
		_, err := db.ExecContext(context.Background(), `
			WITH k AS (INSERT INTO cdr_keys (uuid, start_at) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING uuid)
			INSERT INTO cdrs (uuid, start_at, leg, account_id, direction, caller, callee, presented, gateway, node,
			                  answer_at, end_at, duration_ms, bill_ms, hangup_cause, disposition,
			                  sell_micros, sell_currency, sell_deck_id, sell_prefix, buy_micros, buy_currency, buy_prefix, flags)
			SELECT $1, $2, 'a', $3, 'outbound', '4930111', $4 || '1234567', '4930111', $5, 'node1',
			       $6, $2::timestamptz + $7 * interval '1 millisecond', $7, $7, 'NORMAL_CLEARING', $8,
			       $9, 'EUR', $11, $4, $10, 'EUR', $4, coalesce($12::text[], '{}')
			FROM k`,
			c.uuid, c.start, c.account, c.prefix, c.gateway, answer, c.billMS, disp, c.sell, c.buy, c.deck, pq.Array(c.flags))
		if err != nil {
			t.Fatalf("insert cdr: %v", err)
		}
	}
}

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

type sums struct{ calls, answered, billed, sell, buy int64 }

func rollupSums(t testing.TB, db *postgres.DB, account string, from, to string) sums {
	t.Helper()
	var s sums
	err := db.QueryRowContext(context.Background(), `SELECT coalesce(sum(calls),0), coalesce(sum(answered),0),
		coalesce(sum(billed_ms),0), coalesce(sum(sell),0), coalesce(sum(buy),0)
		FROM rollups WHERE account_id = $1 AND day >= $2 AND day < $3`, account, from, to).
		Scan(&s.calls, &s.answered, &s.billed, &s.sell, &s.buy)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func cdrSums(t testing.TB, db *postgres.DB, account string, lo, hi time.Time) sums {
	t.Helper()
	var s sums
	err := db.QueryRowContext(context.Background(), `SELECT count(*), count(answer_at), coalesce(sum(bill_ms),0),
		coalesce(sum(sell_micros),0), coalesce(sum(buy_micros),0)
		FROM cdrs WHERE account_id = $1 AND start_at >= $2 AND start_at < $3`, account, lo, hi).
		Scan(&s.calls, &s.answered, &s.billed, &s.sell, &s.buy)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRunJobOneProcessRunsASlot(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	a := postgres.NewBillingStore(db, time.UTC, "node-a")
	b := postgres.NewBillingStore(db, time.UTC, "node-b")
	slot := at("2026-11-21T00:15:00Z")

	var runs atomic.Int32
	entered := make(chan struct{})
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, ran, err := a.RunJob(ctx, "rollup", slot, false, func(context.Context) (int64, error) {
			runs.Add(1)
			close(entered)
			<-release
			return 7, nil
		})
		if err != nil || !ran {
			t.Errorf("first: ran %v, err %v; want ran", ran, err)
		}
	}()
	<-entered
	// b races while a holds the job: it must not run.
	run, ran, err := b.RunJob(ctx, "rollup", slot, false, func(context.Context) (int64, error) {
		runs.Add(1)
		return 0, nil
	})
	if err != nil || ran || run != nil {
		t.Fatalf("while held: run %v, ran %v, err %v; want nothing", run, ran, err)
	}
	close(release)
	wg.Wait()
	// After a finished, the slot is done: b still does not run it.
	run, ran, err = b.RunJob(ctx, "rollup", slot, false, func(context.Context) (int64, error) {
		runs.Add(1)
		return 0, nil
	})
	if err != nil || ran || run == nil || run.Node != "node-a" || run.Rows != 7 {
		t.Fatalf("after: run %+v, ran %v, err %v; want a's run", run, ran, err)
	}
	if got := runs.Load(); got != 1 {
		t.Errorf("got %d runs, want 1", got)
	}
	last, ok, err := b.LastRun(ctx, "rollup")
	if err != nil || !ok || !last.Equal(slot) {
		t.Errorf("LastRun = %v %v %v, want %v", last, ok, err, slot)
	}
	// A failing run is recorded as failed and does not count as done.
	_, _, err = a.RunJob(ctx, "invoice", slot, false, func(context.Context) (int64, error) { return 0, fmt.Errorf("boom") })
	if err == nil {
		t.Fatal("want the job's error")
	}
	rs, err := a.JobRuns(ctx, "", 10)
	if err != nil || len(rs) != 2 || rs[0].Outcome != callbridge.RunFailed || rs[0].Error != "boom" || rs[1].Outcome != callbridge.RunOK {
		t.Fatalf("JobRuns = %+v, %v", rs, err)
	}
	if _, ok, _ := a.LastRun(ctx, "invoice"); ok {
		t.Error("a failed run counts as done")
	}
}

func TestRollupLateCDRsAndRerating(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	s := postgres.NewBillingStore(db, berlin, "test")
	acc := billingAccount(t, db, false)
	// 23:30 UTC on the 19th is 00:30 on the 20th in Berlin.
	insertCDRs(t, db,
		cdr{account: acc, prefix: "4930", start: at("2026-11-19T23:30:00Z"), billMS: 60000, sell: 20000, buy: 10000},
		cdr{account: acc, prefix: "4930", start: at("2026-11-20T10:00:00Z"), billMS: 0},
		cdr{account: acc, prefix: "49170", start: at("2026-11-20T12:00:00Z"), billMS: 120000, sell: 90000, buy: 40000, gateway: "carrier2"},
		cdr{account: acc, prefix: "4930", start: at("2026-11-19T12:00:00Z"), billMS: 30000, sell: 5000, buy: 2000},
	)
	if _, err := s.RollupDirty(ctx, ""); err != nil {
		t.Fatal(err)
	}
	lo, hi := time.Date(2026, 11, 20, 0, 0, 0, 0, berlin), time.Date(2026, 11, 21, 0, 0, 0, 0, berlin)
	check := func(when string) {
		t.Helper()
		got, want := rollupSums(t, db, acc, "2026-11-20", "2026-11-21"), cdrSums(t, db, acc, lo, hi)
		if got != want {
			t.Errorf("%s: rollup of 2026-11-20 = %+v, want the CDRs' %+v", when, got, want)
		}
		if got, want := rollupSums(t, db, acc, "2026-01-01", "2027-01-01"), cdrSums(t, db, acc, at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z")); got != want {
			t.Errorf("%s: all rollups = %+v, want %+v", when, got, want)
		}
	}
	check("first rollup")
	if got := rollupSums(t, db, acc, "2026-11-20", "2026-11-21"); got.calls != 3 || got.sell != 110000 {
		t.Errorf("Berlin day 2026-11-20 = %+v, want the 23:30Z call in it: 3 calls, 110000", got)
	}

	// A late CDR for the 20th and a re-rating of one of its calls.
	insertCDRs(t, db, cdr{account: acc, prefix: "4930", start: at("2026-11-20T15:00:00Z"), billMS: 61000, sell: 40000, buy: 20000})
	if _, err := db.ExecContext(ctx, `UPDATE cdrs SET sell_micros = 15000 WHERE account_id = $1 AND sell_prefix = '4930' AND start_at = $2`,
		acc, at("2026-11-19T23:30:00Z")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RollupDirty(ctx, ""); err != nil {
		t.Fatal(err)
	}
	check("after late CDR and re-rating")

	// Re-running changes nothing.
	before := rollupSums(t, db, acc, "2026-01-01", "2027-01-01")
	if n, err := s.RollupDirty(ctx, ""); err != nil || n != 0 {
		t.Errorf("idle RollupDirty = %d, %v; want 0 rows", n, err)
	}
	if _, err := s.RollupDay(ctx, day("2026-11-20"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RollupDay(ctx, day("2026-11-20"), acc); err != nil {
		t.Fatal(err)
	}
	if after := rollupSums(t, db, acc, "2026-01-01", "2027-01-01"); after != before {
		t.Errorf("re-run changed totals: %+v, want %+v", after, before)
	}
	check("after re-runs")
}

func TestInvoiceCorrectionsAfterIssue(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewBillingStore(db, time.UTC, "test")
	acc := billingAccount(t, db, false)
	fee := int64(1900)
	if err := s.SetProfile(ctx, &callbridge.BillingProfile{AccountID: acc, TaxBPS: fee, TaxLabel: "VAT 19%", PaymentDays: 14}); err != nil {
		t.Fatal(err)
	}
	insertCDRs(t, db,
		cdr{account: acc, prefix: "4930", start: at("2026-10-03T10:00:00Z"), billMS: 60000, sell: 20000},
		cdr{account: acc, prefix: "4930", start: at("2026-10-04T10:00:00Z"), billMS: 60000, sell: 20000},
		cdr{account: acc, prefix: "49170", start: at("2026-10-05T10:00:00Z"), billMS: 60000, sell: 100000},
	)
	oct, err := s.IssueInvoices(ctx, 2026, time.October, "", at("2026-11-01T02:00:00Z"))
	if err != nil || len(oct) != 1 {
		t.Fatalf("October: %v, %v", oct, err)
	}
	inv := oct[0]
	// 0.04 + 0.10 EUR in cents; 19 % of 14 cents is 2.66, so 3.
	if inv.Exact != 140000 || inv.Exponent != 2 || inv.Subtotal != 14 || inv.Tax != 3 || inv.Total != 17 || inv.Rounding != 0 ||
		inv.Number != "CB-000001" || inv.Kind != callbridge.DocInvoice ||
		!inv.DueAt.Equal(at("2026-11-15T00:00:00Z")) || len(inv.Lines) != 2 || inv.Lines[0].Kind != callbridge.LineUsage {
		t.Fatalf("October invoice = %+v", inv)
	}
	// Re-running issues nothing new.
	if again, err := s.IssueInvoices(ctx, 2026, time.October, "", time.Time{}); err != nil || len(again) != 0 {
		t.Fatalf("re-run: %v, %v", again, err)
	}
	// Issued invoices are immutable.
	if _, err := db.ExecContext(ctx, `UPDATE invoices SET total = 0 WHERE id = $1`, inv.ID); err == nil {
		t.Error("an issued invoice was updated")
	}

	// After issue: 4930 is re-rated down, a late 49170 call appears, and
	// November has its own usage.
	if _, err := db.ExecContext(ctx, `UPDATE cdrs SET sell_micros = 15000 WHERE account_id = $1 AND sell_prefix = '4930'`, acc); err != nil {
		t.Fatal(err)
	}
	insertCDRs(t, db,
		cdr{account: acc, prefix: "49170", start: at("2026-10-30T10:00:00Z"), billMS: 60000, sell: 100000},
		cdr{account: acc, prefix: "4930", start: at("2026-11-02T10:00:00Z"), billMS: 60000, sell: 15000},
	)
	nov, err := s.IssueInvoices(ctx, 2026, time.November, acc, at("2026-12-01T02:00:00Z"))
	if err != nil || len(nov) != 1 {
		t.Fatalf("November: %v, %v", nov, err)
	}
	got := map[string]callbridge.InvoiceLine{}
	for _, l := range nov[0].Lines {
		got[l.Kind+" "+l.Period+" "+l.Destination] = l
	}
	// October's corrections net to a charge (+0.10 - 0.01): they stay
	// on November's invoice.
	want := map[string][2]int64{
		"usage 2026-11 4930":  {15000, 2},
		"credit 2026-10 4930": {-10000, -1},
		"debit 2026-10 49170": {100000, 10},
	}
	if len(got) != len(want) {
		t.Errorf("November lines = %+v, want %v", nov[0].Lines, want)
	}
	for k, amt := range want {
		if got[k].Amount != amt[0] || got[k].AmountMinor != amt[1] {
			t.Errorf("line %q = %d micros, %d cents; want %d, %d", k, got[k].Amount, got[k].AmountMinor, amt[0], amt[1])
		}
	}
	if inv := nov[0]; inv.Kind != callbridge.DocInvoice || inv.Subtotal != 11 || inv.Exact != 105000 || inv.Rounding != 5000 {
		t.Errorf("November = %+v, want an invoice of 11 cents for 10.5 exact", inv)
	}
	if nov[0].Number != "CB-000002" {
		t.Errorf("number %q, want CB-000002", nov[0].Number)
	}
	// Everything invoiced equals every CDR.
	var invoiced, cdrs int64
	db.QueryRowContext(ctx, `SELECT sum(exact) FROM invoices WHERE account_id = $1`, acc).Scan(&invoiced)
	db.QueryRowContext(ctx, `SELECT sum(sell_micros) FROM cdrs WHERE account_id = $1`, acc).Scan(&cdrs)
	if invoiced != cdrs {
		t.Errorf("invoiced %d, CDRs %d", invoiced, cdrs)
	}
	// Reading back through the API's view.
	full, err := s.Invoice(ctx, acc, nov[0].ID)
	if err != nil || len(full.Lines) != 3 || len(full.Days) != 1 || full.Days[0].Day != "2026-11-02" {
		t.Fatalf("Invoice = %+v, %v", full, err)
	}
	if _, err := s.Invoice(ctx, billingAccount(t, db, false), nov[0].ID); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("another account's invoice: %v, want ENOTFOUND", err)
	}
	list, err := s.Invoices(ctx, acc)
	if err != nil || len(list) != 2 || list[0].Period != "2026-11" {
		t.Errorf("Invoices = %+v, %v", list, err)
	}
}

func TestInvoiceTotalsEqualCDRsOnGeneratedData(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewBillingStore(db, time.UTC, "test")
	var accs []string
	// 120 accounts over two months: more than 100 accounts on most
	// September days, for the rollup's whole-day path, and few on others
	// and for the late CDRs, for the per-account one.
	for range 120 {
		accs = append(accs, billingAccount(t, db, false))
	}
	gen := func(from, to string, n int, seed int) {
		t.Helper()
		_, err := db.ExecContext(ctx, `
			WITH g AS (
				SELECT gen_random_uuid() AS uuid, i,
				       $1::timestamptz + (hashint4(i + $5) & 2147483647) % (extract(epoch FROM $2::timestamptz - $1::timestamptz)::bigint) * interval '1 second' AS start_at,
				       ($3::uuid[])[1 + (hashint4(i * 7 + $5) & 2147483647) % cardinality($3::uuid[])] AS account_id,
				       (hashint4(i * 13 + $5) & 2147483647) % 600000 AS bill_ms
				FROM generate_series(1, $4) i
			), k AS (INSERT INTO cdr_keys SELECT uuid, start_at FROM g RETURNING uuid)
			INSERT INTO cdrs (uuid, start_at, leg, account_id, direction, caller, callee, presented, gateway, node,
			                  answer_at, end_at, duration_ms, bill_ms, hangup_cause, disposition, sell_micros, sell_prefix, buy_micros)
			SELECT uuid, start_at, 'a', account_id, 'outbound', '1', '2', '1', 'gw' || (i % 3), 'n',
			       CASE WHEN bill_ms > 0 THEN start_at END, start_at + bill_ms * interval '1 millisecond', bill_ms, bill_ms,
			       'NORMAL_CLEARING', 'answered', bill_ms / 10, '49' || (i % 7), bill_ms / 20
			FROM g`, from, to, fmt.Sprintf("{%s}", join(accs)), n, seed)
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := postgres.NewCDRStore(db).EnsurePartitions(ctx, at("2026-09-01T00:00:00Z"), 3); err != nil {
		t.Fatal(err)
	}
	gen("2026-09-01T00:00:00Z", "2026-10-01T00:00:00Z", 12000, 1)
	if _, err := s.IssueInvoices(ctx, 2026, time.September, "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	// Late CDRs for September, re-rating of some September calls, October.
	gen("2026-09-01T00:00:00Z", "2026-10-01T00:00:00Z", 200, 2)
	if _, err := db.ExecContext(ctx, `UPDATE cdrs SET sell_micros = sell_micros * 2 WHERE bill_ms % 5 = 0 AND start_at < '2026-10-01'`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE cdrs SET sell_micros = sell_micros / 3 WHERE bill_ms % 5 = 1 AND start_at < '2026-10-01'`); err != nil {
		t.Fatal(err)
	}
	gen("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", 3000, 3)
	for range 2 { // the second pass must change nothing
		if _, err := s.IssueInvoices(ctx, 2026, time.October, "", time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.IssueInvoices(ctx, 2026, time.September, "", time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range accs {
		var invoiced, lines, cdrs int64
		db.QueryRowContext(ctx, `SELECT coalesce(sum(exact),0) FROM invoices WHERE account_id = $1`, a).Scan(&invoiced)
		db.QueryRowContext(ctx, `SELECT coalesce(sum(amount),0) FROM invoice_lines WHERE account_id = $1`, a).Scan(&lines)
		db.QueryRowContext(ctx, `SELECT coalesce(sum(sell_micros),0) FROM cdrs WHERE account_id = $1`, a).Scan(&cdrs)
		if invoiced != cdrs || lines != cdrs {
			t.Errorf("account %s: invoiced %d (lines %d), CDRs %d", a, invoiced, lines, cdrs)
		}
	}
	checkDocuments(t, db)
	var credits int
	db.QueryRowContext(ctx, `SELECT count(*) FROM invoices WHERE kind = 'credit_note'`).Scan(&credits)
	if credits == 0 {
		t.Error("no credit note, though September was re-rated down for some accounts")
	}
}

// checkDocuments checks every stored document against its lines: each
// line's amount_minor is its exact amount rounded half away from zero to
// the currency's minor unit, the subtotal is their sum, exact the sum of
// the exact amounts, the tax TaxOf the subtotal, the total their sum;
// invoices are never negative, credit notes never positive, and a credit
// note corrects an invoice of the account that billed its month.
func checkDocuments(t *testing.T, db *postgres.DB) {
	t.Helper()
	ctx := context.Background()
	var docs []struct {
		ID       string `db:"id"`
		Account  string `db:"account_id"`
		Kind     string `db:"kind"`
		Number   string `db:"number"`
		Period   string `db:"period"`
		Exponent int    `db:"exponent"`
		Exact    int64  `db:"exact"`
		Subtotal int64  `db:"subtotal"`
		TaxBPS   int64  `db:"tax_bps"`
		Tax      int64  `db:"tax"`
		Total    int64  `db:"total"`
		Corrects string `db:"corrects"`
	}
	if err := pgtest.Select(ctx, db, &docs, `SELECT id, account_id, kind, number, period, exponent, exact, subtotal, tax_bps, tax, total,
		coalesce(corrects_id::text, '') AS corrects FROM invoices`); err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		var lines []struct {
			Amount int64  `db:"amount"`
			Minor  int64  `db:"amount_minor"`
			Period string `db:"period"`
		}
		if err := pgtest.Select(ctx, db, &lines, `SELECT amount, amount_minor, period FROM invoice_lines WHERE invoice_id = $1`, d.ID); err != nil {
			t.Fatal(err)
		}
		var exact, sub int64
		for _, l := range lines {
			if want := callbridge.RoundToMinor(l.Amount, d.Exponent); l.Minor != want {
				t.Errorf("%s: line of %d micros charges %d, want %d", d.Number, l.Amount, l.Minor, want)
			}
			if d.Kind == callbridge.DocCreditNote && l.Period != d.Period {
				t.Errorf("%s: credit note for %s has a line of %s", d.Number, d.Period, l.Period)
			}
			exact, sub = exact+l.Amount, sub+l.Minor
		}
		if d.Exact != exact || d.Subtotal != sub || d.Tax != callbridge.TaxOf(sub, d.TaxBPS) || d.Total != d.Subtotal+d.Tax {
			t.Errorf("%s: exact %d subtotal %d tax %d total %d; lines: exact %d, subtotal %d", d.Number, d.Exact, d.Subtotal, d.Tax, d.Total, exact, sub)
		}
		switch d.Kind {
		case callbridge.DocInvoice:
			if d.Total < 0 || d.Corrects != "" {
				t.Errorf("%s: invoice of %d correcting %q", d.Number, d.Total, d.Corrects)
			}
		case callbridge.DocCreditNote:
			var acc, period string
			db.QueryRowContext(ctx, `SELECT account_id, period FROM invoices WHERE id = $1 AND kind = 'invoice'`, d.Corrects).Scan(&acc, &period)
			if d.Total > 0 || acc != d.Account || !strings.HasPrefix(d.Number, "CB-CN-") {
				t.Errorf("%s: credit note of %d correcting %q (account %s, period %s)", d.Number, d.Total, d.Corrects, acc, period)
			}
		default:
			t.Errorf("%s: kind %q", d.Number, d.Kind)
		}
	}
}

func join(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += ","
		}
		out += s
	}
	return out
}

func TestPrepaidLedgerAndLowBalance(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewBillingStore(db, time.UTC, "test")
	acc := billingAccount(t, db, true)
	low := int64(500000)
	if err := s.SetProfile(ctx, &callbridge.BillingProfile{AccountID: acc, LowBalance: &low, LowBalanceURL: "https://example.com/hook"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Topup(ctx, acc, 1000000, "pay-1"); err != nil {
		t.Fatal(err)
	}
	if e, err := s.Topup(ctx, acc, 1000000, "pay-1"); err != nil || e.Amount != 1000000 {
		t.Fatalf("repeated top-up: %+v, %v", e, err)
	}
	if _, err := s.Topup(ctx, acc, 5, "pay-1"); callbridge.ErrorCode(err) != callbridge.EINVALID {
		t.Errorf("reference reused with another amount: %v, want EINVALID", err)
	}
	if _, err := s.Topup(ctx, billingAccount(t, db, false), 5, ""); callbridge.ErrorCode(err) != callbridge.ECONFLICT {
		t.Errorf("postpaid top-up: %v, want ECONFLICT", err)
	}
	now := time.Now().UTC()
	insertCDRs(t, db, cdr{account: acc, prefix: "4930", start: now, billMS: 60000, sell: 600000})
	insertCDRs(t, db, cdr{account: acc, prefix: "4930", start: now, billMS: 60000, sell: 100000})
	b, err := s.Balance(ctx, acc)
	if err != nil || b.Balance != 300000 || !b.Prepaid {
		t.Fatalf("Balance = %+v, %v; want 300000", b, err)
	}
	es, err := s.PendingLowBalance(ctx, 10)
	if err != nil || len(es) != 1 || es[0].Balance != 400000 {
		t.Fatalf("low-balance events = %+v, %v; want one at 400000", es, err)
	}
	if err := s.LowBalanceHandled(ctx, es[0].ID, nil); err != nil {
		t.Fatal(err)
	}
	// Back above, then below again: a second crossing, a second event.
	if _, err := s.Topup(ctx, acc, 1000000, "pay-2"); err != nil {
		t.Fatal(err)
	}
	insertCDRs(t, db, cdr{account: acc, prefix: "4930", start: now, billMS: 60000, sell: 1000000})
	if es, _ := s.PendingLowBalance(ctx, 10); len(es) != 1 || es[0].Balance != 300000 {
		t.Errorf("second crossing events = %+v, want one at 300000", es)
	}
	var sum int64
	db.QueryRowContext(ctx, `SELECT sum(amount) FROM ledger_entries WHERE account_id = $1`, acc).Scan(&sum)
	if b, _ := s.Balance(ctx, acc); b.Balance != sum || sum != 300000 {
		t.Errorf("balance %d, ledger sum %d, want 300000", b.Balance, sum)
	}
}

// rateDeck creates a sell deck owned by account with the rates' prefix and
// description pairs, and returns its id.
func rateDeck(t testing.TB, db *postgres.DB, account string, from time.Time, rates ...[2]string) string {
	t.Helper()
	ctx := context.Background()
	var id string
	if err := db.QueryRowContext(ctx, `INSERT INTO rate_decks (account_id, name, currency, time_zone, effective_from)
		VALUES ($1, 'retail', 'EUR', 'UTC', $2) RETURNING id`, account, from).Scan(&id); err != nil {
		t.Fatal(err)
	}
	for _, r := range rates {
		if _, err := db.ExecContext(ctx, `INSERT INTO rates (deck_id, prefix, description, per_minute) VALUES ($1, $2, $3, 1000)`,
			id, r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

func TestRollupNamesDestinationsByTheSellDeck(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewBillingStore(db, time.UTC, "test")
	acc := billingAccount(t, db, false)
	// The deck changes during the day; both name 4930 alike, so their
	// calls share one rollup row. 49170 has no description: its prefix
	// names it on the invoice.
	oct := rateDeck(t, db, acc, at("2026-10-01T00:00:00Z"), [2]string{"4930", "Berlin"}, [2]string{"49170", ""})
	mid := rateDeck(t, db, acc, at("2026-10-05T12:00:00Z"), [2]string{"4930", "Berlin"}, [2]string{"49170", ""})
	insertCDRs(t, db,
		cdr{account: acc, deck: oct, prefix: "4930", start: at("2026-10-05T10:00:00Z"), billMS: 60000, sell: 1000},
		cdr{account: acc, deck: mid, prefix: "4930", start: at("2026-10-05T13:00:00Z"), billMS: 60000, sell: 2000},
		cdr{account: acc, deck: mid, prefix: "49170", start: at("2026-10-05T14:00:00Z"), billMS: 60000, sell: 4000},
		cdr{account: acc, prefix: "", start: at("2026-10-05T15:00:00Z"), billMS: 0},
	)
	invs, err := s.IssueInvoices(ctx, 2026, time.October, "", at("2026-11-01T02:00:00Z"))
	if err != nil || len(invs) != 1 {
		t.Fatalf("IssueInvoices = %v, %v", invs, err)
	}
	var rows []struct {
		Prefix      string `db:"prefix"`
		Description string `db:"description"`
		Calls       int64  `db:"calls"`
		Sell        int64  `db:"sell"`
	}
	if err := pgtest.Select(ctx, db, &rows, `SELECT prefix, description, calls, sell FROM rollups WHERE account_id = $1 ORDER BY prefix COLLATE "C"`, acc); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(rows), "[{  1 0} {49170  1 4000} {4930 Berlin 2 3000}]"; got != want {
		t.Errorf("rollups = %s, want %s", got, want)
	}
	lines := map[string]int64{}
	for _, l := range invs[0].Lines {
		lines[l.Destination] = l.Amount
	}
	if len(lines) != 3 || lines["Berlin"] != 3000 || lines["49170"] != 4000 || lines["No rate matched"] != 0 {
		t.Errorf("lines = %+v, want Berlin 3000, 49170 4000, No rate matched 0", invs[0].Lines)
	}
	if len(invs[0].Days) != 1 || invs[0].Days[0] != (callbridge.DayUsage{Day: "2026-10-05", Calls: 4, Amount: 7000}) {
		t.Errorf("days = %+v", invs[0].Days)
	}
	// Recomputing an unchanged day writes nothing.
	if n, err := s.RollupDay(ctx, day("2026-10-05"), ""); err != nil || n != 0 {
		t.Errorf("RollupDay of an unchanged day = %d, %v; want 0 rows", n, err)
	}
}

func TestInvoiceNumbersAndTaxAcrossAccounts(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewBillingStore(db, time.UTC, "test")
	// Subtotal (cents) and tax rate of each account; tax rounds half away
	// from zero, and a subtotal times the rate may exceed int64.
	cases := []struct {
		issuer       string
		sell, taxBPS int64
		wantTax      int64
	}{
		{"default", 5, 1000, 1},       // 0.5 rounds up
		{"default", 14999, 1, 1},      // 1.4999 rounds down
		{"acme", 15, 1000, 2},         // 1.5 rounds up
		{"default", 1, 4999, 0},       // 0.4999 rounds down
		{"acme", 140000, 1900, 26600}, // exact
		{"default", 922337203685477, 10000, 922337203685477},
	}
	accs := make([]string, len(cases))
	for i, c := range cases {
		accs[i] = billingAccount(t, db, false)
		if err := s.SetProfile(ctx, &callbridge.BillingProfile{AccountID: accs[i], Issuer: c.issuer, TaxBPS: c.taxBPS, PaymentDays: 30}); err != nil {
			t.Fatal(err)
		}
		insertCDRs(t, db, cdr{account: accs[i], prefix: "4930", start: at("2026-10-10T10:00:00Z"), billMS: 60000, sell: c.sell * 10000})
	}
	invs, err := s.IssueInvoices(ctx, 2026, time.October, "", at("2026-11-01T02:00:00Z"))
	if err != nil || len(invs) != len(cases) {
		t.Fatalf("IssueInvoices = %d invoices, %v; want %d", len(invs), err, len(cases))
	}
	byAccount := map[string]*callbridge.Invoice{}
	for _, inv := range invs {
		byAccount[inv.AccountID] = inv
	}
	seqs := map[string][]string{} // issuer -> account ids in number order
	for i, c := range cases {
		inv := byAccount[accs[i]]
		if inv == nil {
			t.Fatalf("no invoice for case %d", i)
		}
		if inv.Subtotal != c.sell || inv.Tax != c.wantTax || inv.Tax != callbridge.TaxOf(c.sell, c.taxBPS) || inv.Total != c.sell+c.wantTax {
			t.Errorf("case %d: subtotal %d tax %d total %d, want %d, %d, %d", i, inv.Subtotal, inv.Tax, inv.Total, c.sell, c.wantTax, c.sell+c.wantTax)
		}
		if inv.Issuer != c.issuer || !inv.DueAt.Equal(at("2026-12-01T00:00:00Z")) || inv.Period != "2026-10" {
			t.Errorf("case %d: issuer %q due %v period %q", i, inv.Issuer, inv.DueAt, inv.Period)
		}
		seqs[c.issuer] = append(seqs[c.issuer], accs[i])
	}
	// Each issuer numbers its invoices 1, 2, ... in account order.
	for issuer, accounts := range seqs {
		slices.Sort(accounts)
		prefix := map[string]string{"default": "CB", "acme": "ACME"}[issuer]
		for i, a := range accounts {
			if got, want := byAccount[a].Number, fmt.Sprintf("%s-%06d", prefix, i+1); got != want || byAccount[a].Seq != int64(i+1) {
				t.Errorf("issuer %s account %d: number %q seq %d, want %q", issuer, i, got, byAccount[a].Seq, want)
			}
		}
	}
	// Corrections that net to a credit make a credit note, never a
	// negative invoice: numbered in its own sequence, at the tax rate of
	// the invoice it corrects.
	if _, err := db.ExecContext(ctx, `UPDATE cdrs SET sell_micros = 0 WHERE account_id = $1`, accs[2]); err != nil {
		t.Fatal(err)
	}
	// The account moves to another issuer and rate meanwhile: the credit
	// note still comes from the issuer that billed, at the rate billed.
	if err := s.SetProfile(ctx, &callbridge.BillingProfile{AccountID: accs[2], Issuer: "default", TaxBPS: 2000, PaymentDays: 30}); err != nil {
		t.Fatal(err)
	}
	nov, err := s.IssueInvoices(ctx, 2026, time.November, "", at("2026-12-01T02:00:00Z"))
	if err != nil || len(nov) != 1 {
		t.Fatalf("November = %v, %v", nov, err)
	}
	if inv := nov[0]; inv.Kind != callbridge.DocCreditNote || inv.Subtotal != -15 || inv.Tax != -2 || inv.Total != -17 ||
		inv.TaxBPS != 1000 || inv.Number != "ACME-CN-000001" || inv.Seq != 1 || inv.Period != "2026-10" ||
		inv.CorrectsID != byAccount[accs[2]].ID || inv.CorrectsNumber != byAccount[accs[2]].Number ||
		!inv.PeriodStart.Equal(at("2026-10-01T00:00:00Z")) || len(inv.Days) != 0 ||
		len(inv.Lines) != 1 || inv.Lines[0].Kind != callbridge.LineCredit || inv.Lines[0].Period != "2026-10" {
		t.Errorf("credit note = %+v", inv)
	}
	var invoicesNov int
	db.QueryRowContext(ctx, `SELECT count(*) FROM invoices WHERE period = '2026-11'`).Scan(&invoicesNov)
	if invoicesNov != 0 {
		t.Errorf("%d documents for November, which had no usage", invoicesNov)
	}
	// The account's next invoice comes from its new issuer, whose
	// invoice sequence the credit note did not touch.
	insertCDRs(t, db, cdr{account: accs[2], prefix: "4930", start: at("2026-12-10T10:00:00Z"), billMS: 60000, sell: 70000})
	dec, err := s.IssueInvoices(ctx, 2026, time.December, accs[2], at("2027-01-02T02:00:00Z"))
	if err != nil || len(dec) != 1 || dec[0].Number != "CB-000005" || dec[0].Subtotal != 7 || dec[0].TaxBPS != 2000 {
		t.Errorf("December = %+v, %v; want CB-000005 (the new issuer's next) of 7 cents at 20 %%", dec, err)
	}
}
