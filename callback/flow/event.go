package flow

import (
	"time"

	"callbridge"
)

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

// EventRouted is ActionRoute's result: Leg's carrier route (the zero
// Route when no route plan covers the account: the engine's single
// gateway).
type EventRouted struct {
	Leg   string
	Route Route
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
	// EventBridgeWaitOver: BridgeWait passed since the refusal.
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
func (EventRouted) eventName() string           { return "routed" }
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
