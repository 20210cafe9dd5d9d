package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"callbridge"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"

	"github.com/google/uuid"
)

// testCDR returns an answered, priced CDR of account starting at start.
func testCDR(account string, start time.Time) *callbridge.CDR {
	return &callbridge.CDR{
		UUID: uuid.NewString(), Leg: callbridge.LegCallbackA, AccountID: account, Direction: "outbound",
		Caller: "4930111", Callee: "4930222", Presented: "4930111", Gateway: "carrier", Node: "fs1",
		StartAt: start, AnswerAt: start.Add(time.Second), EndAt: start.Add(61 * time.Second),
		DurationMS: 61000, BillMS: 60000, HangupCause: "NORMAL_CLEARING", Q850: 16,
		Disposition: callbridge.DispositionAnswered, Sell: 12500, SellCurrency: "EUR", SellDeckID: "d1",
		SellDeckVersion: 1, SellPrefix: "49", Buy: 5000, BuyCurrency: "EUR", Flags: callbridge.CDRMinimum,
	}
}

func newAccount(tb testing.TB, db *postgres.DB) string {
	tb.Helper()
	a := &callbridge.Account{Name: "cdr test", Currency: "EUR"}
	if _, err := postgres.NewAccountService(db).CreateAccount(context.Background(), a); err != nil {
		tb.Fatal(err)
	}
	return a.ID
}

func countCDRs(t *testing.T, db *postgres.DB) int {
	t.Helper()
	var n int
	if err := pgtest.Get(context.Background(), db, &n, `SELECT count(*) FROM cdrs`); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWriteBatchStoresEachChannelOnce(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewCDRStore(db)
	acc := newAccount(t, db)
	start := time.Date(2026, 3, 10, 12, 0, 0, 123456000, time.UTC)

	c1, c2 := testCDR(acc, start), testCDR(acc, start.Add(time.Minute))
	dup := *c1
	n, err := s.WriteBatch(ctx, []*callbridge.CDR{c1, c2, &dup}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("first batch inserted %d, want 2", n)
	}
	// A replay of the batch, and the same channel under another start
	// time (the partition key), insert nothing.
	other := *c2
	other.StartAt = start.AddDate(0, 2, 0)
	n, err = s.WriteBatch(ctx, []*callbridge.CDR{c1, c2, &other}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("replay inserted %d, want 0", n)
	}
	if got := countCDRs(t, db); got != 2 {
		t.Errorf("%d CDRs stored, want 2", got)
	}
	got, err := s.CDR(ctx, acc, c1.UUID)
	if err != nil {
		t.Fatal(err)
	}
	c1.RatedAt, c1.CreatedAt = got.RatedAt, got.CreatedAt
	wantJSON, _ := json.Marshal(c1)
	gotJSON, _ := json.Marshal(got)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("stored CDR\n got %s\nwant %s", gotJSON, wantJSON)
	}
	// Another account's CDR is not found.
	if _, err := s.CDR(ctx, newAccount(t, db), c1.UUID); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("other account's CDR: got %v, want ENOTFOUND", err)
	}
}

func TestWriteBatchConcurrentWritersStoreOnce(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	acc := newAccount(t, db)
	start := time.Now().UTC()
	var cdrs []*callbridge.CDR
	for i := range 500 {
		cdrs = append(cdrs, testCDR(acc, start.Add(time.Duration(i)*time.Millisecond)))
	}
	// Four controllers receive the same hangups, in different batch cuts.
	var wg sync.WaitGroup
	total := make([]int, 4)
	errs := make([]error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := postgres.NewCDRStore(db)
			size := 50 + w*37
			for i := 0; i < len(cdrs); i += size {
				n, err := s.WriteBatch(ctx, cdrs[i:min(i+size, len(cdrs))], nil)
				if err != nil {
					errs[w] = err
					return
				}
				total[w] += n
			}
		}()
	}
	wg.Wait()
	sum := 0
	for w := range 4 {
		if errs[w] != nil {
			t.Fatalf("writer %d: %v", w, errs[w])
		}
		sum += total[w]
	}
	if sum != 500 {
		t.Errorf("writers inserted %d in all, want 500", sum)
	}
	if got := countCDRs(t, db); got != 500 {
		t.Errorf("%d CDRs stored, want 500", got)
	}
}

