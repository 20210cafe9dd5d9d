package flow

import (
	"path"

	"callbridge"
)

// inNew starts the worker: a fresh claim (or an adopted callback that was
// never dialled) needs a pool slot; an adopted call with legs its node.
func (m *machine) inNew(ev Event) {
	if _, ok := ev.(EventStart); !ok {
		m.record(ev)
		return
	}
	s := &m.s
	if s.Adopted && (s.Status != callbridge.CallbackCallingA || s.A.Progress != LegUnplaced || s.B.Progress != LegUnplaced) {
		s.Phase = PhaseAdopting
		for _, l := range []*Leg{&s.A, &s.B} {
			m.adoptRoute(l)
		}
		m.do(ActionAttach{Node: s.Node})
		return
	}
	s.Phase = PhaseClaimed
	m.do(ActionAcquire{})
}

// inClaimed waits for a pool slot, for A's first placement or its
// placement again after the node refused it.
func (m *machine) inClaimed(ev Event) {
	s := &m.s
	switch ev := ev.(type) {
	case EventAcquired:
		s.Node = ev.Node
		if s.A.Refusals == 0 {
			s.Phase = PhaseCallingA // which places A
			return
		}
		if s.Config.PerLeg {
			// B's reservation was made with A's: both are asked again.
			m.release(&s.B)
			s.B.UUID = ""
			m.authorize(true)
			return
		}
		m.place(&s.A, s.RingA, "")
		s.Phase = PhaseCallingA
	case EventNoNode:
		m.finish(callbridge.ReasonNodeUnavailable, ev.Detail)
	case EventCancel:
		m.finish(callbridge.ReasonCancelled, "cancelled while waiting for a node")
	default:
		m.record(ev)
	}
}

// inAdopting follows an adopted call: once its node is connected, its
// channels tell which legs are still there.
func (m *machine) inAdopting(ev Event) {
	s := &m.s
	switch ev := ev.(type) {
	case EventAcquired:
		s.Node = ev.Node
		s.Reconciling = ReconcileAdopted
		m.do(ActionReconcile{})
	case EventNoNode:
		m.finish(callbridge.ReasonNodeUnavailable, ev.Detail)
	case EventChannels:
		s.Reconciling = ""
		m.reconcile(ev.Channels, "adopted by "+s.Config.Owner)
		s.Phase = statusPhase(s.Status)
	case EventChannelsFailed:
		s.Reconciling = ""
		s.Phase = statusPhase(s.Status)
		m.nodeLost("cannot list the channels of " + s.Node)
	default:
		m.record(ev)
	}
}

// adoptRoute takes over an adopted leg's carrier attempt: a live one
// counts against its gateway from now (the claim of the controller that
// placed it lapses with that controller's slots), and, unless it was
// answered, its plan is resolved again so that a carrier failure fails
// over to the next gateway not tried yet.
func (m *machine) adoptRoute(l *Leg) {
	r := &l.Route
	if r.Tried == 0 {
		return
	}
	if l.Live() && !r.Open {
		r.Open = true
		m.do(ActionHoldAttempt{Leg: l.Name, UUID: l.UUID, Gateway: r.Gateway()})
	}
	if m.s.Config.Routed && !r.Resolved && !l.Routing && l.Progress < LegAnswered {
		l.Routing = true
		m.do(ActionRoute{Leg: l.Name, Number: l.Number})
	}
}

// statusPhase is the phase an adopted callback resumes in.
func statusPhase(st callbridge.CallbackStatus) Phase {
	switch st {
	case callbridge.CallbackAAnswered:
		return PhaseAAnswered
	case callbridge.CallbackCallingB:
		return PhaseCallingB
	case callbridge.CallbackBridged:
		return PhaseBridged
	}
	return PhaseCallingA
}

// inAuthorizing waits for both legs' grants, then places A.
func (m *machine) inAuthorizing(ev Event) {
	s := &m.s
	switch ev := ev.(type) {
	case EventAuthorized:
		m.grant(&s.A, ev.A)
		m.grant(&s.B, ev.B)
		m.place(&s.A, s.RingA, "")
		s.Phase = PhaseCallingA
	case EventNotAuthorized:
		m.finish(ev.Reason, ev.Detail)
	default:
		m.record(ev)
	}
}

func (m *machine) grant(l *Leg, g *EventGrant) {
	if g != nil {
		l.UUID, l.Grant, l.Reserved = g.UUID, g.Grant, g.Reserved
	}
}

