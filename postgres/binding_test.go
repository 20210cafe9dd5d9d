package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"callbridge"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
)

// bindingFixture is a database with one account and a small pool.
type bindingFixture struct {
	db       *postgres.DB
	bindings *postgres.BindingService
	numbers  *postgres.NumberService
	account  string
}

func newBindingFixture(t *testing.T, pool ...callbridge.Number) *bindingFixture {
	t.Helper()
	db := pgtest.New(t)
	ctx := context.Background()
	a := &callbridge.Account{Name: "shop"}
	if _, err := postgres.NewAccountService(db).CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	f := &bindingFixture{db: db, bindings: postgres.NewBindingService(db), numbers: postgres.NewNumberService(db), account: a.ID}
	if len(pool) > 0 {
		var ns []*callbridge.VirtualNumber
		for i, n := range pool {
			ns = append(ns, &callbridge.VirtualNumber{Number: n, Gateway: "carrier", Area: fmt.Sprintf("area%d", i%2), Enabled: true})
		}
		if _, err := f.numbers.CreateNumbers(ctx, a.ID, ns); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *bindingFixture) bind(t *testing.T, mode callbridge.BindingMode, x, a, b callbridge.Number) (*callbridge.Binding, error) {
	t.Helper()
	return f.bindings.CreateBinding(context.Background(), &callbridge.BindingRequest{
		AccountID: f.account, Mode: mode, X: x, A: a, B: b, ExpiresAt: time.Now().Add(time.Hour),
	})
}

const (
	x1 = callbridge.Number("4930100001")
	x2 = callbridge.Number("4930100002")
	x3 = callbridge.Number("4930100003")
	pa = callbridge.Number("4917000001")
	pb = callbridge.Number("4917000002")
	pc = callbridge.Number("4917000003")
	pd = callbridge.Number("4917000004")
)

func TestBindingRoutingRules(t *testing.T) {
	tests := []struct {
		name   string
		first  [3]callbridge.Number // mode marker in [0]: "" AXB a,b ; XB uses a=""
		firstM callbridge.BindingMode
		second [3]callbridge.Number
		secM   callbridge.BindingMode
		code   string
	}{
		{"xb twice on one x", [3]callbridge.Number{x1, "", pa}, callbridge.ModeXB, [3]callbridge.Number{x1, "", pb}, callbridge.ModeXB, callbridge.ECONFLICT},
		{"axb disjoint pairs share x", [3]callbridge.Number{x1, pa, pb}, callbridge.ModeAXB, [3]callbridge.Number{x1, pc, pd}, callbridge.ModeAXB, ""},
		{"axb same a", [3]callbridge.Number{x1, pa, pb}, callbridge.ModeAXB, [3]callbridge.Number{x1, pa, pc}, callbridge.ModeAXB, callbridge.ECONFLICT},
		{"axb a of one is b of other", [3]callbridge.Number{x1, pa, pb}, callbridge.ModeAXB, [3]callbridge.Number{x1, pc, pa}, callbridge.ModeAXB, callbridge.ECONFLICT},
		{"axb b of one is a of other", [3]callbridge.Number{x1, pa, pb}, callbridge.ModeAXB, [3]callbridge.Number{x1, pb, pc}, callbridge.ModeAXB, callbridge.ECONFLICT},
		{"axb same pair other x", [3]callbridge.Number{x1, pa, pb}, callbridge.ModeAXB, [3]callbridge.Number{x2, pa, pb}, callbridge.ModeAXB, ""},
		{"xb then axb on x", [3]callbridge.Number{x1, "", pa}, callbridge.ModeXB, [3]callbridge.Number{x1, pc, pd}, callbridge.ModeAXB, callbridge.ECONFLICT},
		{"axb then xb on x", [3]callbridge.Number{x1, pa, pb}, callbridge.ModeAXB, [3]callbridge.Number{x1, "", pc}, callbridge.ModeXB, callbridge.ECONFLICT},
		{"x not in pool", [3]callbridge.Number{x1, pa, pb}, callbridge.ModeAXB, [3]callbridge.Number{"4930999999", pc, pd}, callbridge.ModeAXB, callbridge.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newBindingFixture(t, x1, x2)
			if _, err := f.bind(t, tt.firstM, tt.first[0], tt.first[1], tt.first[2]); err != nil {
				t.Fatalf("first bind: %v", err)
			}
			_, err := f.bind(t, tt.secM, tt.second[0], tt.second[1], tt.second[2])
			if got := callbridge.ErrorCode(err); got != tt.code {
				t.Errorf("got %q (%v), want %q", got, err, tt.code)
			}
		})
	}
}

