package flow

import (
	"fmt"
	"time"

	"callbridge"
	"callbridge/routing"
)

// Phase names where a callback is in its flow. Some phases are the
// persisted statuses (calling_a, a_answered, calling_b, bridged); the
// others wait for the result of one action.
type Phase int

// The phases of a callback.
const (
	// PhaseNew: the worker has the callback and has not begun.
	PhaseNew Phase = iota
	// PhaseClaimed: waiting for a node to place A on (ActionAcquire).
	PhaseClaimed
	// PhaseAdopting: an adopted call with legs: waiting for its node
	// (ActionAttach), then for the node's channels (ActionReconcile).
	PhaseAdopting
	// PhaseAuthorizing: waiting for both legs' grants (ActionAuthorize)
	// before A is placed.
	PhaseAuthorizing
	// PhaseCallingA: A is placed; waiting for its answer.
	PhaseCallingA
	// PhaseAAnswered: A answered; B is to be placed.
	PhaseAAnswered
	// PhaseAuthorizingB: waiting for B's grant before B is placed.
	PhaseAuthorizingB
	// PhaseCallingB: B is placed; waiting for its answer.
	PhaseCallingB
	// PhaseBridging: uuid_bridge is sent; waiting for its reply.
	PhaseBridging
	// PhaseBridgeRefused: FreeSWITCH refused uuid_bridge; waiting (at
	// most BridgeWait) for the hangup of the leg that caused it.
	PhaseBridgeRefused
	// PhaseBridged: A and B talk.
	PhaseBridged
	// PhaseCheckingCancel: a bridged leg hung up normally; waiting to
	// know whether a DELETE asked for it (ActionCheckCancel).
	PhaseCheckingCancel
	// PhaseEnded: the outcome is saved (or the callback queued again);
	// waiting for the legs' hangups, until EndBy.
	PhaseEnded
	// PhaseDone: nothing is left to do.
	PhaseDone
	// PhaseAbandoned: the lease or the database was lost; another
	// controller takes the call over. Nothing is done any more.
	PhaseAbandoned
)

var phaseNames = [...]string{"new", "claimed", "adopting", "authorizing", "calling_a", "a_answered",
	"authorizing_b", "calling_b", "bridging", "bridge_refused", "bridged", "checking_cancel", "ended", "done", "abandoned"}

func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", int(p))
}

// Progress is how far a leg got.
type Progress int

// The progress of a leg.
const (
	LegUnplaced Progress = iota // not placed (or reset to be placed again)
	LegPlaced                   // originate sent, nothing heard of the far end
	LegRinging                  // progress or early media
	LegAnswered
)

// Leg is what the machine knows of one leg.
type Leg struct {
	Name     string // callbridge.LegA or LegB
	Number   callbridge.Number
	CallerID callbridge.Number
	UUID     string
	Progress Progress
	// Down says the leg hung up (Progress says how far it had got), with
	// Cause; Lost that it vanished while no event could reach us.
	Down  bool
	Cause string
	Lost  bool
	// Session says an event of the channel arrived: the node created it.
	Session bool
	// Parked says the leg runs its dialplan (CHANNEL_PARK): FreeSWITCH's
	// originate of it has returned and set its CDR hook. Only then may
	// uuid_bridge take it: taken from an originate still running, the
	// originate gives up (its job answers -ERR ORIGINATOR_CANCEL) and the
	// leg never gets the hook that keeps its CDR while no controller
	// listens.
	Parked bool
	// KillSent says uuid_kill was accepted (or is on its way).
	KillSent bool
	// Grant is how long the leg may last from its answer when authorised
	// per leg (0: not authorised per leg); Reserved says it holds a
	// prepaid reservation under UUID; CapSent that its originate carried
	// the cap (a leg is always authorised before it is placed, so a
	// prepaid leg's cap always travels with its originate).
	Grant    time.Duration
	Reserved bool
	CapSent  bool
	// FirstPlaced is when the leg was first placed; Refusals how often the
	// node refused it before a session existed; Waiting that it waits to
	// be placed again, Due that the pacer let it go (EventRetryDue).
	FirstPlaced time.Time
	Refusals    int
	Waiting     bool
	Due         bool
	// Recorded says a placement of the leg was recorded under this
	// attempt of the callback: the next one replaces it. Unsent says the
	// current one never reached the node (no gateway could take it).
	Recorded bool
	Unsent   bool
	// DownAt is when the leg hung up (as its event says).
	DownAt time.Time
	// SIP is the far end's final SIP response to the current placement
	// (sip_term_status; 0 when none came).
	SIP int
	// Route is the leg's carrier route: the gateways a route plan chose
	// and the attempts made through them.
	Route Route
	// Routing says the leg waits for its route (ActionRoute), to be
	// placed then with Pending (unless an adopted leg's route is being
	// restored: Route.Tried > 0).
	Routing bool
	Pending Placement
}

