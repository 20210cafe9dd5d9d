package billing_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"callbridge"
	"callbridge/billing"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
	"callbridge/rating"

	"github.com/google/uuid"
)

func testDeck(t testing.TB) *rating.Deck {
	t.Helper()
	info := rating.DeckInfo{ID: "d1", AccountID: "acc", Name: "test", Currency: "EUR", TimeZone: "UTC", Precision: 6}
	d, err := rating.NewDeck(info, time.UTC, []rating.Rate{
		// 0.60 per minute, billed 60/60: one increment costs 0.60.
		{Prefix: "4930", Description: "Berlin", PerMinute: 600000, FirstIncrement: 60, NextIncrement: 60, Days: rating.AllDays, Until: rating.Midnight},
		// 0.06 per minute, 30/6, connect fee 0.01.
		{Prefix: "49170", Description: "Mobile", PerMinute: 60000, ConnectFee: 10000, FirstIncrement: 30, NextIncrement: 6, Days: rating.AllDays, Until: rating.Midnight},
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAffordable(t *testing.T) {
	d := testDeck(t)
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		number    callbridge.Number
		budget    int64
		wantMS    int64
		wantPrice int64
		wantCode  string
	}{
		{"nothing", "49301234", 0, 0, 0, callbridge.ENOFUNDS},
		{"less than an increment", "49301234", 599999, 0, 0, callbridge.ENOFUNDS},
		{"one increment", "49301234", 600000, 60000, 600000, ""},
		{"two and a half", "49301234", 1500000, 120000, 1200000, ""},
		{"capped", "49301234", 1 << 40, 3600000, 36000000, ""},
		{"30/6 first", "491701234", 40000, 30000, 40000, ""},
		{"30/6 plus one", "491701234", 46000, 36000, 46000, ""},
		{"30/6 almost", "491701234", 45999, 30000, 40000, ""},
		{"unrated", "331234", 1 << 40, 0, 0, callbridge.ENOFUNDS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, price, err := billing.AffordableLegs(d, []callbridge.Number{tt.number}, now, tt.budget, 3600000)
			if callbridge.ErrorCode(err) != tt.wantCode {
				t.Fatalf("got error %v, want code %q", err, tt.wantCode)
			}
			if ms != tt.wantMS || price != tt.wantPrice {
				t.Errorf("got %d ms for %d, want %d ms for %d", ms, price, tt.wantMS, tt.wantPrice)
			}
		})
	}
}

func newAccount(t testing.TB, db *postgres.DB, prepaid bool) string {
	t.Helper()
	a := &callbridge.Account{Name: "acc " + uuid.NewString()[:8], Prepaid: prepaid, Currency: "EUR"}
	if _, err := postgres.NewAccountService(db).CreateAccount(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	return a.ID
}

// storeCDR writes the CDR of a finished call as the CDR writer does.
func storeCDR(t testing.TB, db *postgres.DB, callID, account string, number callbridge.Number, start time.Time, billMS, sell int64) {
	t.Helper()
	_, err := db.ExecContext(context.Background(), `
		WITH k AS (INSERT INTO cdr_keys (uuid, start_at) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING uuid)
		INSERT INTO cdrs (uuid, start_at, leg, account_id, direction, caller, callee, presented, gateway, node,
		                  answer_at, end_at, duration_ms, bill_ms, hangup_cause, disposition, sell_micros, sell_prefix)
		SELECT $1, $2, 'a', $3, 'outbound', '4930111', $4, '4930111', 'carrier', 'node1',
		       $2, $2::timestamptz + $5 * interval '1 millisecond', $5, $5, 'NORMAL_CLEARING', 'answered', $6, '4930'
		FROM k`, callID, start, account, string(number), billMS, sell)
	if err != nil {
		t.Fatalf("store cdr: %v", err)
	}
}

// TestPrepaidConcurrentCallsCannotOverspend places calls of one prepaid
// account from many goroutines until the balance refuses them. Each call
// runs up to 900 ms past its grant, as a sched_hangup in whole seconds
// may, so it can be billed one increment more than it reserved.
func TestPrepaidConcurrentCallsCannotOverspend(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	store := postgres.NewBillingStore(db, time.UTC, "test")
	acc := newAccount(t, db, true)
	const topup = 50_000_000 // 50.00: about 83 one-minute increments
	if _, err := store.Topup(ctx, acc, topup, "initial"); err != nil {
		t.Fatal(err)
	}
	deck := testDeck(t)
	auth := &billing.Authorizer{
		Store:   store,
		Decks:   billing.DeckSourceFunc(func(context.Context, string) (*rating.Deck, error) { return deck, nil }),
		MaxCall: 5 * time.Minute,
	}
	const number = callbridge.Number("49301234567")
	const increment = 600000 // the deck's price of one 60 s increment

	var calls, refused atomic.Int64
	var wg sync.WaitGroup
	for w := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 42))
			for {
				callID := uuid.NewString()
				g, err := auth.AuthorizeCall(ctx, acc, callID, number)
				if callbridge.ErrorCode(err) == callbridge.ENOFUNDS {
					refused.Add(1)
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				if !g.Prepaid || g.MaxMS <= 0 || g.Reserved <= 0 {
					t.Errorf("grant %+v", g)
					return
				}
				// The call wants 10 s to 10 min; it is cut at its grant,
				// up to 900 ms late.
				want := 10000 + rnd.Int64N(590000)
				billMS := min(want, g.MaxMS+rnd.Int64N(900))
				start := time.Now().UTC()
				price := deck.Price(rating.Usage{Number: number, Start: start, BillMS: billMS}).Amount
				storeCDR(t, db, callID, acc, number, start, billMS, price)
				calls.Add(1)
			}
		}()
	}
	wg.Wait()
	b, err := store.Balance(ctx, acc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d calls, %d refused, final balance %d, reserved %d", calls.Load(), refused.Load(), b.Balance, b.Reserved)
	if b.Reserved != 0 {
		t.Errorf("%d still reserved after every CDR was stored", b.Reserved)
	}
	if floor := -increment * calls.Load(); b.Balance < floor {
		t.Errorf("final balance %d is below %d (one increment per call)", b.Balance, floor)
	}
	if b.Balance >= increment {
		t.Errorf("final balance %d could still pay an increment, yet calls were refused", b.Balance)
	}
	var sum int64
	db.QueryRowContext(ctx, `SELECT sum(amount) FROM ledger_entries WHERE account_id = $1`, acc).Scan(&sum)
	if sum != b.Balance {
		t.Errorf("ledger sum %d, balance %d", sum, b.Balance)
	}
	// A postpaid account is granted the cap and holds nothing.
	g, err := auth.AuthorizeCall(ctx, newAccount(t, db, false), uuid.NewString(), number)
	if err != nil || g.Prepaid || g.MaxMS != (5*time.Minute).Milliseconds() {
		t.Errorf("postpaid grant %+v, %v", g, err)
	}
}

