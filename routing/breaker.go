package routing

import (
	"sync"
	"time"
)

// BreakerState is a circuit breaker's state.
type BreakerState uint8

// Breaker states.
const (
	// BreakerClosed: calls go through.
	BreakerClosed BreakerState = iota
	// BreakerOpen: the gateway failed too often; calls skip it until the
	// cool-down ends.
	BreakerOpen
	// BreakerHalfOpen: the cool-down ended; the next call may probe the
	// gateway.
	BreakerHalfOpen
	// BreakerProbing: a probe call is in progress; other calls skip the
	// gateway until it ends (or a cool-down passes without its outcome).
	BreakerProbing
)

var breakerNames = [...]string{"closed", "open", "half_open", "probing"}

// String returns "closed", "open", "half_open" or "probing".
func (s BreakerState) String() string {
	if int(s) < len(breakerNames) {
		return breakerNames[s]
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler.
func (s BreakerState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// BreakerConfig sets when a breaker opens and how long it stays open.
type BreakerConfig struct {
	// Failures is how many consecutive carrier failures open the
	// breaker; 0 means 5.
	Failures int
	// Cooldown is how long an open breaker refuses calls before it lets
	// one probe through; 0 means 30 s. A probe whose outcome is not
	// recorded within Cooldown is given up, and another may start.
	Cooldown time.Duration
}

func (c BreakerConfig) failures() int {
	if c.Failures <= 0 {
		return 5
	}
	return c.Failures
}

func (c BreakerConfig) cooldown() time.Duration {
	if c.Cooldown <= 0 {
		return 30 * time.Second
	}
	return c.Cooldown
}

// Breaker is one gateway's circuit breaker. It is a pure state machine:
// every method takes the current time, so a test drives it with any
// clock. The zero value is a closed breaker with the default config. It
// is not safe for concurrent use; Breakers is.
type Breaker struct {
	Config BreakerConfig

	open     bool      // open, half-open or probing
	failures int       // consecutive carrier failures while closed
	since    time.Time // when it opened, or when the probe started
	probing  bool
}

// State returns the breaker's state at now.
func (b *Breaker) State(now time.Time) BreakerState {
	switch {
	case !b.open:
		return BreakerClosed
	case now.Sub(b.since) < b.Config.cooldown():
		if b.probing {
			return BreakerProbing
		}
		return BreakerOpen
	}
	return BreakerHalfOpen
}

// Allow reports whether a call may use the gateway at now. Closed: yes.
// Half-open: yes, once; that call is the probe and the breaker is
// probing until Record. Open or probing: no.
func (b *Breaker) Allow(now time.Time) bool {
	switch b.State(now) {
	case BreakerClosed:
		return true
	case BreakerHalfOpen:
		b.probing, b.since = true, now
		return true
	}
	return false
}

// Record notes how a call through the gateway ended at now: failed is
// true when the carrier could not carry it (Policy.Classify said
// Failover). A failure counts towards opening a closed breaker and
// reopens a probing one for another cool-down; anything else the
// carrier did (it rang, the callee was busy, it answered) closes the
// breaker and clears the count. A call admitted before the breaker
// opened that ends while it is open does not change it.
func (b *Breaker) Record(now time.Time, failed bool) {
	if b.open && !b.probing {
		return
	}
	if !failed {
		*b = Breaker{Config: b.Config}
		return
	}
	if b.probing {
		b.probing, b.since = false, now
		return
	}
	b.failures++
	if b.failures >= b.Config.failures() {
		b.open, b.since, b.failures = true, now, 0
	}
}

// Breakers is a set of breakers, one per gateway, created closed on
// first use. It is safe for concurrent use.
type Breakers struct {
	// Config applies to every breaker of the set.
	Config BreakerConfig

	mu sync.Mutex
	m  map[string]*Breaker
}

func (s *Breakers) get(gateway string) *Breaker {
	b := s.m[gateway]
	if b == nil {
		if s.m == nil {
			s.m = map[string]*Breaker{}
		}
		b = &Breaker{Config: s.Config}
		s.m[gateway] = b
	}
	return b
}

// State returns the gateway's breaker state at now.
func (s *Breakers) State(gateway string, now time.Time) BreakerState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.m[gateway]; b != nil {
		return b.State(now)
	}
	return BreakerClosed
}

// Allow is Breaker.Allow for the gateway's breaker.
func (s *Breakers) Allow(gateway string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.m[gateway]; b != nil {
		return b.Allow(now)
	}
	return true
}

// Record is Breaker.Record for the gateway's breaker.
func (s *Breakers) Record(gateway string, now time.Time, failed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !failed && s.m[gateway] == nil {
		return
	}
	s.get(gateway).Record(now, failed)
}
