package postgres_test

import (
	"context"
	"testing"
	"time"

	"callbridge"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"

	"github.com/google/uuid"
)

// TestInvoiceOnlyForClosedMonths: the store refuses a month that has not
// ended plus its grace, at the clock it is given, and issues it after.
func TestInvoiceOnlyForClosedMonths(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewBillingStore(db, time.UTC, "test")
	s.Grace = 24 * time.Hour
	acc := billingAccount(t, db, false)
	insertCDRs(t, db, cdr{account: acc, prefix: "4930", start: at("2026-11-10T10:00:00Z"), billMS: 60000, sell: 20000})
	for _, tt := range []struct {
		y   int
		m   time.Month
		now string
	}{
		{2026, time.November, "2026-11-20T00:00:00Z"}, // running
		{2026, time.December, "2026-11-20T00:00:00Z"}, // future
		{2026, time.November, "2026-12-01T23:59:59Z"}, // in its grace
	} {
		invs, err := s.IssueInvoices(ctx, tt.y, tt.m, "", at(tt.now))
		if callbridge.ErrorCode(err) != callbridge.ECONFLICT || callbridge.ErrorField(err) != "month" || len(invs) != 0 {
			t.Errorf("%d-%02d at %s: %v, %v; want ECONFLICT on month", tt.y, tt.m, tt.now, invs, err)
		}
	}
	var n int
	db.QueryRowContext(ctx, `SELECT count(*) FROM invoices`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d invoices issued for open months", n)
	}
	// A draft of the open month shows what would be billed, numbers
	// nothing and stores nothing.
	drafts, err := s.DraftInvoices(ctx, 2026, time.November, "", at("2026-11-20T00:00:00Z"))
	if err != nil || len(drafts) != 1 || !drafts[0].Draft || drafts[0].Number != "DRAFT" || drafts[0].Subtotal != 2 {
		t.Fatalf("draft = %+v, %v", drafts, err)
	}
	db.QueryRowContext(ctx, `SELECT count(*) FROM invoices`).Scan(&n)
	var seq int64
	db.QueryRowContext(ctx, `SELECT last_seq FROM invoice_issuers WHERE issuer = 'default'`).Scan(&seq)
	if n != 0 || seq != 0 {
		t.Fatalf("a draft left %d invoices, sequence at %d", n, seq)
	}
	invs, err := s.IssueInvoices(ctx, 2026, time.November, "", at("2026-12-02T00:00:00Z"))
	if err != nil || len(invs) != 1 || invs[0].Number != "CB-000001" {
		t.Fatalf("closed November: %+v, %v", invs, err)
	}
}