func TestAuthorizeReleaseAndReuse(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	store := postgres.NewBillingStore(db, time.UTC, "test")
	acc := newAccount(t, db, true)
	deck := testDeck(t)
	auth := &billing.Authorizer{Store: store, Decks: billing.DeckSourceFunc(func(context.Context, string) (*rating.Deck, error) { return deck, nil })}
	if _, err := auth.AuthorizeCall(ctx, acc, uuid.NewString(), "49301234"); callbridge.ErrorCode(err) != callbridge.ENOFUNDS ||
		!strings.Contains(callbridge.ErrorMessage(err), "insufficient_funds") {
		t.Fatalf("no balance: %v, want ENOFUNDS", err)
	}
	if _, err := store.Topup(ctx, acc, 1_200_000, ""); err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	g, err := auth.AuthorizeCall(ctx, acc, id, "49301234")
	if err != nil || g.MaxMS != 120000 || g.Reserved != 1_200_000 {
		t.Fatalf("grant %+v, %v; want 2 minutes for 1.20", g, err)
	}
	if _, err := auth.AuthorizeCall(ctx, acc, id, "49301234"); callbridge.ErrorCode(err) != callbridge.ECONFLICT && callbridge.ErrorCode(err) != callbridge.ENOFUNDS {
		t.Errorf("reused call id: %v", err)
	}
	if _, err := auth.AuthorizeCall(ctx, acc, uuid.NewString(), "49301234"); callbridge.ErrorCode(err) != callbridge.ENOFUNDS {
		t.Errorf("everything is reserved: %v, want ENOFUNDS", err)
	}
	if err := auth.ReleaseCall(ctx, id); err != nil {
		t.Fatal(err)
	}
	if g, err := auth.AuthorizeCall(ctx, acc, uuid.NewString(), "49301234"); err != nil || g.MaxMS != 120000 {
		t.Errorf("after release: %+v, %v", g, err)
	}
	if _, err := auth.AuthorizeCall(ctx, acc, "not-a-uuid", "49301234"); callbridge.ErrorCode(err) != callbridge.EINVALID {
		t.Errorf("bad call id: %v, want EINVALID", err)
	}
}

