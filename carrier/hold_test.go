package carrier_test

import (
	"context"
	"testing"
	"time"

	"callbridge/carrier"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
	"callbridge/routing"
)

// TestHoldCountsOverTheCap: an attempt the switch placed itself (Hold)
// counts even when its gateway is full, so the other controller's Begin
// is refused until both held attempts end; Unhold after an End of the
// same gateway still leaves no slot behind, and leaves the breaker alone.
func TestHoldCountsOverTheCap(t *testing.T) {
	db := pgtest.New(t)
	gws := controllers(t, db, 2, carrier.Config{
		Limits:  map[string]routing.Limits{"capped": {MaxActive: 1}},
		Breaker: routing.BreakerConfig{Failures: 1, Cooldown: time.Hour},
	})
	ctx := context.Background()
	slots := postgres.NewGatewaySlots(db)
	active := func() int {
		loads, err := slots.Loads(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range loads {
			if l.Gateway == "capped" {
				return l.Active
			}
		}
		return 0
	}
	a, b := gws[0], gws[1]
	first := a.Hold(ctx, "capped", time.Now())
	second := a.Hold(ctx, "capped", time.Now())
	if first == 0 || second == 0 || first == second {
		t.Fatalf("Hold over the cap: slots %d and %d, want two slots", first, second)
	}
	if n := active(); n != 2 {
		t.Fatalf("gateway_slots counts %d active, want 2 (held over the cap of 1)", n)
	}
	if r := b.Begin(ctx, "capped", time.Now()); r != routing.ReasonAtCapacity {
		t.Fatalf("the other controller's Begin: %s, want at_capacity", r)
	}
	a.Unhold("capped", first)
	wait.For(t, "the first slot released", func() bool { return active() == 1 }, wait.Every(10*time.Millisecond))
	if r := b.Begin(ctx, "capped", time.Now()); r != routing.ReasonAtCapacity {
		t.Fatalf("Begin with one held attempt: %s, want at_capacity", r)
	}
	a.Unhold("capped", second)
	wait.For(t, "the second slot released", func() bool { return active() == 0 }, wait.Every(10*time.Millisecond))
	if h := a.Health("capped", time.Now()); h.Active != 0 || h.Breaker != routing.BreakerClosed {
		t.Fatalf("after both Unholds: %+v, want no call and a closed breaker", h)
	}

	// An End through the gateway releases its oldest slot, which may be
	// a held one: the Unhold then releases the other.
	held := a.Hold(ctx, "capped", time.Now())
	a.Hold(ctx, "capped", time.Now())
	a.End("capped", time.Now(), false)
	a.Unhold("capped", held)
	wait.For(t, "both slots released", func() bool { return active() == 0 }, wait.Every(10*time.Millisecond))
}
