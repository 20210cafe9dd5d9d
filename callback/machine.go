// The callback flow as data. A callback goes
//
//	new → claimed → [authorizing] → calling_a → a_answered → [authorizing_b]
//	    → calling_b → bridging → bridged → [checking_cancel] → ended → done
//
// (an adopted call: new → adopting → the phase of its status), leaving the
// path for ended at any failure, DELETE or lost node, and for abandoned
// when its lease is lost. A leg the node refused before it rang is placed
// again from calling_a (through claimed) or calling_b; uuid_bridge refused
// waits in bridge_refused for the leg that caused it.

package callback

import (
	"fmt"
	"path"
	"time"

	"callbridge"
	"callbridge/routing"
)

// StatePhase names where a callback is in its flow. Some phases are the
// persisted statuses (calling_a, a_answered, calling_b, bridged); the
// others wait for the result of one action.
type StatePhase int

// The phases of a callback.
const (
	// StateNew: the worker has the callback and has not begun.
	StateNew StatePhase = iota
	// StateClaimed: waiting for a node to place A on (ActionAcquire).
	StateClaimed
	// StateAdopting: an adopted call with legs: waiting for its node
	// (ActionAttach), then for the node's channels (ActionReconcile).
	StateAdopting
	// StateAuthorizing: waiting for both legs' grants (ActionAuthorize)
	// before A is placed.
	StateAuthorizing
	// StateCallingA: A is placed; waiting for its answer.
	StateCallingA
	// StateAAnswered: A answered; B is to be placed.
	StateAAnswered
	// StateAuthorizingB: waiting for B's grant before B is placed.
	StateAuthorizingB
	// StateCallingB: B is placed; waiting for its answer.
	StateCallingB
	// StateBridging: uuid_bridge is sent; waiting for its reply.
	StateBridging
	// StateBridgeRefused: FreeSWITCH refused uuid_bridge; waiting (at
	// most StateBridgeWait) for the hangup of the leg that caused it.
	StateBridgeRefused
	// StateBridged: A and B talk.
	StateBridged
	// StateCheckingCancel: a bridged leg hung up normally; waiting to
	// know whether a DELETE asked for it (ActionCheckCancel).
	StateCheckingCancel
	// StateEnded: the outcome is saved (or the callback queued again);
	// waiting for the legs' hangups, until EndBy.
	StateEnded
	// StateDone: nothing is left to do.
	StateDone
	// StateAbandoned: the lease or the database was lost; another
	// controller takes the call over. Nothing is done any more.
	StateAbandoned
)

var statePhaseNames = [...]string{"new", "claimed", "adopting", "authorizing", "calling_a", "a_answered",
	"authorizing_b", "calling_b", "bridging", "bridge_refused", "bridged", "checking_cancel", "ended", "done", "abandoned"}

