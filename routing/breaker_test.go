package routing

import (
	"sync"
	"testing"
	"time"
)

// TestBreaker drives one breaker through a script of steps on a clock of
// its own: each step happens at a second offset and checks the state (and
// for "allow", the answer) that follows.
func TestBreaker(t *testing.T) {
	type step struct {
		at    int    // seconds from t0
		do    string // "fail", "ok", "allow", "deny" (Allow must say no) or "" (only look)
		state BreakerState
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"failures below the threshold keep it closed", []step{
			{0, "fail", BreakerClosed}, {1, "fail", BreakerClosed}, {2, "allow", BreakerClosed},
		}},
		{"consecutive failures open it", []step{
			{0, "fail", BreakerClosed}, {1, "fail", BreakerClosed}, {2, "fail", BreakerOpen},
			{3, "deny", BreakerOpen}, {11, "deny", BreakerOpen},
		}},
		{"a success in between resets the count", []step{
			{0, "fail", BreakerClosed}, {1, "fail", BreakerClosed}, {2, "ok", BreakerClosed},
			{3, "fail", BreakerClosed}, {4, "fail", BreakerClosed}, {5, "fail", BreakerOpen},
		}},
		{"after the cool-down one probe goes through", []step{
			{0, "fail", BreakerClosed}, {0, "fail", BreakerClosed}, {0, "fail", BreakerOpen},
			{10, "", BreakerHalfOpen}, {10, "allow", BreakerProbing}, {11, "deny", BreakerProbing},
		}},
		{"a probe that succeeds closes it", []step{
			{0, "fail", BreakerClosed}, {0, "fail", BreakerClosed}, {0, "fail", BreakerOpen},
			{12, "allow", BreakerProbing}, {13, "ok", BreakerClosed}, {13, "allow", BreakerClosed},
			{14, "fail", BreakerClosed},
		}},
		{"a probe that fails opens it for another cool-down", []step{
			{0, "fail", BreakerClosed}, {0, "fail", BreakerClosed}, {0, "fail", BreakerOpen},
			{10, "allow", BreakerProbing}, {15, "fail", BreakerOpen}, {24, "deny", BreakerOpen},
			{25, "allow", BreakerProbing},
		}},
		{"a probe that never reports is given up after a cool-down", []step{
			{0, "fail", BreakerClosed}, {0, "fail", BreakerClosed}, {0, "fail", BreakerOpen},
			{10, "allow", BreakerProbing}, {19, "deny", BreakerProbing}, {20, "", BreakerHalfOpen},
			{20, "allow", BreakerProbing},
		}},
		{"late outcomes of calls admitted before it opened change nothing", []step{
			{0, "fail", BreakerClosed}, {0, "fail", BreakerClosed}, {0, "fail", BreakerOpen},
			{1, "ok", BreakerOpen}, {2, "fail", BreakerOpen}, {10, "", BreakerHalfOpen},
		}},
	}
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Breaker{Config: BreakerConfig{Failures: 3, Cooldown: 10 * time.Second}}
			for i, s := range tt.steps {
				now := t0.Add(time.Duration(s.at) * time.Second)
				switch s.do {
				case "fail":
					b.Record(now, true)
				case "ok":
					b.Record(now, false)
				case "allow":
					if !b.Allow(now) {
						t.Fatalf("step %d: Allow said no, want yes", i)
					}
				case "deny":
					if b.Allow(now) {
						t.Fatalf("step %d: Allow said yes, want no", i)
					}
				}
				if got := b.State(now); got != s.state {
					t.Fatalf("step %d (%s at %ds): got %s, want %s", i, s.do, s.at, got, s.state)
				}
			}
		})
	}
}

func TestBreakerDefaults(t *testing.T) {
	var b Breaker
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	for i := range 4 {
		b.Record(t0, true)
		if b.State(t0) != BreakerClosed {
			t.Fatalf("open after %d failures, want 5", i+1)
		}
	}
	b.Record(t0, true)
	if got := b.State(t0.Add(29 * time.Second)); got != BreakerOpen {
		t.Errorf("29 s after: got %s, want open", got)
	}
	if got := b.State(t0.Add(30 * time.Second)); got != BreakerHalfOpen {
		t.Errorf("30 s after: got %s, want half_open", got)
	}
}

func TestBreakers(t *testing.T) {
	s := Breakers{Config: BreakerConfig{Failures: 2, Cooldown: time.Minute}}
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	s.Record("a", t0, true)
	s.Record("a", t0, true)
	s.Record("b", t0, false)
	if got := s.State("a", t0); got != BreakerOpen {
		t.Errorf("a: got %s, want open", got)
	}
	if got := s.State("b", t0); got != BreakerClosed {
		t.Errorf("b: got %s, want closed", got)
	}
	if s.Allow("a", t0) || !s.Allow("c", t0) {
		t.Error("Allow: want no for the open a, yes for the unknown c")
	}
	var wg sync.WaitGroup
	probes := make(chan bool, 8)
	for range 8 {
		wg.Go(func() { probes <- s.Allow("a", t0.Add(time.Minute)) })
	}
	wg.Wait()
	close(probes)
	n := 0
	for ok := range probes {
		if ok {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d concurrent callers got the probe, want 1", n)
	}
}

func TestHealthFromBreakers(t *testing.T) {
	// What the engine does: the breaker's state is part of the health
	// Resolve reads, so an open gateway is skipped with its reason.
	s := Breakers{Config: BreakerConfig{Failures: 1, Cooldown: time.Minute}}
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	s.Record("a", t0, true)
	p := newPlan(t, PlanInfo{}, route("49", Priority, "a", "b"))
	health := HealthMap{"a": {Breaker: s.State("a", t0)}, "b": {Breaker: s.State("b", t0)}}
	var res Resolution
	p.Resolve(&res, "4912", t0, Sources{Health: health})
	if got, want := summary(&res), "b:unpriced | a:circuit_open"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