// TestConstraintsWithoutCode shows the database itself refuses an
// ambiguous route written behind the code's back.
func TestConstraintsWithoutCode(t *testing.T) {
	f := newBindingFixture(t, x1)
	if _, err := f.bind(t, callbridge.ModeAXB, x1, pa, pb); err != nil {
		t.Fatal(err)
	}
	_, err := f.db.Exec(`INSERT INTO bindings (account_id, mode, x, a, b, status, expires_at)
		VALUES ($1, 'AXB', $2, $3, $4, 'active', now() + interval '1 hour')`, f.account, x1, pb, pc)
	if got := callbridge.ErrorCode(postgres.Error(err)); got != callbridge.ECONFLICT {
		t.Errorf("got %q (%v), want conflict", got, err)
	}
}

func TestExpiredBindingDoesNotBlock(t *testing.T) {
	f := newBindingFixture(t, x1)
	ctx := context.Background()
	b, err := f.bind(t, callbridge.ModeXB, x1, "", pa)
	if err != nil {
		t.Fatal(err)
	}
	// The binding's time passes; no sweep has run.
	if _, err := f.db.Exec(`UPDATE bindings SET expires_at = now() - interval '1 second' WHERE id = $1`, b.ID); err != nil {
		t.Fatal(err)
	}
	n, bs, err := f.bindings.RoutableLine(ctx, x1)
	if err != nil || n == nil {
		t.Fatalf("RoutableLine: %v, %v", n, err)
	}
	if len(bs) != 0 {
		t.Errorf("got %d routable bindings on an expired X, want 0", len(bs))
	}
	// Allocation from the pool and an explicit X both work at once.
	nb, err := f.bind(t, callbridge.ModeXB, "", "", pb)
	if err != nil {
		t.Fatalf("allocate after expiry: %v", err)
	}
	if nb.X != x1 {
		t.Errorf("got x %s, want %s", nb.X, x1)
	}
	old, err := f.bindings.Binding(ctx, f.account, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if old.Status != callbridge.StatusExpired {
		t.Errorf("got old status %s, want expired", old.Status)
	}
	evs, err := f.bindings.BindingEvents(ctx, f.account, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%s>%s:%s", e.From, e.To, e.Detail))
	}
	// The test's own UPDATE of expires_at is recorded as an update.
	moved := "active>active:updated: expires_at=" + old.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z")
	want := []string{">binding:created", "binding>active:created", moved, "active>expired:expired"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got events %v, want %v", got, want)
	}
}

func TestAllocationPrefersAreaAndAvoidsParties(t *testing.T) {
	f := newBindingFixture(t, x1, x2, x3) // x1, x3 area0; x2 area1
	ctx := context.Background()
	b, err := f.bindings.CreateBinding(ctx, &callbridge.BindingRequest{
		AccountID: f.account, Mode: callbridge.ModeAXB, A: pa, B: pb, Area: "area1", ExpiresAt: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	if b.X != x2 {
		t.Errorf("got x %s, want %s (area1)", b.X, x2)
	}
	// The same pair again gets another X; a fourth time finds none free.
	seen := map[callbridge.Number]bool{b.X: true}
	for range 2 {
		b, err := f.bind(t, callbridge.ModeAXB, "", pa, pc)
		if err == nil {
			if seen[b.X] {
				t.Errorf("x %s handed out twice to party %s", b.X, pa)
			}
			seen[b.X] = true
			continue
		}
		if callbridge.ErrorCode(err) != callbridge.ENONUMBER {
			t.Fatalf("got %v, want success or no_number_available", err)
		}
	}
	_, err = f.bind(t, callbridge.ModeAXB, "", pd, pa)
	if got := callbridge.ErrorCode(err); got != callbridge.ENONUMBER {
		t.Errorf("got %q (%v), want %q", got, err, callbridge.ENONUMBER)
	}
}

// TestConcurrentAllocation: 50 binds at once for overlapping parties on a
// pool of 3 either succeed with a valid binding or get ENONUMBER, and the
// active bindings never break a routing rule.
func TestConcurrentAllocation(t *testing.T) {
	f := newBindingFixture(t, x1, x2, x3)
	parties := []callbridge.Number{pa, pb, pc, pd, "4917000005"}
	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mode := callbridge.ModeAXB
			a, b := parties[i%len(parties)], parties[(i+1+i/len(parties))%len(parties)]
			if a == b {
				b = parties[(i+2)%len(parties)]
			}
			if i%7 == 0 {
				mode, a = callbridge.ModeXB, ""
			}
			_, errs[i] = f.bindings.CreateBinding(context.Background(), &callbridge.BindingRequest{
				AccountID: f.account, Mode: mode, A: a, B: b, ExpiresAt: time.Now().Add(time.Hour),
			})
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch callbridge.ErrorCode(err) {
		case "":
			ok++
		case callbridge.ENONUMBER:
		default:
			t.Errorf("bind %d: %v", i, err)
		}
	}
	if ok == 0 {
		t.Fatal("no bind succeeded")
	}
	var bad int
	err := pgtest.Get(context.Background(), f.db, &bad, `
		SELECT count(*) FROM bindings p JOIN bindings q ON p.x = q.x AND p.id < q.id
		 WHERE p.status = 'active' AND q.status = 'active'
		   AND (p.mode <> q.mode OR p.mode = 'XB'
		        OR p.a IN (q.a, q.b) OR p.b IN (q.a, q.b))`)
	if err != nil {
		t.Fatal(err)
	}
	if bad != 0 {
		t.Errorf("got %d conflicting pairs of active bindings, want 0", bad)
	}
	t.Logf("%d of 50 binds succeeded", ok)
}

func TestIdempotencyKey(t *testing.T) {
	f := newBindingFixture(t, x1, x2)
	ctx := context.Background()
	req := callbridge.BindingRequest{
		AccountID: f.account, Mode: callbridge.ModeXB, B: pb, ExpiresAt: time.Now().Add(time.Hour),
		IdempotencyKey: "k1", RequestHash: "h1",
	}
	var wg sync.WaitGroup
	got := make([]*callbridge.Binding, 4)
	errs := make([]error, 4)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := req
			got[i], errs[i] = f.bindings.CreateBinding(ctx, &r)
		}()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if got[i].ID != got[0].ID {
			t.Errorf("request %d got binding %s, want %s", i, got[i].ID, got[0].ID)
		}
	}
	other := req
	other.RequestHash = "h2"
	if _, err := f.bindings.CreateBinding(ctx, &other); callbridge.ErrorCode(err) != callbridge.ECONFLICT {
		t.Errorf("got %v, want conflict for a reused key", err)
	}
}

