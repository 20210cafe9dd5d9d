package flow

import (
	"time"

	"callbridge"
	"callbridge/routing"
)

// record applies the facts an event brings in any phase. It reports
// whether the phase should decide on them.
func (m *machine) record(ev Event) bool {
	switch e := ev.(type) {
	case EventRinging, EventAnswered, EventHangup, EventSeen, EventParked:
		m.channel(ev)
	case EventPlaced, EventOriginateFailed, EventOriginateUnknown, EventJobFailed, EventGatewayRefused:
		m.originated(ev)
	case EventNodeDown, EventNodeUp, EventGraceOver, EventChannels, EventChannelsFailed:
		m.node(ev)
	case EventKillFailed:
		// No such channel yet (the originate is still being set up): the
		// leg's next event kills it, not this result.
		if l := m.s.legByUUID(e.UUID); l != nil {
			l.KillSent = false
		}
		return false
	case EventCancel:
		if s := &m.s; !s.Cancelled && !s.Ended() {
			s.Cancelled = true
			m.save(callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventCancel, Detail: "hanging up"}}})
		}
	case EventAbandon:
		m.s.Phase = PhaseAbandoned
	case EventRouted:
		m.routed(e)
	case EventRetryDue:
		if l := m.s.Leg(e.Leg); l.Waiting {
			l.Due = true
		}
	}
	return !m.s.Ended()
}

// channel records a channel event of a leg.
func (m *machine) channel(ev Event) {
	switch ev := ev.(type) {
	case EventRinging:
		l := m.seen(ev.UUID)
		if l != nil && l.Progress == LegPlaced && !l.Down {
			l.Progress = LegRinging
			m.save(callbridge.CallbackUpdate{
				Leg:    m.legUpdate(l, func(u *callbridge.LegUpdate) { u.Ringing = ev.At }),
				Events: []callbridge.CallbackEvent{{Type: callbridge.EventLegRinging, Leg: l.Name, At: ev.At, Detail: ev.Detail}},
			})
		}
		m.killCancelled(l)
	case EventAnswered:
		l := m.seen(ev.UUID)
		if l != nil && l.Progress < LegAnswered && !l.Down {
			l.Progress = LegAnswered
			events := []callbridge.CallbackEvent{{Type: callbridge.EventLegAnswered, Leg: l.Name, At: ev.At}}
			if l.Route.Tried > 0 {
				events = append(events, m.attemptEntry(l, ev.At, "", "answered"))
			}
			m.save(callbridge.CallbackUpdate{
				Leg:    m.legUpdate(l, func(u *callbridge.LegUpdate) { u.Answered = ev.At }),
				Events: events,
			})
		}
		m.killCancelled(l)
	case EventHangup:
		if l := m.seen(ev.UUID); l != nil && !l.Down {
			if ev.SIP != 0 {
				l.SIP = ev.SIP
			}
			m.legDown(l, ev.Cause, ev.At, "")
		}
	case EventSeen:
		m.killCancelled(m.seen(ev.UUID))
	case EventParked:
		l := m.seen(ev.UUID)
		if l != nil {
			l.Parked = true
		}
		m.killCancelled(l)
	}
}

// originated records the results of an originate.
func (m *machine) originated(ev Event) {
	s := &m.s
	switch ev := ev.(type) {
	case EventPlaced:
		l := s.Leg(ev.Leg)
		l.UUID, l.Recorded = ev.UUID, true
	case EventGatewayRefused:
		// Nothing reached the node and nothing was recorded but this.
		l := s.Leg(ev.Leg)
		l.Route.Open = false
		l.Down, l.Unsent, l.Cause, l.DownAt = true, true, "NORMAL_CIRCUIT_CONGESTION", m.now.UTC()
		e := m.attemptEntry(l, m.now.UTC(), "", "skipped: "+ev.Reason)
		m.save(callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{e}})
	case EventOriginateFailed:
		l := s.Leg(ev.Leg)
		l.UUID, l.Recorded = ev.UUID, true
		cause := ev.Cause
		if ev.Lost {
			l.Lost, cause = true, "NORMAL_TEMPORARY_FAILURE"
		}
		m.legDown(l, cause, m.now.UTC(), "originate: "+ev.Detail)
	case EventOriginateUnknown:
		// It may have been written and run (FreeSWITCH starts the
		// originate before its reply, which can be lost with the
		// socket). The leg is never originated again under this
		// attempt: once the node is back, its channels tell whether the
		// leg is followed or lost; if it stays away, the grace ends it.
		l := s.Leg(ev.Leg)
		l.UUID, l.Recorded = ev.UUID, true
		m.save(callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventCommandError, Leg: l.Name,
			Detail: "originate: " + ev.Detail + "; outcome unknown until the node is reconciled"}}})
		m.nodeLost("connection to " + s.Node + " lost while originating leg " + l.Name)
	case EventJobFailed:
		if l := s.legByUUID(ev.UUID); l != nil && !l.Down && l.Progress < LegAnswered {
			m.legDown(l, ev.Cause, m.now.UTC(), "originate: "+ev.Detail)
		}
	}
}