func TestSchedulerCatchesUpMissedRuns(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	store := postgres.NewBillingStore(db, time.UTC, "test")
	var mu sync.Mutex
	var slots []time.Time
	job := billing.Job{Name: "rollup", Spec: "15 0 * * *", CatchUp: true, Run: func(_ context.Context, slot time.Time) (int64, error) {
		mu.Lock()
		defer mu.Unlock()
		slots = append(slots, slot)
		return 1, nil
	}}
	s, err := billing.NewScheduler(store, time.UTC, nil, []billing.Job{job})
	if err != nil {
		t.Fatal(err)
	}
	// Never run: only the latest slot is caught up.
	now := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	if n := s.CatchUp(ctx, now); n != 1 || !slots[0].Equal(time.Date(2026, 11, 20, 0, 15, 0, 0, time.UTC)) {
		t.Fatalf("first start: %d runs, slots %v", n, slots)
	}
	// Down for three days: the three missed slots run in order.
	slots = nil
	later := time.Date(2026, 11, 23, 0, 20, 0, 0, time.UTC)
	if n := s.CatchUp(ctx, later); n != 3 {
		t.Fatalf("after downtime: %d runs, slots %v", n, slots)
	}
	for i, want := range []string{"2026-11-21T00:15:00Z", "2026-11-22T00:15:00Z", "2026-11-23T00:15:00Z"} {
		if got := slots[i].UTC().Format(time.RFC3339); got != want {
			t.Errorf("slot %d = %s, want %s", i, got, want)
		}
	}
	// Up to date: nothing to do, even from a second process.
	s2, _ := billing.NewScheduler(postgres.NewBillingStore(db, time.UTC, "other"), time.UTC, nil, []billing.Job{job})
	if n := s2.CatchUp(ctx, later); n != 0 {
		t.Errorf("second process caught up %d runs, want 0", n)
	}
}

func TestSchedulersRacingRunOnce(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	var runs atomic.Int32
	job := billing.Job{Name: "invoice", Spec: "0 2 1 * *", CatchUp: true, Run: func(context.Context, time.Time) (int64, error) {
		runs.Add(1)
		time.Sleep(50 * time.Millisecond) // widen the race window; correctness does not depend on it
		return 1, nil
	}}
	now := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for i := range 4 {
		s, err := billing.NewScheduler(postgres.NewBillingStore(db, time.UTC, "node"+string(rune('a'+i))), time.UTC, nil, []billing.Job{job})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.CatchUp(ctx, now)
		}()
	}
	wg.Wait()
	if got := runs.Load(); got != 1 {
		t.Errorf("4 processes ran the slot %d times, want 1", got)
	}
}

func TestSchedulerRejectsBadSpecs(t *testing.T) {
	run := func(context.Context, time.Time) (int64, error) { return 0, nil }
	for _, jobs := range [][]billing.Job{
		{{Name: "x", Spec: "61 * * * *", Run: run}},
		{{Name: "Bad Name", Spec: "* * * * *", Run: run}},
		{{Name: "x", Spec: "* * * * *"}},
		{{Name: "x", Spec: "* * * * *", Run: run}, {Name: "x", Spec: "off", Run: run}},
	} {
		if _, err := billing.NewScheduler(nil, nil, nil, jobs); callbridge.ErrorCode(err) != callbridge.EINVALID {
			t.Errorf("%+v: got %v, want EINVALID", jobs[0], err)
		}
	}
}

