package routing

import (
	"strings"
	"sync"
	"time"
)

// ParseSofiaStatus reads the status FreeSWITCH reports for a gateway
// (sofia xmlstatus gateway's <status>, freeswitch.GatewayStatus.Status): "UP"
// or "DOWN"; anything else is SofiaUnknown.
func ParseSofiaStatus(s string) SofiaState {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "UP":
		return SofiaUp
	case "DOWN":
		return SofiaDown
	}
	return SofiaUnknown
}

// Limits caps a gateway's traffic; zero fields do not cap.
type Limits struct {
	// MaxActive is the most calls through the gateway at once.
	MaxActive int `json:"max_active,omitempty"`
	// MaxCPS is the most calls started through it in one second.
	MaxCPS int `json:"max_cps,omitempty"`
}

// Load is a gateway's calls across controllers, as a count they share
// (PostgreSQL) reports it.
type Load struct {
	// Gateway is the gateway's name.
	Gateway string
	// Active is how many calls go through it now.
	Active int
	// Started is how many calls through it started in the last second.
	Started int
}

// Gateways is a process's live view of its carrier gateways: the switch's
// state of each (SetSofia), a circuit breaker each (configured by
// Breaker), the calls this process has in progress and started this
// second through each, and their caps (SetLimits). It is a HealthSource
// for Resolve, and Begin and End bracket every attempt. It reads no
// clock: callers pass the time.
//
// Its counts are this process's. Caps shared by several controllers need
// counts from a shared place (PostgreSQL): a HealthSource that reports
// them, wrapped around this one, does that.
//
// The zero value is ready to use and safe for concurrent use.
type Gateways struct {
	// Breaker configures every gateway's breaker; set it before use.
	Breaker BreakerConfig

	mu sync.Mutex
	m  map[string]*gatewayState
}

type gatewayState struct {
	sofia   SofiaState
	limits  Limits
	breaker Breaker
	active  int
	second  int64 // the unix second started counts
	start   int
}

func (g *Gateways) state(gateway string) *gatewayState {
	s := g.m[gateway]
	if s == nil {
		if g.m == nil {
			g.m = map[string]*gatewayState{}
		}
		s = &gatewayState{breaker: Breaker{Config: g.Breaker}}
		g.m[gateway] = s
	}
	return s
}

// SetSofia records the switch's state of a gateway.
func (g *Gateways) SetSofia(gateway string, s SofiaState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.state(gateway).sofia = s
}

// SetLimits sets a gateway's caps.
func (g *Gateways) SetLimits(gateway string, l Limits) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.state(gateway).limits = l
}

// Health implements HealthSource: one lock and one map lookup.
func (g *Gateways) Health(gateway string, now time.Time) Health {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.m[gateway]
	if s == nil {
		return Health{}
	}
	return Health{
		Sofia: s.sofia, Breaker: s.breaker.State(now), Active: s.active, MaxActive: s.limits.MaxActive,
		CPSFull: s.limits.MaxCPS > 0 && s.second == now.Unix() && s.start >= s.limits.MaxCPS,
	}
}

// Begin claims a call through the gateway at now, as the attempt is
// dialled: it answers the reason it may not (the gateway is down, at a
// cap, its breaker open or probing; ReasonOK or ReasonProbe when it may),
// counting the call when it may. A call that began must End. Resolve's
// answer may be a moment old: Begin is the decision.
func (g *Gateways) Begin(gateway string, now time.Time) Reason {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.state(gateway)
	sec := now.Unix()
	if s.second != sec {
		s.second, s.start = sec, 0
	}
	switch {
	case s.sofia == SofiaDown:
		return ReasonSofiaDown
	case s.limits.MaxActive > 0 && s.active >= s.limits.MaxActive:
		return ReasonAtCapacity
	case s.limits.MaxCPS > 0 && s.start >= s.limits.MaxCPS:
		return ReasonCPSLimit
	}
	switch st := s.breaker.State(now); {
	case st == BreakerOpen:
		return ReasonCircuitOpen
	case st == BreakerProbing:
		return ReasonCircuitProbing
	}
	probe := s.breaker.State(now) == BreakerHalfOpen
	s.breaker.Allow(now)
	s.active++
	s.start++
	if probe {
		return ReasonProbe
	}
	return ReasonOK
}

// End releases a call that Begin counted and records its outcome for the
// gateway's breaker: failed is true when the carrier could not carry the
// call (Policy.Classify said Failover).
func (g *Gateways) End(gateway string, now time.Time, failed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.state(gateway)
	if s.active > 0 {
		s.active--
	}
	s.breaker.Record(now, failed)
}

// Hold counts a call through the gateway that the switch placed without
// Begin (a binding call's attempt, dialled from the dialplan): it counts
// whatever the caps, since the call is already placed, and leaves the
// breaker alone (Record feeds it). A held call must Unhold.
func (g *Gateways) Hold(gateway string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.state(gateway)
	if sec := now.Unix(); s.second != sec {
		s.second, s.start = sec, 0
	}
	s.active++
	s.start++
}

// Unhold ends a call Hold counted.
func (g *Gateways) Unhold(gateway string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s := g.state(gateway); s.active > 0 {
		s.active--
	}
}

// Record feeds the gateway's breaker with the outcome of a call that no
// Begin of this process counted (a binding call's attempt, which
// FreeSWITCH dials from the dialplan, or an attempt another controller
// placed; its CDR reports how it ended): failed is true when the carrier
// could not carry it. The gateway's call counts do not change. Resolve
// keeps a half-open gateway as a probe, and nothing claims the probe
// before FreeSWITCH dials it, and another controller may have sent the
// probe, so an outcome that arrives while the breaker is half-open or
// probing is a probe's: success closes it, failure opens it for another
// cool-down.
func (g *Gateways) Record(gateway string, now time.Time, failed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	b := &g.state(gateway).breaker
	if b.State(now) == BreakerHalfOpen {
		b.Allow(now)
	}
	b.Record(now, failed)
}