// node records news of the node's connection and channels.
func (m *machine) node(ev Event) {
	s := &m.s
	switch ev := ev.(type) {
	case EventNodeDown:
		m.nodeLost("lost connection to " + s.Node)
	case EventNodeUp:
		// Always reconcile: the connection may have been lost and back
		// before the watcher noticed, and events may be missing.
		if !s.Ended() {
			s.Reconciling = ReconcileReconnected
			m.do(ActionReconcile{})
		}
	case EventGraceOver:
		switch {
		case !s.NodeDown:
		case ev.Connected:
			s.Reconciling = ReconcileGrace
			m.do(ActionReconcile{})
		default:
			m.nodeGone()
		}
	case EventChannels:
		why := s.Reconciling
		s.Reconciling = ""
		switch why {
		case ReconcileReconnected:
			m.reconcile(ev.Channels, "reconnected to "+s.Node)
			s.NodeDown = false
			m.do(ActionStopGrace{})
		case ReconcileGrace:
			m.reconcile(ev.Channels, "connected to "+s.Node+" at the end of the grace period")
			s.NodeDown = false
		}
	case EventChannelsFailed:
		why := s.Reconciling
		s.Reconciling = ""
		switch why {
		case ReconcileReconnected:
			m.nodeLost("cannot list the channels of " + s.Node)
		case ReconcileGrace:
			m.nodeGone()
		}
	}
}

// seen returns the leg of a channel event (nil: not ours), noting that
// the node has a session for it.
func (m *machine) seen(uuid string) *Leg {
	l := m.s.legByUUID(uuid)
	if l != nil {
		l.Session = true
	}
	return l
}

// killCancelled hangs up a live leg of a cancelled callback that was not
// killed yet (its uuid_kill came before its channel existed).
func (m *machine) killCancelled(l *Leg) {
	if l != nil && m.s.Cancelled {
		m.kill(l)
	}
}

// reconcile compares the legs believed live with the node's channels:
// a leg the node no longer has hung up unseen; one it has ACTIVE answered.
func (m *machine) reconcile(channels map[string]string, why string) {
	now := m.now.UTC()
	detail := why
	for _, l := range []*Leg{&m.s.A, &m.s.B} {
		if !l.Live() {
			continue
		}
		state, ok := channels[l.UUID]
		switch {
		case !ok:
			l.Down, l.Lost = true, true
			detail += "; leg " + l.Name + " gone"
			m.save(callbridge.CallbackUpdate{Leg: m.legUpdate(l, func(u *callbridge.LegUpdate) { u.Hangup = now })})
		case state == "ACTIVE" && l.Progress < LegAnswered:
			l.Progress, l.Parked = LegAnswered, true
			detail += "; leg " + l.Name + " answered"
			m.save(callbridge.CallbackUpdate{Leg: m.legUpdate(l, func(u *callbridge.LegUpdate) { u.Answered = now })})
		default:
			// An answered leg's park may have come while no event could
			// reach us.
			l.Parked = l.Parked || state == "ACTIVE"
			detail += "; leg " + l.Name + " present"
		}
	}
	m.save(callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventReconciled, Detail: detail}}})
}

// nodeLost holds every decision until the node is back and its channels
// known, or NodeGrace has passed.
func (m *machine) nodeLost(detail string) {
	s := &m.s
	if s.NodeDown {
		return
	}
	s.NodeDown = true
	m.save(callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventNodeLost, Detail: detail}}})
	m.do(ActionWaitGrace{At: m.now.Add(s.Config.NodeGrace)})
}