// inCallingA decides on A: place it, answer it, or fail (placing it again
// when the node refused it before it rang).
func (m *machine) inCallingA(ev Event) {
	if !m.record(ev) || m.held() {
		return
	}
	s := &m.s
	a := &s.A
	switch {
	case a.Progress == LegUnplaced && a.Routing:
		// Placed once its route is known (EventRouted).
	case a.Progress == LegUnplaced:
		if s.Config.PerLeg {
			// Both legs before anyone is called: B must not ring A only
			// to find the balance cannot pay for B.
			m.authorize(true)
			return
		}
		m.place(a, s.RingA, "")
	case a.Down && a.Progress < LegAnswered:
		if m.refused(a) {
			if m.retry(a) {
				return
			}
		} else if m.failover(a) {
			return
		}
		reason := callbridge.HangupReason(callbridge.LegA, a.Cause)
		if a.Lost {
			reason = callbridge.ReasonNodeUnavailable
		}
		m.failA(reason)
	case a.Progress == LegAnswered:
		m.save(callbridge.CallbackUpdate{Status: callbridge.CallbackAAnswered, Detail: "A answered"})
		s.Phase = PhaseAAnswered
	}
}

// inAAnswered places B (authorising it first when that was not done, as
// for a call adopted after A answered elsewhere), unless A hung up.
func (m *machine) inAAnswered(ev Event) {
	if !m.record(ev) || m.held() {
		return
	}
	s := &m.s
	if s.A.Down {
		m.finish(callbridge.ReasonAHangup, "A hung up before B was called")
		return
	}
	if s.Config.PerLeg && s.B.Grant == 0 {
		m.authorize(false)
		return
	}
	m.placeB()
}

// inAuthorizingB waits for B's grant, then places B.
func (m *machine) inAuthorizingB(ev Event) {
	s := &m.s
	switch ev := ev.(type) {
	case EventAuthorized:
		m.grant(&s.B, ev.B)
		m.placeB()
	case EventNotAuthorized:
		m.failB(ev.Reason)
	default:
		m.record(ev)
	}
}

// placeB places B: the first time with the prompt to A, and calling_b.
func (m *machine) placeB() {
	s := &m.s
	s.Phase = PhaseCallingB
	if s.B.Recorded {
		// Placed again: refused by the node, or failed over.
		m.place(&s.B, s.RingB, "")
		return
	}
	if p := m.promptPath(); p != "" {
		m.do(ActionPrompt{UUID: s.A.UUID, Path: p, Name: s.Prompt})
	}
	m.place(&s.B, s.RingB, callbridge.CallbackCallingB)
}

func (m *machine) promptPath() string {
	if m.s.Prompt == "" || m.s.Prompt == callbridge.PromptNone {
		return ""
	}
	return m.s.Config.Prompts[m.s.Prompt]
}

// inCallingB decides on B: bridge it once answered, or fail (placing it
// again when the node refused it before it rang), or end when A hung up.
func (m *machine) inCallingB(ev Event) {
	if !m.record(ev) || m.held() {
		return
	}
	s := &m.s
	b := &s.B
	switch {
	case s.A.Down:
		m.kill(b)
		m.finish(callbridge.ReasonAHangup, "A hung up while B was called")
	case b.Down && b.Progress < LegAnswered:
		if m.refused(b) {
			if m.retry(b) {
				return
			}
		} else if m.failover(b) {
			return
		}
		reason := callbridge.HangupReason(callbridge.LegB, b.Cause)
		if b.Lost {
			reason = callbridge.ReasonNodeUnavailable
		}
		m.failB(reason)
	case b.Down:
		// B answered and hung up before it could be bridged.
		m.failB(callbridge.HangupReason(callbridge.LegB, b.Cause))
	case b.Progress == LegAnswered && s.A.Parked && b.Parked:
		m.do(ActionBridge{A: s.A.UUID, B: b.UUID})
		s.Phase = PhaseBridging
	}
}

// inBridging takes uuid_bridge's reply: bridged, refused (a leg has
// probably just hung up), the connection lost, or another failure.
func (m *machine) inBridging(ev Event) {
	s := &m.s
	switch ev := ev.(type) {
	case EventBridged:
		m.save(callbridge.CallbackUpdate{Status: callbridge.CallbackBridged, Detail: "A and B bridged"})
		s.Phase = PhaseBridged
		for _, l := range []*Leg{&s.A, &s.B} {
			m.do(ActionSchedHangup{Leg: l.Name, UUID: l.UUID, After: s.MaxDuration})
		}
		m.save(callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventMaxDuration, Detail: s.MaxDuration.String()}}})
		if s.Record {
			m.do(ActionRecord{UUID: s.A.UUID, Path: path.Join(s.Config.RecordDir, s.ID+".wav")})
		}
	case EventBridgeFailed:
		switch {
		case ev.Refused:
			s.Phase = PhaseBridgeRefused
			m.do(ActionWaitBridge{At: m.now.Add(BridgeWait)})
		case ev.Closed:
			// Bridged or not, the reconciliation after the reconnection
			// tells; B still answered then means bridging again.
			s.Phase = PhaseCallingB
			m.nodeLost("connection to " + s.Node + " lost during uuid_bridge")
		default:
			m.bridgeFailed()
		}
	default:
		m.record(ev)
	}
}

