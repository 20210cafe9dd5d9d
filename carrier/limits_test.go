package carrier_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"callbridge/carrier"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
	"callbridge/routing"
)

// controllers returns n Gateways sharing db's slots, as n controllers
// would, each running until the test ends.
func controllers(t *testing.T, db *postgres.DB, n int, cfg carrier.Config) []*carrier.Gateways {
	t.Helper()
	cfg.Slots = postgres.NewGatewaySlots(db)
	var out []*carrier.Gateways
	for i := range n {
		c := cfg
		c.Owner = string(rune('a' + i))
		g := carrier.New(c)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { g.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		out = append(out, g)
	}
	return out
}

// TestSharedConcurrentCap: two controllers racing for a gateway capped at
// 5 concurrent calls get exactly 5 between them, see the shared count in
// Health, and a call ended on one lets the other start one.
func TestSharedConcurrentCap(t *testing.T) {
	db := pgtest.New(t)
	gws := controllers(t, db, 2, carrier.Config{Limits: map[string]routing.Limits{"capped": {MaxActive: 5}}})
	ctx := context.Background()
	var ok, atCap atomic.Int64
	var started [2]atomic.Int64
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch r := gws[i%2].Begin(ctx, "capped", time.Now()); r {
			case routing.ReasonOK:
				ok.Add(1)
				started[i%2].Add(1)
			case routing.ReasonAtCapacity:
				atCap.Add(1)
			default:
				t.Errorf("got %s", r)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 5 || atCap.Load() != 15 {
		t.Fatalf("%d calls started, %d refused at capacity; want 5 and 15", ok.Load(), atCap.Load())
	}
	for i, g := range gws {
		if h := g.Health("capped", time.Now()); h.Active != 5 || h.MaxActive != 5 || h.Reason() != routing.ReasonAtCapacity {
			t.Errorf("controller %d sees %+v, want 5 of 5 active", i, h)
		}
	}
	holder, other := gws[0], gws[1]
	if started[0].Load() == 0 {
		holder, other = gws[1], gws[0]
	}
	holder.End("capped", time.Now(), false)
	wait.For(t, "the other controller starts a call in the freed slot", func() bool {
		if r := other.Begin(ctx, "capped", time.Now()); r == routing.ReasonOK {
			return true
		}
		return false
	}, wait.Every(10*time.Millisecond))
	if r := holder.Begin(ctx, "capped", time.Now()); r != routing.ReasonAtCapacity {
		t.Errorf("after the other took the freed slot: %s, want at_capacity", r)
	}
}

// TestSharedCPSCap: 3 calls per second through a gateway across two
// controllers; the fourth within the second is refused, and one more may
// start once the second has passed.
func TestSharedCPSCap(t *testing.T) {
	db := pgtest.New(t)
	gws := controllers(t, db, 2, carrier.Config{Limits: map[string]routing.Limits{"paced": {MaxCPS: 3}}})
	ctx := context.Background()
	start := time.Now()
	got := []routing.Reason{}
	for i := range 4 {
		r := gws[i%2].Begin(ctx, "paced", time.Now())
		got = append(got, r)
		if r.Kept() {
			gws[i%2].End("paced", time.Now(), false) // ended calls still count this second
		}
	}
	// The first three always start: nothing else used the gateway. The
	// fourth is refused unless the calls took so long (a loaded machine)
	// that the second had passed before it: the cap is per second of the
	// database's clock, which the test cannot hold still.
	for i, r := range got[:3] {
		if r != routing.ReasonOK {
			t.Errorf("start %d: %s, want ok (starts %v)", i+1, r, got)
		}
	}
	if elapsed := time.Since(start); elapsed < 900*time.Millisecond {
		if got[3] != routing.ReasonCPSLimit {
			t.Errorf("fourth start within %v: %s, want cps_limit", elapsed.Round(time.Millisecond), got[3])
		}
		if h := gws[1].Health("paced", time.Now()); !h.CPSFull {
			t.Errorf("the refused controller's health %+v, want cps_full", h)
		}
	} else {
		t.Logf("the four starts took %v: the fourth (%s) may fall in the next second", elapsed.Round(time.Millisecond), got[3])
	}
	wait.For(t, "a start in the next second", func() bool { return gws[1].Begin(ctx, "paced", time.Now()) == routing.ReasonOK },
		wait.Every(50*time.Millisecond))
}

// TestDeadControllerSlots: the slots of a controller that stops renewing
// them (killed) count until their lease ends, then no longer; a live
// controller's slots outlive several leases because it renews them.
func TestDeadControllerSlots(t *testing.T) {
	db := pgtest.New(t)
	slots := postgres.NewGatewaySlots(db)
	lim := map[string]routing.Limits{"capped": {MaxActive: 2}}
	live := controllers(t, db, 1, carrier.Config{Limits: lim, Lease: 600 * time.Millisecond})[0]
	ctx := context.Background()
	if r := live.Begin(ctx, "capped", time.Now()); r != routing.ReasonOK {
		t.Fatal(r)
	}
	// The dead controller's claim, with no Run renewing it.
	dead := carrier.New(carrier.Config{Limits: lim, Slots: slots, Lease: 600 * time.Millisecond, Owner: "dead"})
	if r := dead.Begin(ctx, "capped", time.Now()); r != routing.ReasonOK {
		t.Fatal(r)
	}
	if r := live.Begin(ctx, "capped", time.Now()); r != routing.ReasonAtCapacity {
		t.Fatalf("two slots held: %s, want at_capacity", r)
	}
	time.Sleep(1500 * time.Millisecond) // over two leases: part of what is asserted
	if r := live.Begin(ctx, "capped", time.Now()); r != routing.ReasonOK {
		t.Fatalf("after the dead one's lease: %s, want ok (its slot expired, the live one's renewed)", r)
	}
	loads, err := slots.Loads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(loads) != 1 || loads[0].Active != 2 {
		t.Errorf("loads %+v, want capped with the live controller's 2 calls", loads)
	}
}

// TestSlotsUnreachable: while the database cannot be reached, a capped
// gateway's calls are held to the caps by this controller alone, and are
// not refused for the outage.
func TestSlotsUnreachable(t *testing.T) {
	db := pgtest.New(t)
	g := carrier.New(carrier.Config{Limits: map[string]routing.Limits{"capped": {MaxActive: 1}}, Slots: postgres.NewGatewaySlots(db)})
	db.Close()
	ctx := context.Background()
	if r := g.Begin(ctx, "capped", time.Now()); r != routing.ReasonOK {
		t.Fatalf("first call: %s, want ok", r)
	}
	if r := g.Begin(ctx, "capped", time.Now()); r != routing.ReasonAtCapacity {
		t.Fatalf("second call: %s, want at_capacity by the local count", r)
	}
}

// TestBreakerThroughGateways: carrier failures open the breaker (End with
// failed), which Begin and Health show, and a success after the cool-down
// closes it; a refused attempt is reported to OnRefused.
func TestBreakerThroughGateways(t *testing.T) {
	var refused []string
	var mu sync.Mutex
	g := carrier.New(carrier.Config{Breaker: routing.BreakerConfig{Failures: 2, Cooldown: 10 * time.Second},
		OnRefused: func(gw string, r routing.Reason) {
			mu.Lock()
			refused = append(refused, gw+":"+r.String())
			mu.Unlock()
		}})
	ctx := context.Background()
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	for range 2 {
		if r := g.Begin(ctx, "flaky", t0); r != routing.ReasonOK {
			t.Fatal(r)
		}
		g.End("flaky", t0, true)
	}
	if r := g.Begin(ctx, "flaky", t0); r != routing.ReasonCircuitOpen {
		t.Errorf("got %s, want circuit_open", r)
	}
	if h := g.Health("flaky", t0); h.Breaker != routing.BreakerOpen {
		t.Errorf("health %+v", h)
	}
	later := t0.Add(10 * time.Second)
	if r := g.Begin(ctx, "flaky", later); r != routing.ReasonProbe {
		t.Errorf("got %s, want probe", r)
	}
	g.End("flaky", later, false)
	if h := g.Health("flaky", later); h.Breaker != routing.BreakerClosed || h.Active != 0 {
		t.Errorf("after the probe: %+v", h)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(refused) != 1 || refused[0] != "flaky:circuit_open" {
		t.Errorf("refusals %v", refused)
	}
}

// TestReleaseTellsTheBreakerNothing: an attempt released without an
// outcome (the node refused the session, or the leg was lost) frees its
// call but neither closes a probing breaker nor clears the failures
// counted towards opening one, as End with a success would.
func TestReleaseTellsTheBreakerNothing(t *testing.T) {
	g := carrier.New(carrier.Config{Breaker: routing.BreakerConfig{Failures: 2, Cooldown: 10 * time.Second}})
	ctx := context.Background()
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

	// A failure, then a released attempt: the next failure still opens it.
	g.Begin(ctx, "flaky", t0)
	g.End("flaky", t0, true)
	if r := g.Begin(ctx, "flaky", t0); r != routing.ReasonOK {
		t.Fatal(r)
	}
	g.Release("flaky")
	if h := g.Health("flaky", t0); h.Breaker != routing.BreakerClosed || h.Active != 0 {
		t.Fatalf("after the release: %+v", h)
	}
	g.Begin(ctx, "flaky", t0)
	g.End("flaky", t0, true)
	if h := g.Health("flaky", t0); h.Breaker != routing.BreakerOpen {
		t.Fatalf("two failures around a release: %+v, want open", h)
	}

	// The probe released: still probing (no other call goes), not closed.
	later := t0.Add(10 * time.Second)
	if r := g.Begin(ctx, "flaky", later); r != routing.ReasonProbe {
		t.Fatalf("got %s, want probe", r)
	}
	g.Release("flaky")
	if h := g.Health("flaky", later); h.Breaker != routing.BreakerProbing || h.Active != 0 {
		t.Errorf("after the probe's release: %+v, want probing with no call", h)
	}
	if r := g.Begin(ctx, "flaky", later); r != routing.ReasonCircuitProbing {
		t.Errorf("got %s, want circuit_probing", r)
	}
}