func TestJobsRerunChangesNoTotals(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	store := postgres.NewBillingStore(db, time.UTC, "test")
	acc := newAccount(t, db, false)
	cdrs := postgres.NewCDRStore(db)
	if _, err := cdrs.EnsurePartitions(ctx, time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), 2); err != nil {
		t.Fatal(err)
	}
	for d := 1; d <= 31; d++ {
		storeCDR(t, db, uuid.NewString(), acc, "49301234", time.Date(2026, 10, d, 10, 0, 0, 0, time.UTC), 60000, int64(d)*10000)
	}
	dir := t.TempDir()
	jobs := &billing.Jobs{Store: store, CDRPartitions: cdrs, Location: time.UTC, ReportDir: dir}
	totals := func() [3]int64 {
		var r [3]int64
		db.QueryRowContext(ctx, `SELECT (SELECT coalesce(sum(sell),0) FROM rollups), (SELECT count(*) FROM invoices),
			(SELECT coalesce(sum(total),0) FROM invoices)`).Scan(&r[0], &r[1], &r[2])
		return r
	}
	var first [3]int64
	for i := range 3 {
		for _, slot := range []time.Time{time.Date(2026, 10, 21, 0, 15, 0, 0, time.UTC), time.Date(2026, 11, 1, 0, 15, 0, 0, time.UTC)} {
			if _, err := jobs.Rollup(ctx, slot); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := jobs.Invoice(ctx, time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC)); err != nil {
			t.Fatal(err)
		}
		if _, err := jobs.Partitions(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = totals()
			if first != [3]int64{4960000, 1, 496} {
				t.Fatalf("totals %v, want rollups 4960000 micro-units and one invoice of 496 cents", first)
			}
		} else if got := totals(); got != first {
			t.Errorf("run %d: totals %v, want %v", i+1, got, first)
		}
	}
	invs, err := store.Invoices(ctx, acc)
	if err != nil || len(invs) != 1 {
		t.Fatal(invs, err)
	}
	html := readFile(t, dir+"/invoices/2026-10/"+invs[0].Number+".html")
	for _, want := range []string{"<svg", "<rect", "4930", "4.96", "Invoice CB-000001"} {
		if !strings.Contains(html, want) {
			t.Errorf("invoice HTML lacks %q", want)
		}
	}
	if strings.Contains(html, "http://") || strings.Contains(html, "https://") || strings.Contains(html, "src=") {
		t.Error("invoice HTML refers to external assets")
	}
	rec, err := csv.NewReader(strings.NewReader(readFile(t, dir+"/invoices/2026-10/"+invs[0].Number+".csv"))).ReadAll()
	if err != nil || len(rec) != 6 || rec[len(rec)-1][3] != "total" || rec[len(rec)-1][10] != "4.96" {
		t.Errorf("invoice CSV = %v, %v", rec, err)
	}
	if u := readFile(t, dir+"/usage/2026-10-20.csv"); !strings.Contains(u, "4930") {
		t.Errorf("usage report = %q", u)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteInvoiceHTMLEscapes(t *testing.T) {
	inv := &callbridge.Invoice{
		Kind: callbridge.DocInvoice, Number: "CB-000007", Period: "2026-10", Currency: "EUR", Exponent: 2,
		Exact: 1500000, Subtotal: 150, Tax: 29, Total: 179, TaxBPS: 1900,
		Lines: []callbridge.InvoiceLine{{Kind: "usage", Period: "2026-10", Destination: `<script>alert(1)</script>`, Amount: 1500000, AmountMinor: 150, BilledMS: 90000}},
		Days:  []callbridge.DayUsage{{Day: "2026-10-02", Amount: 1000000}, {Day: "2026-10-30", Amount: 500000}},
	}
	var buf bytes.Buffer
	if err := billing.WriteInvoiceHTML(&buf, inv, billing.Issuer{}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "<script>") {
		t.Error("destination not escaped")
	}
	for _, want := range []string{"1.79", "0.29", "Tax 19%", "<rect", "1.50", "Total due EUR"} {
		if !strings.Contains(out, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if got := strings.Count(out, "<rect"); got != 31 {
		t.Errorf("%d bars, want 31 (one per day of October)", got)
	}
	var csvBuf bytes.Buffer
	inv.Lines[0].Destination = "=cmd()"
	if err := billing.WriteInvoiceCSV(&csvBuf, inv); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(csvBuf.String(), "'=cmd()") {
		t.Errorf("formula not neutralised: %s", csvBuf.String())
	}
}

func TestMoney(t *testing.T) {
	for _, tt := range []struct {
		in   int64
		want string
	}{{0, "0.00"}, {1000000, "1.00"}, {1500000, "1.50"}, {1234500, "1.2345"}, {-10000, "-0.01"}, {1, "0.000001"}} {
		if got := billing.Money(tt.in); got != tt.want {
			t.Errorf("Money(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestSchedulerReportsRunOutcomes: OnRun hears of every run with its
// outcome: ok, failed, skipped (the slot already done), cancelled.
func TestSchedulerReportsRunOutcomes(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	fail := errors.New("disk full")
	var next error
	job := billing.Job{Name: "rollup", Spec: "15 0 * * *", Run: func(ctx context.Context, _ time.Time) (int64, error) {
		if next == context.Canceled {
			return 0, ctx.Err()
		}
		return 1, next
	}}
	s, err := billing.NewScheduler(postgres.NewBillingStore(db, time.UTC, "test"), time.UTC, nil, []billing.Job{job})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	s.OnRun = func(job, outcome string, took time.Duration) {
		if took < 0 {
			t.Errorf("%s %s took %v", job, outcome, took)
		}
		got = append(got, job+" "+outcome)
	}
	day := func(d int) time.Time { return time.Date(2026, 11, d, 0, 15, 0, 0, time.UTC) }
	s.Run(ctx, "rollup", day(1), false)
	s.Run(ctx, "rollup", day(1), false) // done already
	next = fail
	if _, err := s.Run(ctx, "rollup", day(2), false); !errors.Is(err, fail) {
		t.Errorf("failing run: %v", err)
	}
	next = context.Canceled
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	s.Run(cctx, "rollup", day(3), false)
	want := []string{"rollup ok", "rollup skipped", "rollup failed", "rollup cancelled"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("OnRun heard %v, want %v", got, want)
	}
}

// TestInvoiceDocumentsInMinorUnits renders an invoice in a currency
// without decimals and a credit note in one with three: amounts due have
// exactly the currency's decimals, the exact amounts and the rounding
// keep micro-units, and a credit note names the invoice it corrects.
func TestInvoiceDocumentsInMinorUnits(t *testing.T) {
	jpy := &callbridge.Invoice{
		Kind: callbridge.DocInvoice, Number: "CB-000008", Period: "2026-10", Currency: "JPY", Exponent: 0,
		Exact: 1_555_599_769, Subtotal: 1556, TaxBPS: 1000, Tax: 156, Total: 1712, Rounding: 400_231,
		Lines: []callbridge.InvoiceLine{{Kind: "usage", Period: "2026-10", Destination: "Tokyo", Amount: 1_555_599_769, AmountMinor: 1556}},
	}
	kwd := &callbridge.Invoice{
		Kind: callbridge.DocCreditNote, Number: "CB-CN-000001", CorrectsNumber: "CB-000002", Period: "2026-09", Currency: "KWD", Exponent: 3,
		Exact: -86_112_473, Subtotal: -86_112, TaxBPS: 0, Tax: 0, Total: -86_112, Rounding: 473,
		Lines: []callbridge.InvoiceLine{{Kind: "credit", Period: "2026-09", Destination: "Kuwait", Amount: -86_112_473, AmountMinor: -86_112}},
	}
	for _, tt := range []struct {
		inv        *callbridge.Invoice
		html, csvs []string
	}{
		{jpy, []string{"Invoice CB-000008", "1556", "1712", "Total due JPY", "1555.599769", "0.400231"},
			[]string{"CB-000008,invoice,,usage,2026-10,Tokyo,0,0,0.00,1555.599769,1556,JPY", ",total,2026-10,,,,,,1712,JPY"}},
		{kwd, []string{"Credit note CB-CN-000001", "Corrects invoice", "CB-000002", "Total credited KWD", "86.112<", "-86.112473"},
			[]string{"CB-CN-000001,credit_note,CB-000002,credit,2026-09,Kuwait,0,0,0.00,-86.112473,-86.112,KWD", ",total,2026-09,,,,,,-86.112,KWD"}},
	} {
		var h, c bytes.Buffer
		if err := billing.WriteInvoiceHTML(&h, tt.inv, billing.Issuer{}); err != nil {
			t.Fatal(err)
		}
		if err := billing.WriteInvoiceCSV(&c, tt.inv); err != nil {
			t.Fatal(err)
		}
		for _, want := range tt.html {
			if !strings.Contains(h.String(), want) {
				t.Errorf("%s: HTML lacks %q", tt.inv.Number, want)
			}
		}
		for _, want := range tt.csvs {
			if !strings.Contains(c.String(), want) {
				t.Errorf("%s: CSV lacks %q:\n%s", tt.inv.Number, want, c.String())
			}
		}
	}
	if strings.Contains(kwdHTML(t, kwd), "Usage by day") {
		t.Error("a credit note shows a usage chart")
	}
}

func kwdHTML(t *testing.T, inv *callbridge.Invoice) string {
	t.Helper()
	var b bytes.Buffer
	if err := billing.WriteInvoiceHTML(&b, inv, billing.Issuer{}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestInvoiceJobIssuesTheLatestClosedMonth: the invoice job of a slot
// issues the latest month closed at the slot, so a slot inside the grace
// issues nothing new, and a slot after it issues the month that ended.
func TestInvoiceJobIssuesTheLatestClosedMonth(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	store := postgres.NewBillingStore(db, time.UTC, "test")
	store.Grace = 24 * time.Hour
	acc := newAccount(t, db, false)
	if _, err := postgres.NewCDRStore(db).EnsurePartitions(ctx, time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), 2); err != nil {
		t.Fatal(err)
	}
	storeCDR(t, db, uuid.NewString(), acc, "49301234", time.Date(2026, 10, 31, 23, 0, 0, 0, time.UTC), 60000, 123456)
	clock := time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC)
	jobs := &billing.Jobs{Store: store, Location: time.UTC, Grace: store.Grace, Now: func() time.Time { return clock }}
	// At 02:00 on November 1st October is in its grace: September, the
	// latest closed month, has nothing to bill.
	if n, err := jobs.Invoice(ctx, clock); err != nil || n != 0 {
		t.Fatalf("slot inside the grace: %d documents, %v; want 0", n, err)
	}
	// The default slot, 02:00 on the 2nd, issues October.
	clock = time.Date(2026, 11, 2, 2, 0, 0, 0, time.UTC)
	if n, err := jobs.Invoice(ctx, clock); err != nil || n != 1 {
		t.Fatalf("slot after the grace: %d documents, %v; want October's invoice", n, err)
	}
	invs, err := store.Invoices(ctx, acc)
	if err != nil || len(invs) != 1 || invs[0].Period != "2026-10" || invs[0].Total != 12 {
		t.Fatalf("invoices %+v, %v; want October's of 0.12", invs, err)
	}
	// A slot caught up late still issues its own month: nothing new.
	clock = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	if n, err := jobs.Invoice(ctx, time.Date(2026, 11, 2, 2, 0, 0, 0, time.UTC)); err != nil || n != 0 {
		t.Errorf("catch-up of the October slot: %d, %v", n, err)
	}
	if y, m := billing.InvoiceMonth(time.Date(2026, 12, 2, 2, 0, 0, 0, time.UTC), time.UTC, 48*time.Hour); y != 2026 || m != time.October {
		t.Errorf("a slot before a 48h grace ends issues %d-%02d, want the month before: 2026-10", y, m)
	}
}

func TestLateInvoiceMonths(t *testing.T) {
	from := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tt := range []struct {
		spec  string
		grace time.Duration
		late  int
	}{
		{billing.DefaultSchedules()[billing.JobInvoice], day, 0}, // 02:00 on the 2nd, 26 h after
		{"0 2 1 * *", day, 12},      // 02:00 on the 1st: inside a day's grace
		{"0 2 1 * *", time.Hour, 0}, // ... but after an hour's
		{"0 2 * * *", 3 * day, 0},   // daily: the 4th's slot is on time
		{"0 0 1 1 *", 0, 11},        // yearly: only December is on time
		{"off", day, 0},
	} {
		if got := billing.LateInvoiceMonths(tt.spec, time.UTC, tt.grace, from); len(got) != tt.late {
			t.Errorf("%q with grace %s: late %v, want %d months", tt.spec, tt.grace, got, tt.late)
		}
	}
}
