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