func (p StatePhase) String() string {
	if int(p) < len(statePhaseNames) {
		return statePhaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", int(p))
}

// StateLegProgress is how far a leg got.
type StateLegProgress int

// The progress of a leg.
const (
	StateLegUnplaced StateLegProgress = iota // not placed (or reset to be placed again)
	StateLegPlaced                           // originate sent, nothing heard of the far end
	StateLegRinging                          // progress or early media
	StateLegAnswered
)

// StateLeg is what the machine knows of one leg.
type StateLeg struct {
	Name     string // callbridge.LegA or LegB
	Number   callbridge.Number
	CallerID callbridge.Number
	UUID     string
	Progress StateLegProgress
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
	Route StateRoute
}

// StateRoute is a leg's carrier route. Without Gateways (no route plan
// for the account: Planned false) the leg leaves through the engine's
// single gateway and never fails over. A planned leg with no gateway (no
// route matched the number, or every gateway was skipped) fails at once
// with NoneCause.
type StateRoute struct {
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
func (r *StateRoute) Gateway() string {
	if r.Tried == 0 || r.Tried > len(r.Gateways) {
		return ""
	}
	return r.Gateways[r.Tried-1]
}

// Live reports whether the leg is placed and not down.
func (l *StateLeg) Live() bool { return l.Progress != StateLegUnplaced && !l.Down }

// StateConfig is what the machine needs of the engine's configuration.
type StateConfig struct {
	// Owner names this controller (in the adoption's history entry).
	Owner string
	// PerLeg says each leg is authorised on its own channel
	// (ActionAuthorize) before it is placed.
	PerLeg bool
	// NodeGrace, RefusedRetry, LegWait and FailurePromptTime are the
	// engine's (CallbackEngineConfig).
	NodeGrace, RefusedRetry, LegWait, FailurePromptTime time.Duration
	// Prompts and FailurePrompts are the engine's allow-list and failure
	// sounds; RecordDir where recordings go.
	Prompts        map[string]string
	FailurePrompts map[callbridge.FailReason]string
	RecordDir      string
}

// StateBridgeWait bounds how long a refused uuid_bridge waits for the
// hangup event of the leg that caused it.
const StateBridgeWait = 2 * time.Second

// State is what the machine knows of one callback.
type State struct {
	Phase StatePhase
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
	A, B StateLeg
	// Cancelled says a DELETE asked the callback to end.
	Cancelled bool
	// NodeDown says the node's connection is lost: nothing is decided
	// until it is back and its channels are known, or NodeGrace passed.
	NodeDown bool
	// Reconciling says why ActionReconcile was asked for (empty: it was
	// not): StateReconcileAdopted, StateReconcileReconnected,
	// StateReconcileGrace.
	Reconciling string
	// Started is when the worker took the callback; EndBy when an ended
	// callback stops waiting for its legs' hangups.
	Started time.Time
	EndBy   time.Time
	// EndDetail is the detail of the outcome being decided in
	// StateCheckingCancel.
	EndDetail string
	Config    StateConfig
}

// Why a reconciliation was asked for.
const (
	StateReconcileAdopted     = "adopted"
	StateReconcileReconnected = "reconnected"
	StateReconcileGrace       = "grace"
)

// NewState returns the state of a callback a worker has just taken: claimed
// (in calling_a), or adopted from a controller that went away, with the
// legs it recorded.
func NewState(cb *callbridge.Callback, cfg StateConfig, adopted bool, now time.Time) State {
	s := State{
		Phase: StateNew, Status: cb.Status, ID: cb.ID, Attempt: cb.Attempt, Retry: cb.Retry,
		RingA:       time.Duration(cb.RingTimeoutA) * time.Second,
		RingB:       time.Duration(cb.RingTimeoutB) * time.Second,
		MaxDuration: time.Duration(cb.MaxDuration) * time.Second,
		Prompt:      cb.Prompt, Record: cb.Record, Adopted: adopted, Node: cb.Node,
		A:       StateLeg{Name: callbridge.LegA, Number: cb.A, CallerID: cb.CallerIDA},
		B:       StateLeg{Name: callbridge.LegB, Number: cb.B, CallerID: cb.CallerIDB},
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
		leg.UUID, leg.Progress, leg.Recorded = l.UUID, StateLegPlaced, true
		if l.RingingAt != nil {
			leg.Progress = StateLegRinging
		}
		if l.AnsweredAt != nil {
			leg.Progress = StateLegAnswered
		}
		if l.HangupAt != nil {
			leg.Down, leg.Cause = true, l.HangupCause
		}
	}
	return s
}

// Ended reports whether the callback's outcome is decided: ended,
// queued again, or abandoned.
func (s *State) Ended() bool {
	return s.Phase == StateEnded || s.Phase == StateDone || s.Phase == StateAbandoned
}

// Finished reports whether the worker has nothing left to do.
func (s *State) Finished() bool { return s.Phase == StateDone || s.Phase == StateAbandoned }

// Leg returns the leg named name.
func (s *State) Leg(name string) *StateLeg {
	if name == callbridge.LegB {
		return &s.B
	}
	return &s.A
}

// legByUUID returns the leg whose channel is uuid, or nil.
func (s *State) legByUUID(uuid string) *StateLeg {
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

// Event is what happened to a callback: a channel event of one of its
// legs, the result of an action, or news from outside (a DELETE, the
// node's connection, a timer).
type Event interface{ eventName() string }

// Events that start a worker and give it a node.
type (
	// EventStart begins a worker's life.
	EventStart struct{}
	// EventAcquired: the callback runs on Node (a pool slot was taken,
	// or an adopted call's node is connected).
	EventAcquired struct{ Node string }
	// EventNoNode: no node can take the callback; Detail says why.
	EventNoNode struct{ Detail string }
)

// Events of the legs' authorisation.
type (
	// EventAuthorized carries the grants of the legs ActionAuthorize
	// asked for (nil for a leg not asked for).
	EventAuthorized struct{ A, B *EventGrant }
	// EventNotAuthorized: the callback may not be placed (or B may not).
	EventNotAuthorized struct {
		Reason callbridge.FailReason
		Detail string
	}
)

// EventGrant is one leg's authorisation: its channel uuid, how long it
// may last from its answer, and whether it holds a prepaid reservation.
type EventGrant struct {
	UUID     string
	Grant    time.Duration
	Reserved bool
}

// Results of ActionOriginate.
type (
	// EventPlaced: the node accepted the originate of Leg as UUID (its
	// outcome comes as channel events, or EventJobFailed).
	EventPlaced struct{ Leg, UUID string }
	// EventOriginateFailed: the node answered the originate with an
	// error (Cause, FreeSWITCH's), or it failed before reaching the node
	// (Lost; no cause).
	EventOriginateFailed struct {
		Leg, UUID, Cause, Detail string
		Lost                     bool
	}
	// EventOriginateUnknown: the connection died around the originate,
	// whose reply was lost: it may have run. Detail is the error.
	EventOriginateUnknown struct{ Leg, UUID, Detail string }
	// EventJobFailed: the originate's background job ended in an error
	// (Cause, Detail) before any answer.
	EventJobFailed struct{ UUID, Cause, Detail string }
	// EventGatewayRefused: the gateway tracker would not let Leg's
	// attempt through Gateway (Gateways.Begin: Reason, such as
	// "circuit_open" or "at_capacity"); nothing was sent to the node.
	EventGatewayRefused struct{ Leg, Gateway, Reason string }
)

// Channel events of a leg, by its UUID.
type (
	// EventRinging: CHANNEL_PROGRESS or CHANNEL_PROGRESS_MEDIA (Detail).
	EventRinging struct {
		UUID   string
		At     time.Time
		Detail string
	}
	// EventAnswered: CHANNEL_ANSWER.
	EventAnswered struct {
		UUID string
		At   time.Time
	}
	// EventHangup: CHANNEL_HANGUP or CHANNEL_HANGUP_COMPLETE, with the
	// far end's final SIP response (sip_term_status; 0 when none).
	EventHangup struct {
		UUID  string
		At    time.Time
		Cause string
		SIP   int
	}
	// EventSeen: any other event of the channel (CHANNEL_CREATE,
	// CHANNEL_BRIDGE, CHANNEL_UNBRIDGE, CHANNEL_DESTROY): the node has a
	// session for it, nothing more. The real switch sends
	// CHANNEL_UNBRIDGE before CHANNEL_HANGUP, some with a Hangup-Cause;
	// the hangup is taken from CHANNEL_HANGUP only.
	EventSeen struct{ UUID string }
	// EventParked: CHANNEL_PARK: the leg runs the park of its dialplan.
	EventParked struct{ UUID string }
)

// Results of other actions.
type (
	// EventKillFailed: uuid_kill of UUID failed (no such channel yet:
	// the leg's next event kills it).
	EventKillFailed struct{ UUID string }
	// EventBridged: uuid_bridge succeeded.
	EventBridged struct{}
	// EventBridgeFailed: uuid_bridge failed: refused by FreeSWITCH
	// (-ERR), its connection closed around it, or another error.
	EventBridgeFailed struct{ Refused, Closed bool }
	// EventBridgeWaitOver: StateBridgeWait passed since the refusal.
	EventBridgeWaitOver struct{}
	// EventLegsChecked: the node no longer has the channels Gone
	// (uuid_exists); channels it could not tell of are not listed.
	EventLegsChecked struct{ Gone []string }
	// EventCancelChecked: whether a DELETE asked the callback to end.
	EventCancelChecked struct{ Requested bool }
	// EventChannels: the node's channels, uuid to call state ("ACTIVE"
	// once answered).
	EventChannels struct{ Channels map[string]string }
	// EventChannelsFailed: the node's channels could not be listed.
	EventChannelsFailed struct{}
	// EventRetryDue: a refused leg may be placed again (the pacer let it,
	// or its deadline passed).
	EventRetryDue struct{ Leg string }
	// EventLegsWaitOver: EndBy passed without the legs' hangups.
	EventLegsWaitOver struct{}
)

// Events from outside the call.
type (
	// EventCancel: a DELETE asked the callback to end.
	EventCancel struct{}
	// EventAbandon: the lease was lost (or a step could not be saved):
	// another controller drives the call.
	EventAbandon struct{}
	// EventNodeDown: the node's connection is lost.
	EventNodeDown struct{}
	// EventNodeUp: the node's connection is back.
	EventNodeUp struct{}
	// EventGraceOver: NodeGrace passed since the node was lost; Connected
	// says whether it is connected now.
	EventGraceOver struct{ Connected bool }
)

func (EventStart) eventName() string            { return "start" }
func (EventAcquired) eventName() string         { return "acquired" }
func (EventNoNode) eventName() string           { return "no_node" }
func (EventAuthorized) eventName() string       { return "authorized" }
func (EventNotAuthorized) eventName() string    { return "not_authorized" }
func (EventPlaced) eventName() string           { return "placed" }
func (EventOriginateFailed) eventName() string  { return "originate_failed" }
func (EventOriginateUnknown) eventName() string { return "originate_unknown" }
func (EventJobFailed) eventName() string        { return "job_failed" }
func (EventGatewayRefused) eventName() string   { return "gateway_refused" }
func (EventRinging) eventName() string          { return "ringing" }
func (EventAnswered) eventName() string         { return "answered" }
func (EventHangup) eventName() string           { return "hangup" }
func (EventSeen) eventName() string             { return "seen" }
func (EventParked) eventName() string           { return "parked" }
func (EventKillFailed) eventName() string       { return "kill_failed" }
func (EventBridged) eventName() string          { return "bridged" }
func (EventBridgeFailed) eventName() string     { return "bridge_failed" }
func (EventBridgeWaitOver) eventName() string   { return "bridge_wait_over" }
func (EventLegsChecked) eventName() string      { return "legs_checked" }
func (EventCancelChecked) eventName() string    { return "cancel_checked" }
func (EventChannels) eventName() string         { return "channels" }
func (EventChannelsFailed) eventName() string   { return "channels_failed" }
func (EventRetryDue) eventName() string         { return "retry_due" }
func (EventLegsWaitOver) eventName() string     { return "legs_wait_over" }
func (EventCancel) eventName() string           { return "cancel" }
func (EventAbandon) eventName() string          { return "abandon" }
func (EventNodeDown) eventName() string         { return "node_down" }
func (EventNodeUp) eventName() string           { return "node_up" }
func (EventGraceOver) eventName() string        { return "grace_over" }

// Action is something Next decided: the engine executes the actions in
// order and feeds their results back as events (named with each action).
type Action interface{ action() }

type (
	// ActionAcquire: release the pool slot held, if any, and take one
	// (waiting for pacing), saving the node. Results: EventAcquired,
	// EventNoNode after NodeGrace, or EventCancel when a DELETE came
	// meanwhile.
	ActionAcquire struct{}
	// ActionAttach: wait (up to NodeGrace) for the adopted call's Node
	// to be connected. Results: EventAcquired or EventNoNode.
	ActionAttach struct{ Node string }
	// ActionAuthorize: authorise leg B, and with Both leg A too, on their
	// channels (a UUID is chosen for a leg without one). Both: A for Max
	// plus RingB and B for Max, halving Max down to MinMaxDuration until
	// the balance pays for both. Results: EventAuthorized or
	// EventNotAuthorized.
	ActionAuthorize struct {
		Both         bool
		UUIDA, UUIDB string
		Max, RingB   time.Duration
	}
	// ActionRelease: drop the prepaid reservation held under UUID.
	ActionRelease struct{ Leg, UUID string }
	// ActionOriginate: record leg Leg (with Status, when set; Again says
	// it replaces a refused placement), then originate it (a UUID is
	// chosen when empty) with Timeout, the leg's Limit in its variables
	// and, when Cap is set, FreeSWITCH's hangup Cap after its answer.
	// Results: EventPlaced, EventOriginateFailed or
	// EventOriginateUnknown; later, perhaps, EventJobFailed.
	//
	// A routed leg names its Gateway and the attempt's number (Try, from
	// 1): the engine claims the attempt (Gateways.Begin) first, and
	// answers EventGatewayRefused when it may not go; Gateway empty means
	// the engine's single gateway.
	ActionOriginate struct {
		Leg, UUID        string
		Number, CallerID callbridge.Number
		Timeout, Limit   time.Duration
		Cap              time.Duration
		Status           callbridge.CallbackStatus
		Again            bool
		Gateway          string
		Try              int
	}
	// ActionEndAttempt: the attempt through Gateway that Begin claimed
	// is over (Gateways.End); Failed says the carrier could not carry it.
	ActionEndAttempt struct {
		Leg, UUID, Gateway string
		Failed             bool
	}
	// ActionFailover: Leg's attempt through From failed for the carrier
	// (Cause, SIP); the next one goes through To (attempt Try). The
	// engine counts it; the history entry comes with ActionSave.
	ActionFailover struct {
		Leg, From, To, Cause string
		SIP, Try             int
	}
	// ActionPrompt: play Path (the prompt Name) to A while B rings, and
	// record it in the history.
	ActionPrompt struct{ UUID, Path, Name string }
	// ActionFailurePrompt: play Path to A and have FreeSWITCH hang A up
	// After it; when either command fails, hang A up now (KillCause).
	ActionFailurePrompt struct {
		UUID, Path, KillCause string
		After                 time.Duration
	}
	// ActionKill: hang the leg up (uuid_kill with Cause). Result on
	// failure: EventKillFailed.
	ActionKill struct{ Leg, UUID, Cause string }
	// ActionSchedHangup: have FreeSWITCH hang the leg up with
	// ALLOTTED_TIMEOUT After from now (max_duration from the bridge).
	ActionSchedHangup struct {
		Leg, UUID string
		After     time.Duration
	}
	// ActionBridge: uuid_bridge A and B. Results: EventBridged or
	// EventBridgeFailed.
	ActionBridge struct{ A, B string }
	// ActionRecord: record A's channel to Path, noting it in the history.
	ActionRecord struct{ UUID, Path string }
	// ActionCheckLegs: ask the node which of UUIDs it still has. Result:
	// EventLegsChecked.
	ActionCheckLegs struct{ UUIDs []string }
	// ActionCheckCancel: read whether a DELETE asked the callback to end.
	// Result: EventCancelChecked (false when it cannot be read).
	ActionCheckCancel struct{}
	// ActionReconcile: list the node's channels. Result: EventChannels or
	// EventChannelsFailed.
	ActionReconcile struct{}
	// ActionSave: persist Update (the engine sets its ID and Owner). A
	// save that fails abandons the call (EventAbandon), unless BestEffort.
	ActionSave struct {
		Update     callbridge.CallbackUpdate
		BestEffort bool
	}
	// ActionRefused: the node refused Leg (UUID, Cause) before it rang,
	// Refusals times: count it for pacing and record it. Unless Final,
	// the leg is placed again no sooner than Backoff (and the pacer's
	// wait): EventRetryDue then, or at Deadline.
	ActionRefused struct {
		Leg, UUID, Cause string
		Refusals         int
		Backoff          time.Duration
		Deadline         time.Time
		Final            bool
	}
	// ActionWaitGrace: (re)start the node's grace timer to fire
	// EventGraceOver at At. ActionStopGrace stops it.
	ActionWaitGrace struct{ At time.Time }
	ActionStopGrace struct{}
	// ActionWaitBridge: fire EventBridgeWaitOver at At.
	ActionWaitBridge struct{ At time.Time }
	// ActionWaitLegs: fire EventLegsWaitOver at Until.
	ActionWaitLegs struct{ Until time.Time }
	// ActionOrphan: the node stayed away: kill UUIDs on it once it is
	// back, whoever drives the call then.
	ActionOrphan struct {
		Node  string
		UUIDs []string
	}
	// ActionWake: the callback is queued again; look for due callbacks.
	ActionWake struct{}
)

func (ActionAcquire) action()       {}
func (ActionAttach) action()        {}
func (ActionAuthorize) action()     {}
func (ActionRelease) action()       {}
func (ActionOriginate) action()     {}
func (ActionEndAttempt) action()    {}
func (ActionFailover) action()      {}
func (ActionPrompt) action()        {}
func (ActionFailurePrompt) action() {}
func (ActionKill) action()          {}
func (ActionSchedHangup) action()   {}
func (ActionBridge) action()        {}
func (ActionRecord) action()        {}
func (ActionCheckLegs) action()     {}
func (ActionCheckCancel) action()   {}
func (ActionReconcile) action()     {}
func (ActionSave) action()          {}
func (ActionRefused) action()       {}
func (ActionWaitGrace) action()     {}
func (ActionStopGrace) action()     {}
func (ActionWaitBridge) action()    {}
func (ActionWaitLegs) action()      {}
func (ActionOrphan) action()        {}
func (ActionWake) action()          {}

// Next is the callback flow: given the state, what happened and the time,
// it returns the new state and what to do, in order. It reads no clock,
// performs no I/O and leaves s as it was.
func Next(s State, ev Event, now time.Time) (State, []Action) {
	if s.Finished() {
		return s, nil
	}
	m := &stateMachine{s: s, now: now}
	for i := 0; i < 8; i++ {
		before := m.s.Phase
		m.again = false
		m.state(ev)
		ev = nil
		if m.s.Phase == before && !m.again || m.s.Ended() {
			break
		}
	}
	if m.s.Phase == StateEnded && !m.s.A.Live() && !m.s.B.Live() {
		m.s.Phase = StateDone
	}
	return m.s, m.acts
}

// stateMachine is one call of Next: the state being changed and the
// actions decided so far.
type stateMachine struct {
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
func (m *stateMachine) state(ev Event) {
	switch m.s.Phase {
	case StateNew:
		m.inNew(ev)
	case StateClaimed:
		m.inClaimed(ev)
	case StateAdopting:
		m.inAdopting(ev)
	case StateAuthorizing:
		m.inAuthorizing(ev)
	case StateCallingA:
		m.inCallingA(ev)
	case StateAAnswered:
		m.inAAnswered(ev)
	case StateAuthorizingB:
		m.inAuthorizingB(ev)
	case StateCallingB:
		m.inCallingB(ev)
	case StateBridging:
		m.inBridging(ev)
	case StateBridgeRefused:
		m.inBridgeRefused(ev)
	case StateBridged:
		m.inBridged(ev)
	case StateCheckingCancel:
		m.inCheckingCancel(ev)
	case StateEnded:
		m.inEnded(ev)
	}
}

func (m *stateMachine) do(a ...Action) { m.acts = append(m.acts, a...) }

// inNew starts the worker: a fresh claim (or an adopted callback that was
// never dialled) needs a pool slot; an adopted call with legs its node.
func (m *stateMachine) inNew(ev Event) {
	if _, ok := ev.(EventStart); !ok {
		m.record(ev)
		return
	}
	s := &m.s
	if s.Adopted && (s.Status != callbridge.CallbackCallingA || s.A.Progress != StateLegUnplaced || s.B.Progress != StateLegUnplaced) {
		s.Phase = StateAdopting
		m.do(ActionAttach{Node: s.Node})
		return
	}
	s.Phase = StateClaimed
	m.do(ActionAcquire{})
}

// inClaimed waits for a pool slot, for A's first placement or its
// placement again after the node refused it.
func (m *stateMachine) inClaimed(ev Event) {
	s := &m.s
	switch ev := ev.(type) {
	case EventAcquired:
		s.Node = ev.Node
		if s.A.Refusals == 0 {
			s.Phase = StateCallingA // which places A
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
		s.Phase = StateCallingA
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
func (m *stateMachine) inAdopting(ev Event) {
	s := &m.s
	switch ev := ev.(type) {
	case EventAcquired:
		s.Node = ev.Node
		s.Reconciling = StateReconcileAdopted
		m.do(ActionReconcile{})
	case EventNoNode:
		m.finish(callbridge.ReasonNodeUnavailable, ev.Detail)
	case EventChannels:
		s.Reconciling = ""
		m.reconcile(ev.Channels, "adopted by "+s.Config.Owner)
		s.Phase = stateStatusPhase(s.Status)
	case EventChannelsFailed:
		s.Reconciling = ""
		s.Phase = stateStatusPhase(s.Status)
		m.nodeLost("cannot list the channels of " + s.Node)
	default:
		m.record(ev)
	}
}

// stateStatusPhase is the phase an adopted callback resumes in.
func stateStatusPhase(st callbridge.CallbackStatus) StatePhase {
	switch st {
	case callbridge.CallbackAAnswered:
		return StateAAnswered
	case callbridge.CallbackCallingB:
		return StateCallingB
	case callbridge.CallbackBridged:
		return StateBridged
	}
	return StateCallingA
}

// inAuthorizing waits for both legs' grants, then places A.
func (m *stateMachine) inAuthorizing(ev Event) {
	s := &m.s
	switch ev := ev.(type) {
	case EventAuthorized:
		m.grant(&s.A, ev.A)
		m.grant(&s.B, ev.B)
		m.place(&s.A, s.RingA, "")
		s.Phase = StateCallingA
	case EventNotAuthorized:
		m.finish(ev.Reason, ev.Detail)
	default:
		m.record(ev)
	}
}

func (m *stateMachine) grant(l *StateLeg, g *EventGrant) {
	if g != nil {
		l.UUID, l.Grant, l.Reserved = g.UUID, g.Grant, g.Reserved
	}
}

// inCallingA decides on A: place it, answer it, or fail (placing it again
// when the node refused it before it rang).
func (m *stateMachine) inCallingA(ev Event) {
	if !m.record(ev) || m.held() {
		return
	}
	s := &m.s
	a := &s.A
	switch {
	case a.Progress == StateLegUnplaced:
		if s.Config.PerLeg {
			// Both legs before anyone is called: B must not ring A only
			// to find the balance cannot pay for B.
			m.authorize(true)
			return
		}
		m.place(a, s.RingA, "")
	case a.Down && a.Progress < StateLegAnswered:
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
	case a.Progress == StateLegAnswered:
		m.save(callbridge.CallbackUpdate{Status: callbridge.CallbackAAnswered, Detail: "A answered"})
		s.Phase = StateAAnswered
	}
}

// inAAnswered places B (authorising it first when that was not done, as
// for a call adopted after A answered elsewhere), unless A hung up.
func (m *stateMachine) inAAnswered(ev Event) {
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
func (m *stateMachine) inAuthorizingB(ev Event) {
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
func (m *stateMachine) placeB() {
	s := &m.s
	s.Phase = StateCallingB
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

func (m *stateMachine) promptPath() string {
	if m.s.Prompt == "" || m.s.Prompt == callbridge.PromptNone {
		return ""
	}
	return m.s.Config.Prompts[m.s.Prompt]
}

// inCallingB decides on B: bridge it once answered, or fail (placing it
// again when the node refused it before it rang), or end when A hung up.
func (m *stateMachine) inCallingB(ev Event) {
	if !m.record(ev) || m.held() {
		return
	}
	s := &m.s
	b := &s.B
	switch {
	case s.A.Down:
		m.kill(b)
		m.finish(callbridge.ReasonAHangup, "A hung up while B was called")
	case b.Down && b.Progress < StateLegAnswered:
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
	case b.Progress == StateLegAnswered && s.A.Parked && b.Parked:
		m.do(ActionBridge{A: s.A.UUID, B: b.UUID})
		s.Phase = StateBridging
	}
}

// inBridging takes uuid_bridge's reply: bridged, refused (a leg has
// probably just hung up), the connection lost, or another failure.
func (m *stateMachine) inBridging(ev Event) {
	s := &m.s
	switch ev := ev.(type) {
	case EventBridged:
		m.save(callbridge.CallbackUpdate{Status: callbridge.CallbackBridged, Detail: "A and B bridged"})
		s.Phase = StateBridged
		for _, l := range []*StateLeg{&s.A, &s.B} {
			m.do(ActionSchedHangup{Leg: l.Name, UUID: l.UUID, After: s.MaxDuration})
		}
		m.save(callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventMaxDuration, Detail: s.MaxDuration.String()}}})
		if s.Record {
			m.do(ActionRecord{UUID: s.A.UUID, Path: path.Join(s.Config.RecordDir, s.ID+".wav")})
		}
	case EventBridgeFailed:
		switch {
		case ev.Refused:
			s.Phase = StateBridgeRefused
			m.do(ActionWaitBridge{At: m.now.Add(StateBridgeWait)})
		case ev.Closed:
			// Bridged or not, the reconciliation after the reconnection
			// tells; B still answered then means bridging again.
			s.Phase = StateCallingB
			m.nodeLost("connection to " + s.Node + " lost during uuid_bridge")
		default:
			m.bridgeFailed()
		}
	default:
		m.record(ev)
	}
}

// bridgeFailed ends a callback whose legs could not be bridged.
func (m *stateMachine) bridgeFailed() {
	s := &m.s
	s.Phase = StateCallingB
	m.kill(&s.A)
	m.kill(&s.B)
	m.finish(callbridge.ReasonInternal, "uuid_bridge failed")
}

// inBridgeRefused waits for a leg's hangup after FreeSWITCH refused
// uuid_bridge (almost always "-ERR no such channel": its hangup event is
// on its way); at StateBridgeWait, a leg the node no longer has is taken
// as hung up. Calling B then decides with that leg's reason.
func (m *stateMachine) inBridgeRefused(ev Event) {
	s := &m.s
	switch ev := ev.(type) {
	case EventBridgeWaitOver:
		var live []string
		for _, l := range []*StateLeg{&s.A, &s.B} {
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
func (m *stateMachine) bridgeLegDown() bool {
	s := &m.s
	if s.Ended() {
		return true
	}
	if s.A.Down || s.B.Down || s.NodeDown {
		s.Phase = StateCallingB
		return true
	}
	return false
}

// inBridged ends the call when a leg hangs up, hanging up the other: at
// max duration, completed, or cancelled when a DELETE hung it up.
func (m *stateMachine) inBridged(ev Event) {
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
		s.Phase = StateCheckingCancel
		m.do(ActionCheckCancel{})
	default:
		m.finish(callbridge.ReasonNone, detail)
	}
}

// inCheckingCancel ends a bridged call that hung up normally: cancelled
// when a DELETE asked for it, completed otherwise.
func (m *stateMachine) inCheckingCancel(ev Event) {
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
func (m *stateMachine) inEnded(ev Event) {
	if _, ok := ev.(EventLegsWaitOver); ok {
		m.s.Phase = StateDone
		return
	}
	m.record(ev)
}

// held reports whether the phase must not decide now: the node is lost,
// or a DELETE is being carried out (which this decides).
func (m *stateMachine) held() bool {
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

// record applies the facts an event brings in any phase. It reports
// whether the phase should decide on them.
func (m *stateMachine) record(ev Event) bool {
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
		m.s.Phase = StateAbandoned
	case EventRetryDue:
		if l := m.s.Leg(e.Leg); l.Waiting {
			l.Due = true
		}
	}
	return !m.s.Ended()
}

// channel records a channel event of a leg.
func (m *stateMachine) channel(ev Event) {
	switch ev := ev.(type) {
	case EventRinging:
		l := m.seen(ev.UUID)
		if l != nil && l.Progress == StateLegPlaced && !l.Down {
			l.Progress = StateLegRinging
			m.save(callbridge.CallbackUpdate{
				Leg:    m.legUpdate(l, func(u *callbridge.LegUpdate) { u.Ringing = ev.At }),
				Events: []callbridge.CallbackEvent{{Type: callbridge.EventLegRinging, Leg: l.Name, At: ev.At, Detail: ev.Detail}},
			})
		}
		m.killCancelled(l)
	case EventAnswered:
		l := m.seen(ev.UUID)
		if l != nil && l.Progress < StateLegAnswered && !l.Down {
			l.Progress = StateLegAnswered
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
func (m *stateMachine) originated(ev Event) {
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
		if l := s.legByUUID(ev.UUID); l != nil && !l.Down && l.Progress < StateLegAnswered {
			m.legDown(l, ev.Cause, m.now.UTC(), "originate: "+ev.Detail)
		}
	}
}

// node records news of the node's connection and channels.
func (m *stateMachine) node(ev Event) {
	s := &m.s
	switch ev := ev.(type) {
	case EventNodeDown:
		m.nodeLost("lost connection to " + s.Node)
	case EventNodeUp:
		// Always reconcile: the connection may have been lost and back
		// before the watcher noticed, and events may be missing.
		if !s.Ended() {
			s.Reconciling = StateReconcileReconnected
			m.do(ActionReconcile{})
		}
	case EventGraceOver:
		switch {
		case !s.NodeDown:
		case ev.Connected:
			s.Reconciling = StateReconcileGrace
			m.do(ActionReconcile{})
		default:
			m.nodeGone()
		}
	case EventChannels:
		why := s.Reconciling
		s.Reconciling = ""
		switch why {
		case StateReconcileReconnected:
			m.reconcile(ev.Channels, "reconnected to "+s.Node)
			s.NodeDown = false
			m.do(ActionStopGrace{})
		case StateReconcileGrace:
			m.reconcile(ev.Channels, "connected to "+s.Node+" at the end of the grace period")
			s.NodeDown = false
		}
	case EventChannelsFailed:
		why := s.Reconciling
		s.Reconciling = ""
		switch why {
		case StateReconcileReconnected:
			m.nodeLost("cannot list the channels of " + s.Node)
		case StateReconcileGrace:
			m.nodeGone()
		}
	}
}

// seen returns the leg of a channel event (nil: not ours), noting that
// the node has a session for it.
func (m *stateMachine) seen(uuid string) *StateLeg {
	l := m.s.legByUUID(uuid)
	if l != nil {
		l.Session = true
	}
	return l
}

// killCancelled hangs up a live leg of a cancelled callback that was not
// killed yet (its uuid_kill came before its channel existed).
func (m *stateMachine) killCancelled(l *StateLeg) {
	if l != nil && m.s.Cancelled {
		m.kill(l)
	}
}

// reconcile compares the legs believed live with the node's channels:
// a leg the node no longer has hung up unseen; one it has ACTIVE answered.
func (m *stateMachine) reconcile(channels map[string]string, why string) {
	now := m.now.UTC()
	detail := why
	for _, l := range []*StateLeg{&m.s.A, &m.s.B} {
		if !l.Live() {
			continue
		}
		state, ok := channels[l.UUID]
		switch {
		case !ok:
			l.Down, l.Lost = true, true
			detail += "; leg " + l.Name + " gone"
			m.save(callbridge.CallbackUpdate{Leg: m.legUpdate(l, func(u *callbridge.LegUpdate) { u.Hangup = now })})
		case state == "ACTIVE" && l.Progress < StateLegAnswered:
			l.Progress, l.Parked = StateLegAnswered, true
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
func (m *stateMachine) nodeLost(detail string) {
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
func (m *stateMachine) nodeGone() {
	s := &m.s
	var orphans []string
	for _, l := range []*StateLeg{&s.A, &s.B} {
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
func (m *stateMachine) legDown(l *StateLeg, cause string, at time.Time, detail string) {
	l.Down, l.Cause, l.DownAt = true, cause, at
	if detail == "" {
		detail = cause
	}
	events := []callbridge.CallbackEvent{{Type: callbridge.EventLegHangup, Leg: l.Name, At: at, Detail: detail}}
	r := &l.Route
	// A node refusing the session is not the carrier's failure.
	refused := m.refused(l)
	failed := !refused && l.Progress < StateLegAnswered && r.Policy != nil && r.Policy.Classify(cause, l.SIP) == routing.Failover
	if r.Tried > 0 && l.Progress < StateLegAnswered {
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
		m.do(ActionEndAttempt{Leg: l.Name, UUID: l.UUID, Gateway: r.Gateway(), Failed: failed})
	}
}

// attemptEntry is the history entry of the end of leg l's current
// gateway attempt (its answer, or its failure with cause).
func (m *stateMachine) attemptEntry(l *StateLeg, at time.Time, cause, detail string) callbridge.CallbackEvent {
	r := &l.Route
	e := callbridge.CallbackEvent{Type: callbridge.EventGatewayAttempt, Leg: l.Name, At: at, Detail: detail,
		Gateway: r.Gateway(), GatewayAttempt: r.Tried, Cause: cause, SIPStatus: l.SIP}
	if !r.Began.IsZero() && !at.Before(r.Began) {
		e.DurationMS = at.Sub(r.Began).Milliseconds()
	}
	return e
}

func (m *stateMachine) legUpdate(l *StateLeg, f func(*callbridge.LegUpdate)) *callbridge.LegUpdate {
	u := &callbridge.LegUpdate{Leg: l.Name, Attempt: m.s.Attempt, UUID: l.UUID, Node: m.s.Node, Number: l.Number, CallerID: l.CallerID,
		Gateway: l.Route.Gateway()}
	f(u)
	return u
}

// save persists u; a status is taken as saved (a save that fails ends the
// worker). Facts of an ended callback are saved at best.
func (m *stateMachine) save(u callbridge.CallbackUpdate) {
	if u.Status != "" {
		m.s.Status = u.Status
	}
	m.do(ActionSave{Update: u, BestEffort: u.Status == "" && m.s.Ended()})
}

// kill hangs a live leg up, once.
func (m *stateMachine) kill(l *StateLeg) {
	if !l.Live() || l.KillSent || m.s.NodeDown {
		return
	}
	l.KillSent = true
	m.do(ActionKill{Leg: l.Name, UUID: l.UUID, Cause: stateKillCause(l)})
}

func stateKillCause(l *StateLeg) string {
	if l.Progress == StateLegAnswered {
		return "NORMAL_CLEARING"
	}
	return "ORIGINATOR_CANCEL"
}

// authorize asks for B's grant, with both for A's too.
func (m *stateMachine) authorize(both bool) {
	s := &m.s
	a := ActionAuthorize{Both: both, UUIDB: s.B.UUID, Max: s.MaxDuration}
	if both {
		a.UUIDA, a.RingB = s.A.UUID, s.RingB
		s.Phase = StateAuthorizing
	} else {
		s.Phase = StateAuthorizingB
	}
	m.do(a)
}

// release drops a leg's reservation.
func (m *stateMachine) release(l *StateLeg) {
	if l.Reserved {
		l.Reserved = false
		m.do(ActionRelease{Leg: l.Name, UUID: l.UUID})
	}
}

// place originates leg l. A prepaid leg carries its cap: FreeSWITCH times
// the grant from the answer itself, since the controller may learn of
// the answer (and bridge) seconds later under load.
//
// A routed leg goes through its current gateway (the first when none was
// tried), ringing no longer than what is left of the post-dial budget; a
// routed leg without a gateway fails at once.
func (m *stateMachine) place(l *StateLeg, timeout time.Duration, status callbridge.CallbackStatus) {
	if l.FirstPlaced.IsZero() {
		l.FirstPlaced = m.now
	}
	r := &l.Route
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
		o.Cap, l.CapSent = stateCapAfter(l.Grant), true
	}
	l.Progress = StateLegPlaced
	if status != "" {
		m.s.Status = status
	}
	m.do(o)
}

// noCarrier fails a routed leg that has no gateway to go through: its
// plan has no route for the number, or skipped every gateway.
func (m *stateMachine) noCarrier(l *StateLeg, status callbridge.CallbackStatus) {
	l.Progress, l.Down, l.Unsent, l.Cause = StateLegPlaced, true, true, l.Route.NoneCause
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
func (m *stateMachine) failover(l *StateLeg) bool {
	r := &l.Route
	if !r.Planned || r.Tried == 0 || l.Progress == StateLegAnswered || l.Lost || m.s.Cancelled {
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
		Detail: fmt.Sprintf("%s failed (%s); trying %s, attempt %d of %d", from, stateFailure(cause, sip), r.Gateway(), r.Tried, min(len(r.Gateways), max(r.MaxAttempts, 1)))}}})
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

func stateFailure(cause string, sip int) string {
	if sip != 0 {
		return fmt.Sprintf("%s, SIP %d", cause, sip)
	}
	return cause
}

// reset makes a leg ready to be placed anew, under a new channel uuid
// (the previous placement keeps its own CDR): what it keeps is who it
// calls, its refusals and its route.
func (m *stateMachine) reset(l *StateLeg) {
	m.release(l)
	*l = StateLeg{Name: l.Name, Number: l.Number, CallerID: l.CallerID, FirstPlaced: l.FirstPlaced, Refusals: l.Refusals,
		Recorded: l.Recorded, Route: l.Route}
}

// legLimit is the longest leg l may last: max_duration, or its grant when
// that is shorter.
func (m *stateMachine) legLimit(l *StateLeg) time.Duration {
	if l.Grant > 0 && l.Grant < m.s.MaxDuration {
		return l.Grant
	}
	return m.s.MaxDuration
}

// stateCapAfter is a grant as FreeSWITCH can time it: whole seconds, rounded
// down so that the leg is not billed past its reservation, at least one.
func stateCapAfter(grant time.Duration) time.Duration {
	return max(grant/time.Second, 1) * time.Second
}

// refused reports whether the node refused leg l's placement before
// anything rang: it failed with a refusal cause and no event of the
// channel ever arrived (no session was created).
func (m *stateMachine) refused(l *StateLeg) bool {
	return l.Down && !l.Unsent && !l.Session && l.Progress == StateLegPlaced && !l.Lost && !m.s.Cancelled && stateRefusalCause(l.Cause)
}

// stateRefusalCause reports whether a node refuses a session with cause:
// mod_sofia answers DESTINATION_OUT_OF_ORDER when the core refuses
// (max-sessions, sessions-per-second, min-idle-cpu); the others are
// congestion.
func stateRefusalCause(cause string) bool {
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
func (m *stateMachine) refusalDeadline(l *StateLeg) time.Time {
	if l.Name == callbridge.LegB {
		return l.FirstPlaced.Add(m.s.RingB)
	}
	return m.s.Started.Add(m.s.Config.RefusedRetry)
}

// stateRefusalBackoff is the least wait before a leg refused n times is placed
// again: 100 ms, doubling, at most 2 s.
func stateRefusalBackoff(n int) time.Duration {
	return min(100*time.Millisecond<<min(max(n-1, 0), 5), 2*time.Second)
}

// retry places a refused leg again once the pacer lets it, until its
// deadline; it reports false when the deadline has passed (the refusal
// then fails the callback). A refusal is not an attempt of the account's
// retry policy.
func (m *stateMachine) retry(l *StateLeg) bool {
	deadline := m.refusalDeadline(l)
	late := m.now.After(deadline)
	if !l.Waiting {
		l.Refusals++
		m.do(ActionRefused{Leg: l.Name, UUID: l.UUID, Cause: l.Cause, Refusals: l.Refusals,
			Backoff: stateRefusalBackoff(l.Refusals), Deadline: deadline, Final: late})
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
func (m *stateMachine) placeAgain(l *StateLeg) {
	s := &m.s
	m.reset(l)
	if l.Name == callbridge.LegA {
		s.Phase = StateClaimed
		m.do(ActionAcquire{})
		return
	}
	if s.Config.PerLeg {
		m.authorize(false)
		return
	}
	m.place(l, s.RingB, "")
}

// failA ends the attempt on an A failure, or queues the callback again
// under the account's retry policy.
func (m *stateMachine) failA(reason callbridge.FailReason) {
	s := &m.s
	if reason.Retries() && s.Attempt <= s.Retry.Attempts {
		s.Phase, s.EndBy = StateEnded, m.now.Add(s.Config.LegWait)
		m.save(callbridge.CallbackUpdate{
			Status: callbridge.CallbackQueued, RunAt: m.now.Add(s.Retry.Delay),
			Detail: fmt.Sprintf("retry %d of %d after %s in %s", s.Attempt, s.Retry.Attempts, reason, s.Retry.Delay),
			Events: []callbridge.CallbackEvent{{Type: callbridge.EventRetry, Leg: callbridge.LegA, Detail: string(reason)}},
		})
		m.do(ActionWake{}, ActionWaitLegs{Until: s.EndBy})
		return
	}
	m.finish(reason, "A: "+s.A.Cause)
}

// failB plays A the failure prompt and has FreeSWITCH hang A up after it
// (or hangs A up now), and fails the callback.
func (m *stateMachine) failB(reason callbridge.FailReason) {
	s := &m.s
	p, ok := s.Config.FailurePrompts[reason]
	if !ok {
		p = s.Config.FailurePrompts[""]
	}
	if p != "" && s.A.Live() {
		m.do(ActionFailurePrompt{UUID: s.A.UUID, Path: p, After: s.Config.FailurePromptTime, KillCause: stateKillCause(&s.A)})
	} else {
		m.kill(&s.A)
	}
	m.finish(reason, "B: "+s.B.Cause)
}

// finish ends the callback: completed when reason is empty, failed
// otherwise; then it waits for its legs to report hangup.
func (m *stateMachine) finish(reason callbridge.FailReason, detail string) {
	s := &m.s
	if s.Ended() {
		return
	}
	status := callbridge.CallbackCompleted
	if reason != callbridge.ReasonNone {
		status = callbridge.CallbackFailed
	}
	s.Phase, s.EndBy = StateEnded, m.now.Add(s.Config.LegWait+s.Config.FailurePromptTime)
	m.save(callbridge.CallbackUpdate{Status: status, Reason: reason, Detail: detail})
	m.do(ActionWaitLegs{Until: s.EndBy})
}