// Placement is how a leg waiting for its route is placed once routed:
// its ring timeout, and the status to save with it (if any).
type Placement struct {
	Timeout time.Duration
	Status  callbridge.CallbackStatus
}

// Route is a leg's carrier route, resolved (ActionRoute) when the leg is
// first placed: B's is the plan's answer at B's time, not at the claim's.
// Without Gateways (no route plan for the account: Planned false) the
// leg leaves through the engine's single gateway and never fails over. A
// planned leg with no gateway (no route matched the number, or every
// gateway was skipped) fails at once with NoneCause.
//
// An adopted leg's route is restored from the history the controller
// that placed it wrote (restore): its attempts' gateways in order,
// Tried, First and Began; its plan is resolved again at adoption, and
// the plan's gateways not tried yet follow those tried (resume).
type Route struct {
	// Resolved says ActionRoute answered for the leg (whatever its
	// answer): it is not asked again for the leg's later placements.
	Resolved bool
	// Planned says a route plan routes the leg; Plan names it.
	Planned bool
	Plan    string
	// Gateways are the gateways to try, in order; MaxAttempts and Budget
	// (the post-dial budget: how long after the first attempt was placed
	// another may start) are the plan's; Policy decides which endings
	// fail over.
	Gateways    []string
	MaxAttempts int
	Budget      time.Duration
	Policy      *routing.Policy
	// NoneCause is the leg's hangup cause when Gateways is empty.
	NoneCause string
	// Tried counts the attempts placed; the current one goes through
	// Gateways[Tried-1]. First is when the first was placed, Began when
	// the current one was.
	Tried        int
	First, Began time.Time
	// Open says the current attempt was claimed (Gateways.Begin) and not
	// ended yet (ActionEndAttempt).
	Open bool
}

// Gateway returns the gateway of the current attempt ("" when not routed
// or not placed).
func (r *Route) Gateway() string {
	if r.Tried == 0 || r.Tried > len(r.Gateways) {
		return ""
	}
	return r.Gateways[r.Tried-1]
}

// Live reports whether the leg is placed and not down.
func (l *Leg) Live() bool { return l.Progress != LegUnplaced && !l.Down }

// Config is what the machine needs of the engine's configuration.
type Config struct {
	// Owner names this controller (in the adoption's history entry).
	Owner string
	// PerLeg says each leg is authorised on its own channel
	// (ActionAuthorize) before it is placed.
	PerLeg bool
	// Routed says the engine resolves carrier routes: a leg's route is
	// asked for (ActionRoute) just before its first placement, and an
	// adopted leg's when the call is adopted. Without it a leg goes
	// through the Route it has (none: the single gateway).
	Routed bool
	// NodeGrace, RefusedRetry, LegWait and FailurePromptTime are the
	// engine's (callback.Config).
	NodeGrace, RefusedRetry, LegWait, FailurePromptTime time.Duration
	// Prompts and FailurePrompts are the engine's allow-list and failure
	// sounds; RecordDir where recordings go.
	Prompts        map[string]string
	FailurePrompts map[callbridge.FailReason]string
	RecordDir      string
}

// BridgeWait bounds how long a refused uuid_bridge waits for the
// hangup event of the leg that caused it.
const BridgeWait = 2 * time.Second

// State is what the machine knows of one callback.
type State struct {
	Phase Phase
	// Status is the callback's status as last saved.
	Status callbridge.CallbackStatus
	// ID, Attempt and the callback's request, as claimed.
	ID          string
	Attempt     int
	Retry       callbridge.RetryPolicy
	RingA       time.Duration
	RingB       time.Duration
	MaxDuration time.Duration
	Prompt      string // the request's prompt name
	Record      bool
	Adopted     bool
	// Node is the node the callback runs on.
	Node string
	A, B Leg
	// Cancelled says a DELETE asked the callback to end.
	Cancelled bool
	// NodeDown says the node's connection is lost: nothing is decided
	// until it is back and its channels are known, or NodeGrace passed.
	NodeDown bool
	// Reconciling says why ActionReconcile was asked for (empty: it was
	// not): ReconcileAdopted, ReconcileReconnected,
	// ReconcileGrace.
	Reconciling string
	// Started is when the worker took the callback; EndBy when an ended
	// callback stops waiting for its legs' hangups.
	Started time.Time
	EndBy   time.Time
	// EndDetail is the detail of the outcome being decided in
	// PhaseCheckingCancel.
	EndDetail string
	Config    Config
}