func TestUpdateAndUnbind(t *testing.T) {
	f := newBindingFixture(t, x1)
	ctx := context.Background()
	b1, err := f.bind(t, callbridge.ModeAXB, x1, pa, pb)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := f.bind(t, callbridge.ModeAXB, x1, pc, pd)
	if err != nil {
		t.Fatal(err)
	}
	// Moving b2's A onto b1's party is refused by the database.
	if _, err := f.bindings.UpdateBinding(ctx, f.account, b2.ID, callbridge.BindingUpdate{A: ptr(pa)}); callbridge.ErrorCode(err) != callbridge.ECONFLICT {
		t.Errorf("got %v, want conflict", err)
	}
	exp := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Microsecond)
	u, err := f.bindings.UpdateBinding(ctx, f.account, b2.ID, callbridge.BindingUpdate{B: ptr[callbridge.Number]("4917000009"), ExpiresAt: &exp, Record: ptr(true)})
	if err != nil {
		t.Fatal(err)
	}
	if u.B != "4917000009" || !u.ExpiresAt.Equal(exp) || !u.Record {
		t.Errorf("got %+v, want b, expiry and record changed", u)
	}
	short := time.Now().Add(10 * time.Second)
	if _, err := f.bindings.UpdateBinding(ctx, f.account, b2.ID, callbridge.BindingUpdate{ExpiresAt: &short}); callbridge.ErrorField(err) != "expires_at" {
		t.Errorf("got %v, want an expires_at error", err)
	}
	// The update is in the history (the refused one is not), naming what changed.
	evs2, err := f.bindings.BindingEvents(ctx, f.account, b2.ID)
	if err != nil {
		t.Fatal(err)
	}
	last := evs2[len(evs2)-1]
	if want := "updated: b, record, expires_at=" + exp.Format("2006-01-02T15:04:05Z"); len(evs2) != 3 ||
		last.From != callbridge.StatusActive || last.To != callbridge.StatusActive || last.Detail != want {
		t.Errorf("b2 events %+v, want binding, active, then active → active %q", evs2, want)
	}
	ub, err := f.bindings.Unbind(ctx, f.account, b1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ub.Status != callbridge.StatusUnbound {
		t.Errorf("got status %s, want unbound", ub.Status)
	}
	// Unbinding again is harmless; the freed party can be bound again.
	if again, err := f.bindings.Unbind(ctx, f.account, b1.ID); err != nil || again.Status != callbridge.StatusUnbound {
		t.Errorf("second unbind: %v, %v", again, err)
	}
	if _, err := f.bind(t, callbridge.ModeAXB, x1, pa, "4917000008"); err != nil {
		t.Errorf("rebind freed party: %v", err)
	}
	if _, err := f.bindings.UpdateBinding(ctx, f.account, b1.ID, callbridge.BindingUpdate{Record: ptr(true)}); callbridge.ErrorCode(err) != callbridge.ECONFLICT {
		t.Errorf("update of unbound binding: got %v, want conflict", err)
	}
	evs, err := f.bindings.BindingEvents(ctx, f.account, b1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(evs); n != 4 || evs[2].To != callbridge.StatusUnbinding || evs[3].To != callbridge.StatusUnbound {
		t.Errorf("got %d events %+v, want binding, active, unbinding, unbound", n, evs)
	}
	// Another account sees nothing.
	if _, err := f.bindings.Binding(ctx, "00000000-0000-4000-8000-000000000000", b1.ID); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("got %v, want not found", err)
	}
}