// bridgeFailed ends a callback whose legs could not be bridged.
func (m *machine) bridgeFailed() {
	s := &m.s
	s.Phase = PhaseCallingB
	m.kill(&s.A)
	m.kill(&s.B)
	m.finish(callbridge.ReasonInternal, "uuid_bridge failed")
}

// inBridgeRefused waits for a leg's hangup after FreeSWITCH refused
// uuid_bridge (almost always "-ERR no such channel": its hangup event is
// on its way); at BridgeWait, a leg the node no longer has is taken
// as hung up. Calling B then decides with that leg's reason.
func (m *machine) inBridgeRefused(ev Event) {
	s := &m.s
	switch ev := ev.(type) {
	case EventBridgeWaitOver:
		var live []string
		for _, l := range []*Leg{&s.A, &s.B} {
			if l.Live() {
				live = append(live, l.UUID)
			}
		}
		m.do(ActionCheckLegs{UUIDs: live})
		return
	case EventLegsChecked:
		for _, id := range ev.Gone {
			if l := s.legByUUID(id); l != nil && l.Live() {
				l.Lost = true
				m.legDown(l, "", m.now.UTC(), "gone when uuid_bridge was refused")
			}
		}
		if !m.bridgeLegDown() {
			m.bridgeFailed()
		}
		return
	}
	m.record(ev)
	m.bridgeLegDown()
}

// bridgeLegDown returns to calling B once a leg is down or the node lost.
func (m *machine) bridgeLegDown() bool {
	s := &m.s
	if s.Ended() {
		return true
	}
	if s.A.Down || s.B.Down || s.NodeDown {
		s.Phase = PhaseCallingB
		return true
	}
	return false
}

// inBridged ends the call when a leg hangs up, hanging up the other: at
// max duration, completed, or cancelled when a DELETE hung it up.
func (m *machine) inBridged(ev Event) {
	if !m.record(ev) || m.held() {
		return
	}
	s := &m.s
	if !s.A.Down && !s.B.Down {
		return
	}
	first, other := &s.A, &s.B
	if !s.A.Down {
		first, other = &s.B, &s.A
	}
	m.kill(other)
	detail := "leg " + first.Name + " hung up: " + first.Cause
	switch {
	case first.Cause == "ALLOTTED_TIMEOUT" || other.Cause == "ALLOTTED_TIMEOUT":
		m.finish(callbridge.ReasonMaxDuration, detail)
	case first.Lost:
		m.finish(callbridge.ReasonNone, "leg "+first.Name+" ended while untracked")
	case first.Cause == "NORMAL_CLEARING" || first.Cause == "":
		// A DELETE through another controller kills the legs itself.
		s.EndDetail = detail
		s.Phase = PhaseCheckingCancel
		m.do(ActionCheckCancel{})
	default:
		m.finish(callbridge.ReasonNone, detail)
	}
}

// inCheckingCancel ends a bridged call that hung up normally: cancelled
// when a DELETE asked for it, completed otherwise.
func (m *machine) inCheckingCancel(ev Event) {
	ch, ok := ev.(EventCancelChecked)
	if !ok {
		m.record(ev)
		return
	}
	reason := callbridge.ReasonNone
	if ch.Requested {
		reason = callbridge.ReasonCancelled
	}
	m.finish(reason, m.s.EndDetail)
}

// inEnded records the legs' last facts until they are down, or EndBy.
func (m *machine) inEnded(ev Event) {
	if _, ok := ev.(EventLegsWaitOver); ok {
		m.s.Phase = PhaseDone
		return
	}
	m.record(ev)
}

// held reports whether the phase must not decide now: the node is lost,
// or a DELETE is being carried out (which this decides).
func (m *machine) held() bool {
	s := &m.s
	if s.NodeDown {
		return true
	}
	if !s.Cancelled {
		return false
	}
	m.kill(&s.A)
	m.kill(&s.B)
	// A bridged call ends once both legs are down; any other at once.
	if s.Status != callbridge.CallbackBridged || !s.A.Live() && !s.B.Live() {
		m.finish(callbridge.ReasonCancelled, "cancelled during "+string(s.Status))
	}
	return true
}
