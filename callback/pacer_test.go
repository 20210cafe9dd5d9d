package callback

import (
	"testing"
	"time"
)

// TestPacerBacksOffAndRecovers: refusals halve the rate (one halving per
// burst) and pause placing; accepted sessions bring it back to the
// ceiling; tokens refill at the rate and allow batches; the placing rate
// is the ceiling until a refusal, then what the nodes accepted.
func TestPacerBacksOffAndRecovers(t *testing.T) {
	p := newPacer(func() float64 { return 40 })
	t0 := time.Unix(1_000_000, 0)
	if got := p.take(t0, 50); got != 1 {
		t.Fatalf("first take: %d, want the one initial token", got)
	}
	if got := p.take(t0.Add(250*time.Millisecond), 50); got != 10 {
		t.Fatalf("take after 250 ms at 40/s: %d, want a batch of 10", got)
	}
	if got := p.placing(t0); got != 40 {
		t.Errorf("placing before any refusal: %v, want the ceiling 40", got)
	}

	now := t0.Add(time.Second)
	for i := 0; i < 5; i++ { // one burst of refusals
		p.onRefused(now)
	}
	if got := p.Rate(); got != 20 {
		t.Errorf("rate after a burst of refusals: %v, want 20 (halved once)", got)
	}
	if got := p.take(now.Add(10*time.Millisecond), 50); got != 0 {
		t.Errorf("take during the pause: %d, want 0", got)
	}
	if w := p.wait(now); w < 50*time.Millisecond {
		t.Errorf("wait after a refusal: %s, want at least one interval at 20/s", w)
	}
	for i := 1; i <= 8; i++ {
		p.onRefused(now.Add(time.Duration(i) * pacerCalm))
	}
	if got := p.Rate(); got != pacerMinRate {
		t.Errorf("rate after refusals in every calm period: %v, want the floor %v", got, pacerMinRate)
	}
	later := now.Add(3 * time.Second)
	p.onAccepted(later)
	p.onAccepted(later)
	if got := p.placing(later); got != 2.0/pacerWindow {
		t.Errorf("placing after refusals: %v, want the accepted over the window (0.2)", got)
	}
	for i := 0; i < 60; i++ {
		p.onAccepted(later)
	}
	if got := p.Rate(); got != 40 {
		t.Errorf("rate after accepted sessions: %v, want back at the ceiling 40", got)
	}
	if got := p.placing(later.Add(pacerWindow * time.Second)); got != 40 {
		t.Errorf("placing once the refusals left the window: %v, want 40", got)
	}
}