// TestInvoiceMinorUnits bills accounts in EUR, JPY and KWD: each line is
// rounded half away from zero to the currency's minor unit, the totals
// add up from the rounded lines, the rounding is shown, and an account in
// a currency without a minor unit is refused rather than guessed.
func TestInvoiceMinorUnits(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewBillingStore(db, time.UTC, "test")
	accounts := map[string]string{}
	for _, cur := range []string{"EUR", "JPY", "KWD"} {
		a := &callbridge.Account{Name: "minor " + cur, Currency: cur}
		if _, err := postgres.NewAccountService(db).CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
		accounts[cur] = a.ID
		if err := s.SetProfile(ctx, &callbridge.BillingProfile{AccountID: a.ID, TaxBPS: 1900, PaymentDays: 30}); err != nil {
			t.Fatal(err)
		}
		// 155.599769 on one destination, 0.004500 and 0.005000 on two
		// others: the issue's micro-unit total and two half-way cases.
		insertCDRs(t, db,
			cdr{account: a.ID, prefix: "4930", start: at("2026-10-10T10:00:00Z"), billMS: 60000, sell: 155_000_000},
			cdr{account: a.ID, prefix: "4930", start: at("2026-10-11T10:00:00Z"), billMS: 60000, sell: 599_769},
			cdr{account: a.ID, prefix: "4940", start: at("2026-10-12T10:00:00Z"), billMS: 60000, sell: 4_500},
			cdr{account: a.ID, prefix: "4950", start: at("2026-10-13T10:00:00Z"), billMS: 60000, sell: 5_000},
		)
	}
	invs, err := s.IssueInvoices(ctx, 2026, time.October, "", at("2026-11-01T00:00:00Z"))
	if err != nil || len(invs) != 3 {
		t.Fatalf("IssueInvoices = %v, %v", invs, err)
	}
	want := map[string]struct {
		exp                       int
		lines                     map[string]int64
		sub, tax, total, rounding int64
	}{
		// 155.60 + 0.00 + 0.01 = 155.61; tax 29.5659 → 29.57.
		"EUR": {2, map[string]int64{"4930": 15560, "4940": 0, "4950": 1}, 15561, 2957, 18518, 731},
		// 156 + 0 + 0 = 156 yen; tax 29.64 → 30.
		"JPY": {0, map[string]int64{"4930": 156, "4940": 0, "4950": 0}, 156, 30, 186, 390_731},
		// 155.600 + 0.005 (0.0045 → half up) + 0.005 = 155.610; tax 29.5659 → 29.566.
		"KWD": {3, map[string]int64{"4930": 155600, "4940": 5, "4950": 5}, 155610, 29566, 185176, 731},
	}
	for _, inv := range invs {
		w := want[inv.Currency]
		if inv.Exponent != w.exp || inv.Subtotal != w.sub || inv.Tax != w.tax || inv.Total != w.total ||
			inv.Exact != 155_609_269 || inv.Rounding != w.rounding {
			t.Errorf("%s: exponent %d subtotal %d tax %d total %d exact %d rounding %d; want %d %d %d %d 155609269 %d",
				inv.Currency, inv.Exponent, inv.Subtotal, inv.Tax, inv.Total, inv.Exact, inv.Rounding, w.exp, w.sub, w.tax, w.total, w.rounding)
		}
		for _, l := range inv.Lines {
			if l.AmountMinor != w.lines[l.Destination] {
				t.Errorf("%s line %s: %d, want %d", inv.Currency, l.Destination, l.AmountMinor, w.lines[l.Destination])
			}
		}
	}
	checkDocuments(t, db)

	// An account created before currencies were checked, in a code with
	// no minor unit: its invoice run is refused, naming it.
	odd := billingAccount(t, db, false)
	if _, err := db.ExecContext(ctx, `UPDATE accounts SET currency = 'XAU' WHERE id = $1`, odd); err != nil {
		t.Fatal(err)
	}
	insertCDRs(t, db, cdr{account: odd, prefix: "4930", start: at("2026-10-10T10:00:00Z"), billMS: 60000, sell: 1})
	if _, err := s.IssueInvoices(ctx, 2026, time.October, odd, at("2026-11-01T00:00:00Z")); callbridge.ErrorCode(err) != callbridge.ECONFLICT {
		t.Errorf("an account in XAU: %v, want ECONFLICT", err)
	}
}

// TestRollupDirtyOfOneAccount: a rollup scoped to an account leaves the
// other accounts' changed days for their own run.
func TestRollupDirtyOfOneAccount(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewBillingStore(db, time.UTC, "test")
	a, b := billingAccount(t, db, false), billingAccount(t, db, false)
	insertCDRs(t, db,
		cdr{account: a, prefix: "4930", start: at("2026-10-10T10:00:00Z"), billMS: 60000, sell: 1000},
		cdr{account: b, prefix: "4930", start: at("2026-10-10T11:00:00Z"), billMS: 60000, sell: 1000},
	)
	if _, err := s.RollupDirty(ctx, a); err != nil {
		t.Fatal(err)
	}
	if got := rollupSums(t, db, a, "2026-10-01", "2026-11-01"); got.calls != 1 {
		t.Errorf("account a: %+v, want its call", got)
	}
	if got := rollupSums(t, db, b, "2026-10-01", "2026-11-01"); got.calls != 0 {
		t.Errorf("account b rolled up by a's run: %+v", got)
	}
	if _, err := s.RollupDirty(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := rollupSums(t, db, b, "2026-10-01", "2026-11-01"); got.calls != 1 {
		t.Errorf("account b after the full run: %+v", got)
	}
	if _, err := s.RollupDirty(ctx, "not-a-uuid"); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("RollupDirty of a malformed account: %v", err)
	}
}

