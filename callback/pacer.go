package callback

import (
	"math"
	"sync"
	"time"
)

// Pacing of placements by what the nodes accept.
const (
	// pacerMinRate is the slowest the engine places callbacks while nodes
	// refuse sessions: it keeps probing whether capacity came back.
	pacerMinRate = 0.5
	// pacerUnlimited is the ceiling when the nodes set no MaxCPS.
	pacerUnlimited = 1000.0
	// pacerWindow is how far back accepted and refused placements count
	// towards the placing rate the admission bound uses.
	pacerWindow = 10
	// pacerCalm is how long after a refusal the rate is halved again: the
	// refusals of one burst are one signal, not one each.
	pacerCalm = 200 * time.Millisecond
	// claimBatch is the most callbacks claimed in one transaction.
	claimBatch = 50
)

// pacer paces the placements of one engine (claims of queued callbacks and
// retries of refused originates) by what the nodes accept: additive
// increase, multiplicative decrease of a rate of placements per second. A
// refused originate halves the rate (at most once per pacerCalm, down to
// pacerMinRate) and pauses placing for one interval at the new rate; each
// session a node accepts raises the rate by a tenth plus 0.1/s, up to the
// ceiling (the pool's MaxCPS). Tokens refill at the rate and a quarter of
// a second's worth may be held, so claims come in batches when the rate
// and the queue allow. It also counts the placements accepted and refused
// over the last pacerWindow seconds.
type pacer struct {
	mu       sync.Mutex
	ceiling  func() float64
	rate     float64
	tokens   float64
	last     time.Time
	pause    time.Time // nothing is placed before
	lastCut  time.Time
	accepted [pacerWindow]slot
	refused  [pacerWindow]slot
}

// slot counts events in one second (sec, Unix time).
type slot struct {
	sec int64
	n   int
}

func newPacer(ceiling func() float64) *pacer {
	p := &pacer{ceiling: ceiling, tokens: 1}
	p.rate = p.max()
	return p
}

func (p *pacer) max() float64 {
	c := p.ceiling()
	if c <= 0 {
		return pacerUnlimited
	}
	return c
}

// refill adds the tokens earned since the last call. p.mu must be held.
func (p *pacer) refill(now time.Time) {
	p.rate = math.Min(p.rate, p.max())
	if !p.last.IsZero() && now.After(p.last) {
		p.tokens += now.Sub(p.last).Seconds() * p.rate
	}
	p.last = now
	p.tokens = math.Min(p.tokens, math.Max(1, p.rate/4))
}

// take returns how many of n placements may start now (0 to n).
func (p *pacer) take(now time.Time, n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refill(now)
	if now.Before(p.pause) {
		return 0
	}
	k := min(n, int(p.tokens))
	p.tokens -= float64(k)
	return k
}

// giveBack returns k placements take granted but that were not made.
func (p *pacer) giveBack(k int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokens += float64(k)
}

// wait is how long until take may grant one placement.
func (p *pacer) wait(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refill(now)
	d := time.Duration((1 - p.tokens) / p.rate * float64(time.Second))
	if now.Before(p.pause) {
		d = max(d, p.pause.Sub(now))
	}
	return max(d, time.Millisecond)
}

// onRefused is told that a node refused a session.
func (p *pacer) onRefused(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	count(&p.refused, now)
	if now.Sub(p.lastCut) < pacerCalm {
		return
	}
	p.lastCut = now
	p.refill(now)
	p.rate = math.Max(p.rate/2, pacerMinRate)
	p.tokens = 0
	p.pause = now.Add(time.Duration(float64(time.Second) / p.rate))
}

// onAccepted is told that a node created a session for a placement.
func (p *pacer) onAccepted(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	count(&p.accepted, now)
	p.rate = math.Min(p.rate*1.1+0.1, p.max())
}

// Rate is the placements per second allowed now.
func (p *pacer) Rate() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return math.Min(p.rate, p.max())
}

// placing is the rate at which the nodes take this engine's placements:
// while none was refused over the window, the ceiling (nodes that take
// everything are limited by pacing alone); otherwise what they accepted
// over the window, per second.
func (p *pacer) placing(now time.Time) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if sum(&p.refused, now) == 0 {
		return p.max()
	}
	return float64(sum(&p.accepted, now)) / pacerWindow
}

func count(w *[pacerWindow]slot, now time.Time) {
	sec := now.Unix()
	s := &w[sec%pacerWindow]
	if s.sec != sec {
		*s = slot{sec: sec}
	}
	s.n++
}

func sum(w *[pacerWindow]slot, now time.Time) int {
	sec, n := now.Unix(), 0
	for _, s := range w {
		if sec-s.sec < pacerWindow {
			n += s.n
		}
	}
	return n
}
