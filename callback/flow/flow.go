// Package flow is the callback flow as data: a pure state machine. Next
// takes a callback's State, what happened to it (an Event) and the time,
// and returns the new State and the Actions that carry the decision out,
// in order. It reads no clock, performs no I/O and starts no goroutine:
// package callback's engine executes the actions over ESL and against the
// database and feeds their results back as events.
//
// A callback goes
//
//	new → claimed → [authorizing] → calling_a → a_answered → [authorizing_b]
//	    → calling_b → bridging → bridged → [checking_cancel] → ended → done
//
// (an adopted call: new → adopting → the phase of its status), leaving the
// path for ended at any failure, DELETE or lost node, and for abandoned
// when its lease is lost. A leg the node refused before it rang is placed
// again from calling_a (through claimed) or calling_b; uuid_bridge refused
// waits in bridge_refused for the leg that caused it.
//
// A leg's carrier route is asked for (ActionRoute) just before the leg
// is first placed, and the placement waits for it (EventRouted): the
// machine never resolves routes itself. An adopted leg's route is
// restored from the callback's history and completed by its plan as
// resolved at adoption.
//
// One function per phase decides (phase.go); the facts an event brings
// are recorded in any phase (fact.go); legs are placed, failed over and
// placed again after a refusal in place.go, and a callback ends in
// outcome.go.
package flow

import (
	"time"
)

// Next is the callback flow: given the state, what happened and the time,
// it returns the new state and what to do, in order. It reads no clock,
// performs no I/O and leaves s as it was.
func Next(s State, ev Event, now time.Time) (State, []Action) {
	if s.Finished() {
		return s, nil
	}
	m := &machine{s: s, now: now}
	for i := 0; i < 8; i++ {
		before := m.s.Phase
		m.again = false
		m.state(ev)
		ev = nil
		if m.s.Phase == before && !m.again || m.s.Ended() {
			break
		}
	}
	if m.s.Phase == PhaseEnded && !m.s.A.Live() && !m.s.B.Live() {
		m.s.Phase = PhaseDone
	}
	return m.s, m.acts
}

// machine is one call of Next: the state being changed and the
// actions decided so far.
type machine struct {
	s    State
	now  time.Time
	acts []Action
	// again says the phase must decide once more although it did not
	// change (a leg failed without an event: no gateway could take it).
	again bool
}

// state runs the function of the current phase. A phase function is given
// the event (nil when it runs again after a phase change in the same
// Next): it takes the events only it expects, records the others'
// facts, then decides.
func (m *machine) state(ev Event) {
	switch m.s.Phase {
	case PhaseNew:
		m.inNew(ev)
	case PhaseClaimed:
		m.inClaimed(ev)
	case PhaseAdopting:
		m.inAdopting(ev)
	case PhaseAuthorizing:
		m.inAuthorizing(ev)
	case PhaseCallingA:
		m.inCallingA(ev)
	case PhaseAAnswered:
		m.inAAnswered(ev)
	case PhaseAuthorizingB:
		m.inAuthorizingB(ev)
	case PhaseCallingB:
		m.inCallingB(ev)
	case PhaseBridging:
		m.inBridging(ev)
	case PhaseBridgeRefused:
		m.inBridgeRefused(ev)
	case PhaseBridged:
		m.inBridged(ev)
	case PhaseCheckingCancel:
		m.inCheckingCancel(ev)
	case PhaseEnded:
		m.inEnded(ev)
	}
}

func (m *machine) do(a ...Action) { m.acts = append(m.acts, a...) }
