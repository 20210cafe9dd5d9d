package routing

import (
	"testing"
	"time"
)

func TestParseSofiaStatus(t *testing.T) {
	for in, want := range map[string]SofiaState{"UP": SofiaUp, " down ": SofiaDown, "": SofiaUnknown, "REGED": SofiaUnknown} {
		if got := ParseSofiaStatus(in); got != want {
			t.Errorf("%q: got %s, want %s", in, got, want)
		}
	}
}

func TestGateways(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	var g Gateways
	g.Breaker = BreakerConfig{Failures: 2, Cooldown: 10 * time.Second}
	g.SetLimits("capped", Limits{MaxActive: 2, MaxCPS: 3})
	g.SetSofia("down", SofiaDown)
	g.SetSofia("capped", SofiaUp)

	steps := []struct {
		name    string
		do      func() Reason
		want    Reason
		gateway string
		health  Health
	}{
		{"a down gateway is refused", func() Reason { return g.Begin("down", t0) }, ReasonSofiaDown,
			"down", Health{Sofia: SofiaDown}},
		{"first call", func() Reason { return g.Begin("capped", t0) }, ReasonOK,
			"capped", Health{Sofia: SofiaUp, Active: 1, MaxActive: 2}},
		{"second call", func() Reason { return g.Begin("capped", t0) }, ReasonOK,
			"capped", Health{Sofia: SofiaUp, Active: 2, MaxActive: 2}},
		{"at the concurrent cap", func() Reason { return g.Begin("capped", t0) }, ReasonAtCapacity,
			"capped", Health{Sofia: SofiaUp, Active: 2, MaxActive: 2}},
		{"one ends: room again, this second's third start", func() Reason { g.End("capped", t0, false); return g.Begin("capped", t0) }, ReasonOK,
			"capped", Health{Sofia: SofiaUp, Active: 2, MaxActive: 2, CPSFull: true}},
		{"the per-second cap", func() Reason { g.End("capped", t0, false); return g.Begin("capped", t0) }, ReasonCPSLimit,
			"capped", Health{Sofia: SofiaUp, Active: 1, MaxActive: 2, CPSFull: true}},
		{"the next second", func() Reason { return g.Begin("capped", t0.Add(time.Second)) }, ReasonOK,
			"capped", Health{Sofia: SofiaUp, Active: 2, MaxActive: 2}},
	}
	for _, s := range steps {
		if got := s.do(); got != s.want {
			t.Fatalf("%s: got %s, want %s", s.name, got, s.want)
		}
		at := t0
		if s.name == "the next second" {
			at = t0.Add(time.Second)
		}
		if got := g.Health(s.gateway, at); got != s.health {
			t.Fatalf("%s: health %+v, want %+v", s.name, got, s.health)
		}
	}

	// Carrier failures open the breaker; after the cool-down one call
	// probes; its success closes it.
	for range 2 {
		if r := g.Begin("flaky", t0); r != ReasonOK {
			t.Fatalf("flaky: got %s", r)
		}
		g.End("flaky", t0, true)
	}
	if r := g.Begin("flaky", t0.Add(time.Second)); r != ReasonCircuitOpen {
		t.Errorf("open: got %s, want circuit_open", r)
	}
	if h := g.Health("flaky", t0.Add(time.Second)); h.Breaker != BreakerOpen || h.Active != 0 {
		t.Errorf("open: health %+v", h)
	}
	later := t0.Add(10 * time.Second)
	if r := g.Begin("flaky", later); r != ReasonProbe {
		t.Errorf("after the cool-down: got %s, want probe", r)
	}
	if r := g.Begin("flaky", later); r != ReasonCircuitProbing {
		t.Errorf("during the probe: got %s, want circuit_probing", r)
	}
	g.End("flaky", later, false)
	if r := g.Begin("flaky", later); r != ReasonOK {
		t.Errorf("after the probe succeeded: got %s, want ok", r)
	}
}

// TestGatewaysFeedResolve shows the engine's loop: Resolve reads the live
// view, Begin claims, End records.
func TestGatewaysFeedResolve(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	var g Gateways
	g.Breaker = BreakerConfig{Failures: 1, Cooldown: time.Minute}
	p := newPlan(t, PlanInfo{}, route("49", Priority, "a", "b"))
	policy := p.Policy()
	var res Resolution
	p.Resolve(&res, "4912", t0, Sources{Health: &g})
	first := res.Attempts()[0].Gateway
	if first != "a" || g.Begin(first, t0) != ReasonOK {
		t.Fatalf("got %s", summary(&res))
	}
	g.End(first, t0, policy.Classify("NORMAL_TEMPORARY_FAILURE", 503) == Failover)
	p.Resolve(&res, "4912", t0, Sources{Health: &g})
	if got, want := summary(&res), "b:unpriced | a:circuit_open"; got != want {
		t.Errorf("after a's carrier failure: got %s, want %s", got, want)
	}
}