func TestBindingsList(t *testing.T) {
	f := newBindingFixture(t, x1, x2)
	ctx := context.Background()
	var ids []string
	for i := range 5 {
		b, err := f.bindings.CreateBinding(ctx, &callbridge.BindingRequest{
			AccountID: f.account, Mode: callbridge.ModeAXB, X: x1, A: callbridge.Number(fmt.Sprintf("49170100%02d", i)),
			B: callbridge.Number(fmt.Sprintf("49170200%02d", i)), ExpiresAt: time.Now().Add(time.Hour),
			ExternalID: fmt.Sprintf("order-%d", i),
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append([]string{b.ID}, ids...)
	}
	var got []string
	cursor := ""
	for {
		page, next, err := f.bindings.Bindings(ctx, f.account, callbridge.BindingFilter{X: x1, Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range page {
			got = append(got, b.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Errorf("got %v, want %v", got, ids)
	}
	page, _, err := f.bindings.Bindings(ctx, f.account, callbridge.BindingFilter{Number: "4917020003"})
	if err != nil || len(page) != 1 || page[0].ExternalID != "order-3" {
		t.Errorf("filter by number: got %v, %v", page, err)
	}
	page, _, err = f.bindings.Bindings(ctx, f.account, callbridge.BindingFilter{ExternalID: "order-1", Status: callbridge.StatusActive})
	if err != nil || len(page) != 1 {
		t.Errorf("filter by external id: got %v, %v", page, err)
	}
	// external_id is unique among active bindings.
	_, err = f.bindings.CreateBinding(ctx, &callbridge.BindingRequest{
		AccountID: f.account, Mode: callbridge.ModeXB, X: x2, B: pa, ExpiresAt: time.Now().Add(time.Hour), ExternalID: "order-1",
	})
	if callbridge.ErrorCode(err) != callbridge.ECONFLICT {
		t.Errorf("got %v, want conflict on duplicate external_id", err)
	}
	if _, _, err := f.bindings.Bindings(ctx, f.account, callbridge.BindingFilter{Cursor: "!!"}); callbridge.ErrorField(err) != "cursor" {
		t.Errorf("got %v, want a cursor error", err)
	}
}

func TestListenBindings(t *testing.T) {
	f := newBindingFixture(t, x1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := make(chan callbridge.Number, 16)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- f.bindings.ListenBindings(ctx, func(x callbridge.Number) { changed <- x }, func() {}, ready)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("ListenBindings: %v", err)
	}
	if _, err := f.bind(t, callbridge.ModeXB, x1, "", pa); err != nil {
		t.Fatal(err)
	}
	select {
	case x := <-changed:
		if x != x1 {
			t.Errorf("got notification for %s, want %s", x, x1)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification within 10 s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ListenBindings: %v", err)
	}
}

func TestRoutableBindings(t *testing.T) {
	f := newBindingFixture(t, x1, x2, x3)
	if _, err := f.bind(t, callbridge.ModeAXB, x1, pa, pb); err != nil {
		t.Fatal(err)
	}
	if _, err := f.bind(t, callbridge.ModeAXB, x1, pc, pd); err != nil {
		t.Fatal(err)
	}
	if _, err := f.bind(t, callbridge.ModeXB, x3, "", pa); err != nil {
		t.Fatal(err)
	}
	got := map[callbridge.Number]int{}
	err := f.bindings.RoutableBindings(context.Background(), func(n *callbridge.VirtualNumber, bs []*callbridge.Binding) error {
		got[n.Number] = len(bs)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[callbridge.Number]int{x1: 2, x2: 0, x3: 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func ptr[T any](v T) *T { return &v }
