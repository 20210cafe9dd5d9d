package flow

import (
	"fmt"
	"time"

	"callbridge"
	"callbridge/routing"
)

// authorize asks for B's grant, with both for A's too.
func (m *machine) authorize(both bool) {
	s := &m.s
	a := ActionAuthorize{Both: both, UUIDB: s.B.UUID, Max: s.MaxDuration}
	if both {
		a.UUIDA, a.RingB = s.A.UUID, s.RingB
		s.Phase = PhaseAuthorizing
	} else {
		s.Phase = PhaseAuthorizingB
	}
	m.do(a)
}

// release drops a leg's reservation.
func (m *machine) release(l *Leg) {
	if l.Reserved {
		l.Reserved = false
		m.do(ActionRelease{Leg: l.Name, UUID: l.UUID})
	}
}

// place originates leg l. A prepaid leg carries its cap: FreeSWITCH times
// the grant from the answer itself, since the controller may learn of
// the answer (and bridge) seconds later under load.
//
// A leg's route is asked for (ActionRoute) before its first placement,
// which waits for EventRouted (routed). A routed leg goes through its
// current gateway (the first when none was tried), ringing no longer than
// what is left of the post-dial budget; a routed leg without a gateway
// fails at once.
func (m *machine) place(l *Leg, timeout time.Duration, status callbridge.CallbackStatus) {
	r := &l.Route
	if m.s.Config.Routed && !r.Resolved {
		if !l.Routing {
			l.Routing, l.Pending = true, Placement{Timeout: timeout, Status: status}
			m.do(ActionRoute{Leg: l.Name, Number: l.Number})
		}
		return
	}
	if l.FirstPlaced.IsZero() {
		l.FirstPlaced = m.now
	}
	if r.Planned && len(r.Gateways) == 0 {
		m.noCarrier(l, status)
		return
	}
	if r.Planned {
		if r.Tried == 0 {
			r.Tried, r.First = 1, m.now
		}
		r.Began, r.Open = m.now, true
		if left := r.Budget - m.now.Sub(r.First); r.Budget > 0 && left < timeout {
			timeout = max(left, time.Second)
		}
	}
	o := ActionOriginate{Leg: l.Name, UUID: l.UUID, Number: l.Number, CallerID: l.CallerID,
		Timeout: timeout, Limit: m.legLimit(l), Status: status, Again: l.Recorded,
		Gateway: r.Gateway(), Try: r.Tried}
	if l.Reserved && !l.CapSent {
		o.Cap, l.CapSent = capAfter(l.Grant), true
	}
	l.Progress = LegPlaced
	if status != "" {
		m.s.Status = status
	}
	m.do(o)
}

// routed takes a leg's route: a leg waiting to be placed is placed
// through it, unless the callback ended or was cancelled meanwhile; an
// adopted leg's restored route resumes with the plan as resolved now.
func (m *machine) routed(ev EventRouted) {
	l := m.s.Leg(ev.Leg)
	if !l.Routing {
		return
	}
	l.Routing = false
	if l.Route.Tried > 0 {
		l.Route.resume(ev.Route)
		return
	}
	l.Route = ev.Route
	l.Route.Resolved = true
	if m.s.Ended() || m.s.Cancelled {
		return
	}
	m.place(l, l.Pending.Timeout, l.Pending.Status)
}

// resume completes an adopted leg's restored route with its plan p as
// resolved now: the attempts made keep their gateways and numbers, the
// plan's gateways not tried yet follow in the plan's order, and the
// plan's limits count the attempts made (MaxAttempts) and the time since
// the first (Budget). Without a plan now the leg keeps the gateways it
// tried, without a policy: it does not fail over.
func (r *Route) resume(p Route) {
	gateways := append([]string(nil), r.Gateways[:min(r.Tried, len(r.Gateways))]...)
	tried := make(map[string]bool, len(gateways))
	for _, g := range gateways {
		tried[g] = true
	}
	for _, g := range p.Gateways {
		if !tried[g] {
			tried[g] = true
			gateways = append(gateways, g)
		}
	}
	r.Resolved, r.Gateways = true, gateways
	if p.Planned {
		r.Plan, r.MaxAttempts, r.Budget, r.Policy, r.NoneCause = p.Plan, p.MaxAttempts, p.Budget, p.Policy, p.NoneCause
	}
}

// noCarrier fails a routed leg that has no gateway to go through: its
// plan has no route for the number, or skipped every gateway.
func (m *machine) noCarrier(l *Leg, status callbridge.CallbackStatus) {
	l.Progress, l.Down, l.Unsent, l.Cause = LegPlaced, true, true, l.Route.NoneCause
	if status != "" {
		m.s.Status = status
	}
	m.save(callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventLegHangup, Leg: l.Name,
		Detail: l.Cause + ": route plan " + l.Route.Plan + " has no gateway for the number", Cause: l.Cause}}})
	m.again = true
}