// TestGatewaysRecord: outcomes of attempts no Begin counted (binding
// calls' attempts, reported by their CDRs) drive the breaker alone: two
// carrier failures open it, the half-open gateway's next outcome is the
// probe's (a failure reopens it, a success closes it), and the call
// counts never move.
func TestGatewaysRecord(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	var g Gateways
	g.Breaker = BreakerConfig{Failures: 2, Cooldown: 10 * time.Second}
	g.Begin("gw", t0) // one call counted by Begin, still up
	steps := []struct {
		name   string
		at     time.Duration
		failed bool
		want   BreakerState
	}{
		{"a failure", 0, true, BreakerClosed},
		{"a second failure opens", time.Second, true, BreakerOpen},
		{"while open, outcomes of earlier calls change nothing", 2 * time.Second, false, BreakerOpen},
		{"half-open: a failed probe reopens", 12 * time.Second, true, BreakerOpen},
		{"half-open again: a carried probe closes", 23 * time.Second, false, BreakerClosed},
	}
	for _, s := range steps {
		g.Record("gw", t0.Add(s.at), s.failed)
		h := g.Health("gw", t0.Add(s.at))
		if h.Breaker != s.want || h.Active != 1 {
			t.Errorf("%s: breaker %s active %d, want %s and 1", s.name, h.Breaker, h.Active, s.want)
		}
	}
}

// TestGatewaysClusterBreaker: two controllers' Gateways fed with the same
// attempts, as serve feeds them: the placer ends its own attempts (End),
// the other records them from their CDRs (Record). Both open after the
// same consecutive failures, and a probe's outcome, whichever controller
// sent it, closes or reopens both.
func TestGatewaysClusterBreaker(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	cfg := BreakerConfig{Failures: 2, Cooldown: 10 * time.Second}
	g1, g2 := &Gateways{Breaker: cfg}, &Gateways{Breaker: cfg}
	// attempt places an attempt through gw on from at, and ends it there
	// and records it on to.
	attempt := func(from, to *Gateways, at time.Duration, failed bool) Reason {
		r := from.Begin("gw", t0.Add(at))
		if r.Kept() {
			from.End("gw", t0.Add(at), failed)
			to.Record("gw", t0.Add(at), failed)
		}
		return r
	}
	states := func(at time.Duration) (BreakerState, BreakerState) {
		return g1.Health("gw", t0.Add(at)).Breaker, g2.Health("gw", t0.Add(at)).Breaker
	}
	check := func(name string, at time.Duration, want BreakerState) {
		t.Helper()
		if s1, s2 := states(at); s1 != want || s2 != want {
			t.Errorf("%s: breakers %s and %s, want both %s", name, s1, s2, want)
		}
	}

	attempt(g1, g2, 0, true)
	check("one failure on the first", 0, BreakerClosed)
	attempt(g2, g1, time.Second, true)
	check("a second failure, on the second", time.Second, BreakerOpen)
	if r := attempt(g1, g2, 2*time.Second, false); r != ReasonCircuitOpen {
		t.Errorf("an attempt while open: %s, want %s", r, ReasonCircuitOpen)
	}

	// The cool-down ends: the second probes, and its probe fails: both
	// open for another cool-down.
	check("the cool-down over", 11*time.Second, BreakerHalfOpen)
	if r := attempt(g2, g1, 11*time.Second, true); r != ReasonProbe {
		t.Errorf("the second's probe: %s, want %s", r, ReasonProbe)
	}
	check("the second's probe failed", 12*time.Second, BreakerOpen)

	// Both probe at once; the first's is carried: both close, and the
	// second's probe, ending after, counts as any closed-breaker outcome.
	if r1, r2 := g1.Begin("gw", t0.Add(22*time.Second)), g2.Begin("gw", t0.Add(22*time.Second)); r1 != ReasonProbe || r2 != ReasonProbe {
		t.Fatalf("both probes: %s and %s, want %s", r1, r2, ReasonProbe)
	}
	check("both probing", 22*time.Second, BreakerProbing)
	g1.End("gw", t0.Add(23*time.Second), false)
	g2.Record("gw", t0.Add(23*time.Second), false)
	check("the first's probe carried", 23*time.Second, BreakerClosed)
	g2.End("gw", t0.Add(24*time.Second), true)
	g1.Record("gw", t0.Add(24*time.Second), true)
	check("the second's probe failed after", 24*time.Second, BreakerClosed)
	attempt(g1, g2, 25*time.Second, true)
	check("and one more failure", 25*time.Second, BreakerOpen)
}