// TestRollupZonesAreNotMixed is the issue's case: a New York rollup of a
// date, then a UTC rollup of the same date. The UTC rollup and a UTC
// invoice run are refused and change nothing; the New York invoice run
// bills the month.
func TestRollupZonesAreNotMixed(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	nyStore := postgres.NewBillingStore(db, ny, "ny")
	utc := postgres.NewBillingStore(db, time.UTC, "utc")
	acc := billingAccount(t, db, false)
	// 02:00 UTC on the 21st is the 20th in New York; 02:00 UTC on
	// November 1st is October 31st there.
	insertCDRs(t, db,
		cdr{account: acc, prefix: "4930", start: at("2026-10-20T15:00:00Z"), billMS: 60000, sell: 100000},
		cdr{account: acc, prefix: "4930", start: at("2026-10-21T02:00:00Z"), billMS: 60000, sell: 200000},
		cdr{account: acc, prefix: "4930", start: at("2026-11-01T02:00:00Z"), billMS: 60000, sell: 400000},
	)
	if _, err := nyStore.RollupDay(ctx, day("2026-10-20"), ""); err != nil {
		t.Fatal(err)
	}
	before := rollupSums(t, db, acc, "2026-10-01", "2026-11-01")
	if before.calls != 2 {
		t.Fatalf("New York rollup: %+v, want both calls on the 20th", before)
	}
	for name, run := range map[string]func() error{
		"UTC rollup of the day": func() error { _, err := utc.RollupDay(ctx, day("2026-10-20"), ""); return err },
		"UTC rollup of the account's day": func() error {
			_, err := utc.RollupDay(ctx, day("2026-10-20"), acc)
			return err
		},
		// November is next to the New York October: a UTC day of
		// November 1st would overlap New York's October 31st.
		"UTC rollup of the next month": func() error { _, err := utc.RollupDay(ctx, day("2026-11-01"), acc); return err },
		"UTC invoice run": func() error {
			_, err := utc.IssueInvoices(ctx, 2026, time.October, "", at("2026-11-02T00:00:00Z"))
			return err
		},
	} {
		err := run()
		if callbridge.ErrorCode(err) != callbridge.ECONFLICT || callbridge.ErrorField(err) != "timezone" {
			t.Errorf("%s: %v, want ECONFLICT on timezone", name, err)
		}
		if got := rollupSums(t, db, acc, "2026-10-01", "2026-12-01"); got != before {
			t.Errorf("%s changed the rollups: %+v, want %+v", name, got, before)
		}
	}
	var n int
	db.QueryRowContext(ctx, `SELECT count(*) FROM invoices`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d invoices after refused runs", n)
	}
	invs, err := nyStore.IssueInvoices(ctx, 2026, time.October, "", at("2026-11-02T00:00:00Z"))
	if err != nil || len(invs) != 1 || invs[0].Exact != 700000 || invs[0].Subtotal != 70 ||
		!invs[0].PeriodStart.Equal(at("2026-10-01T04:00:00Z")) {
		t.Fatalf("New York invoice = %+v, %v", invs, err)
	}
	// Another account can use another zone.
	other := billingAccount(t, db, false)
	insertCDRs(t, db, cdr{account: other, uuid: uuid.NewString(), prefix: "4930", start: at("2026-10-20T15:00:00Z"), billMS: 60000, sell: 1})
	if _, err := utc.RollupDay(ctx, day("2026-10-20"), other); err != nil {
		t.Errorf("UTC rollup of another account: %v", err)
	}
}