// failover places a routed leg again through its next gateway when its
// attempt ended for the carrier (the plan's Policy says Failover, or no
// gateway could take it), the plan's attempts are not used up and its
// post-dial budget not spent. It reports whether it did; otherwise the
// leg's failure is the callback's, as without routing.
func (m *machine) failover(l *Leg) bool {
	r := &l.Route
	if !r.Planned || r.Tried == 0 || l.Progress == LegAnswered || l.Lost || m.s.Cancelled {
		return false
	}
	if !l.Unsent && (r.Policy == nil || r.Policy.Classify(l.Cause, l.SIP) != routing.Failover) {
		return false
	}
	spent := m.now.Sub(r.First)
	var why string
	switch {
	case r.Tried >= len(r.Gateways):
		why = "no gateway left"
	case r.MaxAttempts > 0 && r.Tried >= r.MaxAttempts:
		why = fmt.Sprintf("max attempts (%d) reached", r.MaxAttempts)
	case r.Budget > 0 && spent >= r.Budget:
		why = fmt.Sprintf("post-dial budget %s spent", r.Budget)
	}
	if why != "" {
		m.save(callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventFailover, Leg: l.Name, At: l.DownAt,
			Gateway: r.Gateway(), GatewayAttempt: r.Tried, Cause: l.Cause, SIPStatus: l.SIP, Detail: "no failover: " + why}}})
		return false
	}
	from, cause, sip := r.Gateway(), l.Cause, l.SIP
	r.Tried++
	m.do(ActionFailover{Leg: l.Name, From: from, To: r.Gateway(), Cause: cause, SIP: sip, Try: r.Tried})
	m.save(callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventFailover, Leg: l.Name, At: l.DownAt,
		Gateway: r.Gateway(), GatewayAttempt: r.Tried, Cause: cause, SIPStatus: sip,
		Detail: fmt.Sprintf("%s failed (%s); trying %s, attempt %d of %d", from, failure(cause, sip), r.Gateway(), r.Tried, min(len(r.Gateways), max(r.MaxAttempts, 1)))}}})
	m.reset(l)
	s := &m.s
	if l.Name == callbridge.LegA {
		if s.Config.PerLeg {
			// B's reservation was made with A's: both are asked again.
			m.release(&s.B)
			s.B.UUID = ""
			m.authorize(true)
			return true
		}
		m.place(l, s.RingA, "")
		return true
	}
	if s.Config.PerLeg {
		m.authorize(false)
		return true
	}
	m.place(l, s.RingB, "")
	return true
}

func failure(cause string, sip int) string {
	if sip != 0 {
		return fmt.Sprintf("%s, SIP %d", cause, sip)
	}
	return cause
}

// reset makes a leg ready to be placed anew, under a new channel uuid
// (the previous placement keeps its own CDR): what it keeps is who it
// calls, its refusals and its route.
func (m *machine) reset(l *Leg) {
	m.release(l)
	*l = Leg{Name: l.Name, Number: l.Number, CallerID: l.CallerID, FirstPlaced: l.FirstPlaced, Refusals: l.Refusals,
		Recorded: l.Recorded, Route: l.Route}
}

// legLimit is the longest leg l may last: max_duration, or its grant when
// that is shorter.
func (m *machine) legLimit(l *Leg) time.Duration {
	if l.Grant > 0 && l.Grant < m.s.MaxDuration {
		return l.Grant
	}
	return m.s.MaxDuration
}

// capAfter is a grant as FreeSWITCH can time it: whole seconds, rounded
// down so that the leg is not billed past its reservation, at least one.
func capAfter(grant time.Duration) time.Duration {
	return max(grant/time.Second, 1) * time.Second
}

// refused reports whether the node refused leg l's placement before
// anything rang: it failed with a refusal cause and no event of the
// channel ever arrived (no session was created).
func (m *machine) refused(l *Leg) bool {
	return l.Down && !l.Unsent && !l.Session && l.Progress == LegPlaced && !l.Lost && !m.s.Cancelled && refusalCause(l.Cause)
}

// refusalCause reports whether a node refuses a session with cause:
// mod_sofia answers DESTINATION_OUT_OF_ORDER when the core refuses
// (max-sessions, sessions-per-second, min-idle-cpu); the others are
// congestion.
func refusalCause(cause string) bool {
	switch cause {
	case "DESTINATION_OUT_OF_ORDER", "NORMAL_TEMPORARY_FAILURE", "SWITCH_CONGESTION",
		"NORMAL_CIRCUIT_CONGESTION", "REQUESTED_CHAN_UNAVAIL":
		return true
	}
	return false
}

// refusalDeadline is when a refused leg stops being placed again: A
// RefusedRetry after the worker took the callback, B once B would have
// stopped ringing (A waits on the line meanwhile).
func (m *machine) refusalDeadline(l *Leg) time.Time {
	if l.Name == callbridge.LegB {
		return l.FirstPlaced.Add(m.s.RingB)
	}
	return m.s.Started.Add(m.s.Config.RefusedRetry)
}

// refusalBackoff is the least wait before a leg refused n times is placed
// again: 100 ms, doubling, at most 2 s.
func refusalBackoff(n int) time.Duration {
	return min(100*time.Millisecond<<min(max(n-1, 0), 5), 2*time.Second)
}

// retry places a refused leg again once the pacer lets it, until its
// deadline; it reports false when the deadline has passed (the refusal
// then fails the callback). A refusal is not an attempt of the account's
// retry policy.
func (m *machine) retry(l *Leg) bool {
	deadline := m.refusalDeadline(l)
	late := m.now.After(deadline)
	if !l.Waiting {
		l.Refusals++
		m.do(ActionRefused{Leg: l.Name, UUID: l.UUID, Cause: l.Cause, Refusals: l.Refusals,
			Backoff: refusalBackoff(l.Refusals), Deadline: deadline, Final: late})
		if late {
			return false
		}
		l.Waiting, l.Due = true, false
		return true
	}
	if late {
		l.Waiting = false
		return false
	}
	if !l.Due {
		return true
	}
	m.placeAgain(l)
	return true
}

// placeAgain places a refused leg anew: a new channel uuid (the refused
// one keeps its own CDR), new reservations for a prepaid account, and for
// A a new pool slot, so another node may take it.
func (m *machine) placeAgain(l *Leg) {
	s := &m.s
	m.reset(l)
	if l.Name == callbridge.LegA {
		s.Phase = PhaseClaimed
		m.do(ActionAcquire{})
		return
	}
	if s.Config.PerLeg {
		m.authorize(false)
		return
	}
	m.place(l, s.RingB, "")
}