// Why a reconciliation was asked for.
const (
	ReconcileAdopted     = "adopted"
	ReconcileReconnected = "reconnected"
	ReconcileGrace       = "grace"
)

// NewState returns the state of a callback a worker has just taken: claimed
// (in calling_a), or adopted from a controller that went away, with the
// legs it recorded.
func NewState(cb *callbridge.Callback, cfg Config, adopted bool, now time.Time) State {
	s := State{
		Phase: PhaseNew, Status: cb.Status, ID: cb.ID, Attempt: cb.Attempt, Retry: cb.Retry,
		RingA:       time.Duration(cb.RingTimeoutA) * time.Second,
		RingB:       time.Duration(cb.RingTimeoutB) * time.Second,
		MaxDuration: time.Duration(cb.MaxDuration) * time.Second,
		Prompt:      cb.Prompt, Record: cb.Record, Adopted: adopted, Node: cb.Node,
		A:       Leg{Name: callbridge.LegA, Number: cb.A, CallerID: cb.CallerIDA},
		B:       Leg{Name: callbridge.LegB, Number: cb.B, CallerID: cb.CallerIDB},
		Started: now, Config: cfg,
	}
	if !adopted {
		return s
	}
	for _, l := range cb.Legs {
		leg := &s.A
		if l.Leg == callbridge.LegB {
			leg = &s.B
		}
		leg.UUID, leg.Progress, leg.Recorded = l.UUID, LegPlaced, true
		if l.RingingAt != nil {
			leg.Progress = LegRinging
		}
		if l.AnsweredAt != nil {
			leg.Progress = LegAnswered
		}
		if l.HangupAt != nil {
			leg.Down, leg.Cause = true, l.HangupCause
		}
		leg.Route = restore(cb, l)
	}
	return s
}

// restore is the route of an adopted leg l as far as its callback's
// history tells, under the callback's current attempt: the gateway of
// each attempt (leg_created when it was placed, gateway_attempt when it
// ended or was skipped; a failover entry announces an attempt that may
// never have been made), when the first was placed and the last began.
// A leg the history names no gateway for (it left through the single
// gateway) has no route.
func restore(cb *callbridge.Callback, l *callbridge.CallbackLeg) Route {
	var r Route
	tried := map[int]string{}
	for _, e := range cb.Events {
		if e.Leg != l.Leg || e.Attempt != cb.Attempt || e.GatewayAttempt < 1 || e.Gateway == "" ||
			e.Type != callbridge.EventLegCreated && e.Type != callbridge.EventGatewayAttempt {
			continue
		}
		n := e.GatewayAttempt
		tried[n] = e.Gateway
		r.Tried = max(r.Tried, n)
		if n == 1 && (r.First.IsZero() || e.At.Before(r.First)) {
			r.First = e.At
		}
	}
	if r.Tried == 0 {
		if l.Gateway == "" {
			return Route{}
		}
		// A history without attempt numbers: the leg's own gateway.
		tried[1], r.Tried = l.Gateway, 1
	}
	for n := 1; n <= r.Tried; n++ {
		r.Gateways = append(r.Gateways, tried[n])
	}
	for _, e := range cb.Events {
		if e.Leg == l.Leg && e.Attempt == cb.Attempt && e.Type == callbridge.EventLegCreated && e.GatewayAttempt == r.Tried {
			r.Began = e.At // the last placement of the current attempt
		}
	}
	if r.Began.IsZero() {
		r.Began = l.CreatedAt
	}
	if r.First.IsZero() {
		r.First = r.Began
	}
	r.Planned = true
	return r
}

// Ended reports whether the callback's outcome is decided: ended,
// queued again, or abandoned.
func (s *State) Ended() bool {
	return s.Phase == PhaseEnded || s.Phase == PhaseDone || s.Phase == PhaseAbandoned
}

// Finished reports whether the worker has nothing left to do.
func (s *State) Finished() bool { return s.Phase == PhaseDone || s.Phase == PhaseAbandoned }

// Leg returns the leg named name.
func (s *State) Leg(name string) *Leg {
	if name == callbridge.LegB {
		return &s.B
	}
	return &s.A
}

// legByUUID returns the leg whose channel is uuid, or nil.
func (s *State) legByUUID(uuid string) *Leg {
	switch {
	case uuid == "":
		return nil
	case uuid == s.A.UUID:
		return &s.A
	case uuid == s.B.UUID:
		return &s.B
	}
	return nil
}
