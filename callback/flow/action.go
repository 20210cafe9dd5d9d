package flow

import (
	"time"

	"callbridge"
)

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
	// ActionRoute: resolve Leg's carrier route to Number now (the
	// account's route plan, at this moment's time band, prices and
	// gateway health). Result: EventRouted. It comes just before the
	// leg's first placement, which waits for it, and, for an adopted
	// call, for each leg the dead controller had placed through a plan.
	ActionRoute struct {
		Leg    string
		Number callbridge.Number
	}
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
	// ActionEndAttempt: the attempt through Gateway that Begin (or Hold) claimed
	// is over: Gateways.End with what it says of the carrier, or
	// Gateways.Release when it says nothing (AttemptUnknown).
	ActionEndAttempt struct {
		Leg, UUID, Gateway string
		Outcome            AttemptOutcome
	}
	// ActionHoldAttempt: an adopted leg's attempt through Gateway, which
	// the controller that placed it had claimed, counts from now for this
	// one (Gateways.Hold, whatever the caps: the call is up); it ends
	// with ActionEndAttempt.
	ActionHoldAttempt struct{ Leg, UUID, Gateway string }
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
	// ActionFailurePrompt: play Path to A, after which FreeSWITCH hangs
	// A up, at the latest After from now; when either command fails,
	// hang A up now (KillCause).
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
func (ActionRoute) action()         {}
func (ActionHoldAttempt) action()   {}
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

// AttemptOutcome is what the end of a gateway attempt tells of the
// carrier, for its circuit breaker.
type AttemptOutcome int

const (
	// AttemptCarried: the carrier carried the call (it rang, the callee
	// was busy or answered...).
	AttemptCarried AttemptOutcome = iota
	// AttemptFailed: the carrier could not carry it (the route's policy
	// says fail over).
	AttemptFailed
	// AttemptUnknown: the attempt never reached the carrier (the node
	// refused the session) or its end was not seen (the leg was lost
	// with its node): the breaker is not told either way.
	AttemptUnknown
)

func (o AttemptOutcome) String() string {
	switch o {
	case AttemptCarried:
		return "carried"
	case AttemptFailed:
		return "failed"
	}
	return "unknown"
}