func TestLiveChannels(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewCDRStore(db)
	acc := newAccount(t, db)
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	mk := func(id string, answer time.Time, maxMS int64) *callbridge.LiveChannel {
		return &callbridge.LiveChannel{UUID: id, Node: "fs1", Leg: callbridge.LegCallbackA, AccountID: acc,
			Direction: "outbound", Caller: "1", Callee: "2", Presented: "1", StartAt: now, AnswerAt: answer,
			MaxMS: maxMS, SeenAt: now}
	}
	a, b := uuid.NewString(), uuid.NewString()
	// CREATE then ANSWER of a in one batch, b only created.
	if _, err := s.WriteBatch(ctx, nil, []*callbridge.LiveChannel{mk(a, time.Time{}, 60000), mk(a, now.Add(time.Second), 60000), mk(b, time.Time{}, 0)}); err != nil {
		t.Fatal(err)
	}
	live, err := s.LiveChannels(ctx, "fs1")
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 2 {
		t.Fatalf("%d live channels, want 2", len(live))
	}
	for _, l := range live {
		if l.UUID == a && !l.AnswerAt.Equal(now.Add(time.Second)) {
			t.Errorf("a answered at %v, want %v", l.AnswerAt, now.Add(time.Second))
		}
	}
	// a is overdue 62 s after its answer (60 s max + 1 s grace); b, with
	// no max, only after the default maximum.
	over, err := s.OverdueChannels(ctx, now.Add(63*time.Second), time.Hour, time.Second, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(over) != 1 || over[0].UUID != a {
		t.Errorf("overdue = %v, want only a", over)
	}
	// a's CDR removes it; a late CREATE of a does not bring it back.
	c := testCDR(acc, now)
	c.UUID = a
	if _, err := s.WriteBatch(ctx, []*callbridge.CDR{c}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteBatch(ctx, nil, []*callbridge.LiveChannel{mk(a, time.Time{}, 0)}); err != nil {
		t.Fatal(err)
	}
	live, _ = s.LiveChannels(ctx, "fs1")
	if len(live) != 1 || live[0].UUID != b {
		t.Errorf("live after a's CDR = %v, want only b", live)
	}
}

func TestEnsurePartitionsMovesDefaultRows(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewCDRStore(db)
	acc := newAccount(t, db)
	far := time.Date(2031, 7, 15, 0, 0, 0, 0, time.UTC)
	c := testCDR(acc, far)
	if _, err := s.WriteBatch(ctx, []*callbridge.CDR{c}, nil); err != nil {
		t.Fatal(err)
	}
	var part string
	if err := pgtest.Get(context.Background(), db, &part, `SELECT tableoid::regclass::text FROM cdrs WHERE uuid = $1`, c.UUID); err != nil {
		t.Fatal(err)
	}
	if part != "cdrs_default" {
		t.Fatalf("CDR of 2031 in %s, want cdrs_default", part)
	}
	if _, err := s.EnsurePartitions(ctx, far, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnsurePartitions(ctx, far, 1); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if err := pgtest.Get(context.Background(), db, &part, `SELECT tableoid::regclass::text FROM cdrs WHERE uuid = $1`, c.UUID); err != nil {
		t.Fatal(err)
	}
	if part != "cdrs_203107" {
		t.Errorf("CDR of July 2031 in %s, want cdrs_203107", part)
	}
	var n int
	pgtest.Get(context.Background(), db, &n, `SELECT count(*) FROM pg_class WHERE relname = 'cdrs_203108'`)
	if n != 1 {
		t.Errorf("next month's partition cdrs_203108 missing")
	}
}

func TestCDRsFilterAndCursor(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewCDRStore(db)
	acc, other := newAccount(t, db), newAccount(t, db)
	start := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	binding := uuid.NewString()
	var all []*callbridge.CDR
	for i := range 25 {
		c := testCDR(acc, start.Add(time.Duration(i/5)*time.Hour)) // five share each start time
		if i%5 == 0 {
			c.BindingID = binding
			c.Callee = "4477000" + fmt.Sprint(i)
		}
		all = append(all, c)
	}
	all = append(all, testCDR(other, start))
	if _, err := s.WriteBatch(ctx, all, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    callbridge.CDRFilter
		want int
	}{
		{"all", callbridge.CDRFilter{}, 25},
		{"from", callbridge.CDRFilter{From: start.Add(time.Hour)}, 20},
		{"to", callbridge.CDRFilter{To: start.Add(time.Hour)}, 5},
		{"binding", callbridge.CDRFilter{BindingID: binding}, 5},
		{"number", callbridge.CDRFilter{Number: "44770005"}, 1},
		{"malformed binding", callbridge.CDRFilter{BindingID: "nope"}, 0},
		{"callback", callbridge.CDRFilter{CallbackID: uuid.NewString()}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := map[string]bool{}
			f := tt.f
			f.Limit = 3
			for page := 0; page < 20; page++ {
				got, next, err := s.CDRs(ctx, acc, f)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range got {
					if seen[c.UUID] {
						t.Fatalf("CDR %s on two pages", c.UUID)
					}
					if c.AccountID != acc {
						t.Fatalf("CDR of another account listed")
					}
					seen[c.UUID] = true
				}
				if next == "" {
					break
				}
				f.Cursor = next
			}
			if len(seen) != tt.want {
				t.Errorf("got %d CDRs, want %d", len(seen), tt.want)
			}
		})
	}
	if _, _, err := s.CDRs(ctx, acc, callbridge.CDRFilter{Cursor: "garbage!"}); callbridge.ErrorCode(err) != callbridge.EINVALID {
		t.Errorf("bad cursor: got %v, want EINVALID", err)
	}
}

func TestDeadLetter(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewCDRStore(db)
	d := &callbridge.CDRDeadLetter{UUID: "x", Node: "fs1", Reason: "invalid value", Attempts: 3,
		Payload: json.RawMessage(`{"a":"\u0000"}`)}
	if err := s.DeadLetter(ctx, d); err != nil {
		t.Fatal(err)
	}
	got, err := s.DeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || string(got[0].Payload) != `{"a":"\u0000"}` || got[0].Attempts != 3 {
		t.Errorf("dead letters = %+v", got)
	}
}

func TestRerateRecordsOldAndNewPrice(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewCDRStore(db)
	acc, other := newAccount(t, db), newAccount(t, db)
	start := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	var cdrs []*callbridge.CDR
	for i := range 2500 {
		c := testCDR(acc, start.Add(time.Duration(i%7)*time.Second))
		c.Sell, c.Flags = 0, callbridge.CDRUnrated
		cdrs = append(cdrs, c)
	}
	cdrs = append(cdrs, testCDR(other, start))
	if _, err := s.WriteBatch(ctx, cdrs, nil); err != nil {
		t.Fatal(err)
	}
	price := func(_ context.Context, c *callbridge.CDR) error {
		c.Sell, c.Flags, c.SellDeckVersion = 20000, 0, 2
		return nil
	}
	sum, err := s.Rerate(ctx, postgres.RerateFilter{From: start, To: start.Add(time.Hour), AccountID: acc}, price)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Seen != 2500 || sum.Changed != 2500 || sum.SellDelta != 2500*20000 {
		t.Errorf("summary = %+v, want 2500 seen and changed, delta %d", sum, 2500*20000)
	}
	// A second run with the same deck changes nothing.
	sum, err = s.Rerate(ctx, postgres.RerateFilter{From: start, To: start.Add(time.Hour), AccountID: acc}, price)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Seen != 2500 || sum.Changed != 0 {
		t.Errorf("second run = %+v, want 2500 seen, 0 changed", sum)
	}
	c, err := s.CDR(ctx, acc, cdrs[0].UUID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sell != 20000 || c.Flags != callbridge.CDRRerated {
		t.Errorf("rerated CDR sell %d flags %v, want 20000 rerated", c.Sell, c.Flags)
	}
	var hist []struct {
		OldSell  int64  `db:"old_sell"`
		NewSell  int64  `db:"new_sell"`
		OldFlags string `db:"old_flags"`
	}
	if err := pgtest.Select(ctx, db, &hist, `SELECT old_sell, new_sell, array_to_string(old_flags, ',') AS old_flags
		FROM cdr_ratings WHERE uuid = $1 ORDER BY id`, c.UUID); err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || hist[0].OldSell != 0 || hist[0].NewSell != 20000 || hist[0].OldFlags != callbridge.CDRUnrated.String() {
		t.Errorf("history = %+v", hist)
	}
	var otherSell int64
	pgtest.Get(context.Background(), db, &otherSell, `SELECT sell_micros FROM cdrs WHERE account_id = $1`, other)
	if otherSell != 12500 {
		t.Errorf("other account's CDR repriced to %d", otherSell)
	}
	var total int64
	pgtest.Get(context.Background(), db, &total, `SELECT sum(sell_micros) FROM cdrs WHERE account_id = $1`, acc)
	if total != 2500*20000 {
		t.Errorf("sum of sell = %d, want %d (no double counting)", total, 2500*20000)
	}
}

func BenchmarkWriteBatch(b *testing.B) {
	db := pgtest.New(b)
	ctx := context.Background()
	s := postgres.NewCDRStore(db)
	acc := newAccount(b, db)
	const size = 1000
	start := time.Now().UTC()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		batch := make([]*callbridge.CDR, size)
		for j := range batch {
			batch[j] = testCDR(acc, start.Add(time.Duration(i*size+j)*time.Microsecond))
		}
		b.StartTimer()
		if _, err := s.WriteBatch(ctx, batch, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "cdrs/s")
}