// nodeGone ends a callback whose node did not come back in time: its
// live legs are lost, and killed on the node if it ever returns.
func (m *machine) nodeGone() {
	s := &m.s
	var orphans []string
	for _, l := range []*Leg{&s.A, &s.B} {
		if l.Live() {
			orphans = append(orphans, l.UUID)
			l.Down, l.Lost = true, true
		}
	}
	if len(orphans) > 0 {
		m.do(ActionOrphan{Node: s.Node, UUIDs: orphans})
	}
	m.finish(callbridge.ReasonNodeUnavailable, "node "+s.Node+" did not come back")
}

// legDown records a leg's hangup, and ends its gateway attempt: an
// unanswered one is in the history with how it ended.
func (m *machine) legDown(l *Leg, cause string, at time.Time, detail string) {
	l.Down, l.Cause, l.DownAt = true, cause, at
	if detail == "" {
		detail = cause
	}
	events := []callbridge.CallbackEvent{{Type: callbridge.EventLegHangup, Leg: l.Name, At: at, Detail: detail}}
	r := &l.Route
	// A node refusing the session is not the carrier's failure.
	refused := m.refused(l)
	failed := !refused && l.Progress < LegAnswered && r.Policy != nil && r.Policy.Classify(cause, l.SIP) == routing.Failover
	if r.Tried > 0 && l.Progress < LegAnswered {
		verdict := "stop"
		switch {
		case failed:
			verdict = "carrier failure"
		case refused:
			verdict = "refused by the node"
		}
		events = append(events, m.attemptEntry(l, at, cause, verdict))
	}
	m.save(callbridge.CallbackUpdate{
		Leg:    m.legUpdate(l, func(u *callbridge.LegUpdate) { u.Hangup, u.Cause = at, cause }),
		Events: events,
	})
	if r.Open {
		r.Open = false
		outcome := AttemptCarried
		switch {
		case failed:
			outcome = AttemptFailed
		case refused:
			outcome = AttemptUnknown
		}
		m.do(ActionEndAttempt{Leg: l.Name, UUID: l.UUID, Gateway: r.Gateway(), Outcome: outcome})
	}
}

// attemptEntry is the history entry of the end of leg l's current
// gateway attempt (its answer, or its failure with cause).
func (m *machine) attemptEntry(l *Leg, at time.Time, cause, detail string) callbridge.CallbackEvent {
	r := &l.Route
	e := callbridge.CallbackEvent{Type: callbridge.EventGatewayAttempt, Leg: l.Name, At: at, Detail: detail,
		Gateway: r.Gateway(), GatewayAttempt: r.Tried, Cause: cause, SIPStatus: l.SIP}
	if !r.Began.IsZero() && !at.Before(r.Began) {
		e.DurationMS = at.Sub(r.Began).Milliseconds()
	}
	return e
}

func (m *machine) legUpdate(l *Leg, f func(*callbridge.LegUpdate)) *callbridge.LegUpdate {
	u := &callbridge.LegUpdate{Leg: l.Name, Attempt: m.s.Attempt, UUID: l.UUID, Node: m.s.Node, Number: l.Number, CallerID: l.CallerID,
		Gateway: l.Route.Gateway()}
	f(u)
	return u
}

// save persists u; a status is taken as saved (a save that fails ends the
// worker). Facts of an ended callback are saved at best.
func (m *machine) save(u callbridge.CallbackUpdate) {
	if u.Status != "" {
		m.s.Status = u.Status
	}
	m.do(ActionSave{Update: u, BestEffort: u.Status == "" && m.s.Ended()})
}

// kill hangs a live leg up, once.
func (m *machine) kill(l *Leg) {
	if !l.Live() || l.KillSent || m.s.NodeDown {
		return
	}
	l.KillSent = true
	m.do(ActionKill{Leg: l.Name, UUID: l.UUID, Cause: killCause(l)})
}

func killCause(l *Leg) string {
	if l.Progress == LegAnswered {
		return "NORMAL_CLEARING"
	}
	return "ORIGINATOR_CANCEL"
}
