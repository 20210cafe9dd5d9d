package callbridge

import (
	"context"
	"encoding/json"
	"time"
)

// CallbackStatus is the life-cycle state of a callback:
// queued → calling_a → a_answered → calling_b → bridged → completed, or
// failed with a FailReason from any state before completed.
type CallbackStatus string

// Callback states.
const (
	CallbackQueued    CallbackStatus = "queued"     // stored, waiting for a worker
	CallbackCallingA  CallbackStatus = "calling_a"  // leg A is being originated
	CallbackAAnswered CallbackStatus = "a_answered" // A answered (CHANNEL_ANSWER), B not yet called
	CallbackCallingB  CallbackStatus = "calling_b"  // leg B is being originated
	CallbackBridged   CallbackStatus = "bridged"    // A and B talk
	CallbackCompleted CallbackStatus = "completed"  // the bridged call ended normally
	CallbackFailed    CallbackStatus = "failed"     // ended without a normal completion; see FailReason
)

// Terminal reports whether s is an end state.
func (s CallbackStatus) Terminal() bool {
	return s == CallbackCompleted || s == CallbackFailed
}

// Live reports whether s has a worker driving legs on a node.
func (s CallbackStatus) Live() bool {
	switch s {
	case CallbackCallingA, CallbackAAnswered, CallbackCallingB, CallbackBridged:
		return true
	}
	return false
}

// Valid reports whether s is one of the states above.
func (s CallbackStatus) Valid() bool {
	return s == CallbackQueued || s.Live() || s.Terminal()
}

// FailReason says why a callback failed.
type FailReason string

// Failure reasons.
const (
	ReasonNone              FailReason = ""
	ReasonABusy             FailReason = "a_busy"
	ReasonANoAnswer         FailReason = "a_no_answer"
	ReasonARejected         FailReason = "a_rejected"
	ReasonAHangup           FailReason = "a_hangup" // A hung up after answering, before the bridge
	ReasonBBusy             FailReason = "b_busy"
	ReasonBNoAnswer         FailReason = "b_no_answer"
	ReasonBRejected         FailReason = "b_rejected"
	ReasonNodeUnavailable   FailReason = "node_unavailable"
	ReasonCancelled         FailReason = "cancelled"
	ReasonMaxDuration       FailReason = "max_duration"
	ReasonInsufficientFunds FailReason = "insufficient_funds"
	ReasonInternal          FailReason = "internal"
)

// Legs of a callback, the values of VarLeg on its channels.
const (
	LegA = "a"
	LegB = "b"
)

// Prompts a callback may play to A while B rings, besides the names of
// the deployment's sound allow-list.
const (
	PromptNone     = "none"
	PromptRingback = "ringback"
)

// Limits of callback requests.
const (
	MinRingTimeout       = 5 * time.Second
	MaxRingTimeout       = 120 * time.Second
	DefaultRingTimeout   = 30 * time.Second
	MinMaxDuration       = 10 * time.Second
	MaxMaxDuration       = 24 * time.Hour
	DefaultMaxDuration   = time.Hour
	MaxCallbackMetadata  = 4096 // bytes of JSON
	DefaultCallbackQueue = 1000 // queued callbacks per account
)

// Callback is a request to connect two phones: callbridge calls A, then B,
// and bridges them.
type Callback struct {
	ID        string         `json:"id" db:"id"`
	AccountID string         `json:"account_id" db:"account_id"`
	Status    CallbackStatus `json:"status" db:"status"`
	Reason    FailReason     `json:"reason,omitempty" db:"reason"`
	A         Number         `json:"a" db:"a"`
	B         Number         `json:"b" db:"b"`
	// CallerIDA is what A sees; CallerIDB what B sees. Empty leaves the
	// carrier's default.
	CallerIDA    Number `json:"caller_id_a,omitempty" db:"caller_id_a"`
	CallerIDB    Number `json:"caller_id_b,omitempty" db:"caller_id_b"`
	RingTimeoutA int    `json:"ring_timeout_a" db:"ring_timeout_a"` // seconds
	RingTimeoutB int    `json:"ring_timeout_b" db:"ring_timeout_b"` // seconds
	MaxDuration  int    `json:"max_duration" db:"max_duration"`     // seconds of bridged talk
	// Prompt is played to A while B rings: PromptNone, PromptRingback or
	// the name of a sound of the deployment's allow-list.
	Prompt     string          `json:"prompt" db:"prompt"`
	Record     bool            `json:"record" db:"record"`
	WebhookURL string          `json:"webhook_url,omitempty" db:"webhook_url"`
	Metadata   json.RawMessage `json:"metadata,omitempty" db:"metadata"`
	// Attempt counts placements of leg A (1 for the first; retries of a
	// busy or unanswered A add one each).
	Attempt int `json:"attempt" db:"attempt"`
	// Node is the FreeSWITCH node the current attempt runs on.
	Node string `json:"node,omitempty" db:"node"`
	// CancelRequested is set by a DELETE of a live callback until its
	// worker has hung the legs up.
	CancelRequested bool       `json:"cancel_requested,omitempty" db:"cancel_requested"`
	CreatedAt       time.Time  `json:"created_at" db:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at" db:"updated_at"`
	EndedAt         *time.Time `json:"ended_at,omitempty" db:"ended_at"`

	// Legs, Events and CDRIDs are filled by CallbackService.Callback.
	Legs   []*CallbackLeg   `json:"legs,omitempty" db:"-"`
	Events []*CallbackEvent `json:"events,omitempty" db:"-"`
	CDRIDs []string         `json:"cdr_ids,omitempty" db:"-"`
	// Retry is the account's retry policy, filled for workers.
	Retry RetryPolicy `json:"-" db:"-"`
}

// CallbackLeg is one call leg of a callback as FreeSWITCH placed it.
type CallbackLeg struct {
	CallbackID string     `json:"-" db:"callback_id"`
	Leg        string     `json:"leg" db:"leg"` // LegA or LegB
	Attempt    int        `json:"attempt" db:"attempt"`
	UUID       string     `json:"uuid" db:"uuid"`
	Node       string     `json:"node" db:"node"`
	Number     Number     `json:"number" db:"number"`
	CallerID   Number     `json:"caller_id,omitempty" db:"caller_id"`
	CreatedAt  time.Time  `json:"created_at" db:"created_at"`
	RingingAt  *time.Time `json:"ringing_at,omitempty" db:"ringing_at"`
	AnsweredAt *time.Time `json:"answered_at,omitempty" db:"answered_at"`
	HangupAt   *time.Time `json:"hangup_at,omitempty" db:"hangup_at"`
	// HangupCause is FreeSWITCH's cause name, e.g. USER_BUSY.
	HangupCause string `json:"hangup_cause,omitempty" db:"hangup_cause"`
	// Gateway is the carrier gateway of the leg's current placement when
	// a route plan chose it; empty when it left through the single
	// configured gateway.
	Gateway string `json:"gateway,omitempty" db:"gateway"`
}

// CallbackEvent is one entry of a callback's ordered history: a status
// change, or something that happened to a leg.
type CallbackEvent struct {
	Seq     int64          `json:"seq" db:"id"`
	Type    string         `json:"type" db:"type"` // "status" or a leg event such as "leg_answered"
	Status  CallbackStatus `json:"status,omitempty" db:"status"`
	Reason  FailReason     `json:"reason,omitempty" db:"reason"`
	Leg     string         `json:"leg,omitempty" db:"leg"`
	Attempt int            `json:"attempt" db:"attempt"`
	Detail  string         `json:"detail,omitempty" db:"detail"`
	At      time.Time      `json:"at" db:"at"`
	// Gateway, GatewayAttempt, Cause, SIPStatus and DurationMS describe
	// a carrier attempt of a routed leg (gateway_attempt, failover, and
	// leg_created): the gateway, the attempt's number among the leg's
	// (1 for the first gateway tried), the FreeSWITCH hangup cause and
	// the carrier's final SIP response it ended with (0: none), and how
	// long it took from its placement to its answer or end.
	Gateway        string `json:"gateway,omitempty" db:"gateway"`
	GatewayAttempt int    `json:"gateway_attempt,omitempty" db:"gateway_attempt"`
	Cause          string `json:"cause,omitempty" db:"cause"`
	SIPStatus      int    `json:"sip_status,omitempty" db:"sip_status"`
	DurationMS     int64  `json:"duration_ms,omitempty" db:"duration_ms"`
}

// Event types of CallbackEvent besides "status".
const (
	EventStatus       = "status"
	EventLegCreated   = "leg_created"
	EventLegRinging   = "leg_ringing"
	EventLegAnswered  = "leg_answered"
	EventLegHangup    = "leg_hangup"
	EventRetry        = "retry"
	EventCancel       = "cancel_requested"
	EventReconciled   = "reconciled"
	EventNodeLost     = "node_lost"
	EventPrompt       = "prompt"
	EventMaxDuration  = "max_duration_scheduled"
	EventRecording    = "recording"
	EventAuthorized   = "authorized"
	EventCommandError = "command_error"
	// EventRefused: the node refused to place a leg before anything rang
	// (no session: max-sessions, sessions-per-second, min-idle-cpu, or a
	// congestion cause); the leg is placed again within the callback's
	// deadline, under the same attempt.
	EventRefused = "originate_refused"
	// EventGatewayAttempt: a routed leg's attempt through a carrier
	// gateway ended: answered, failed (Cause, SIPStatus; Detail says
	// whether it was the carrier's failure) or skipped before it was
	// sent (Detail names why: the gateway is down, at a cap, or its
	// circuit breaker open).
	EventGatewayAttempt = "gateway_attempt"
	// EventFailover: a routed leg is placed again through the next
	// gateway of its route (Gateway, GatewayAttempt) after the carrier
	// failure Cause/SIPStatus, or (Detail "no failover: ...") is not,
	// because its attempts or post-dial budget are used up.
	EventFailover = "failover"
)

// CallbackRequest asks for a new callback. The HTTP layer fills defaults;
// CallbackService.CreateCallback validates it again.
type CallbackRequest struct {
	AccountID    string
	A, B         Number
	CallerIDA    Number
	CallerIDB    Number
	RingTimeoutA int
	RingTimeoutB int
	MaxDuration  int
	Prompt       string
	Record       bool
	WebhookURL   string
	Metadata     json.RawMessage
	// IdempotencyKey, when set, makes a repeated request with the same key
	// and RequestHash return the first callback; another hash is ECONFLICT.
	IdempotencyKey string
	RequestHash    string
}

// Validate checks a request's fields; prompts other than none and
// ringback are checked by the caller against its allow-list. It returns an
// EINVALID *Error naming the field.
func (r *CallbackRequest) Validate() error {
	if err := r.A.Validate(); err != nil {
		return FieldError("a", "%s", ErrorMessage(err))
	}
	if err := r.B.Validate(); err != nil {
		return FieldError("b", "%s", ErrorMessage(err))
	}
	if r.A == r.B {
		return FieldError("b", "must differ from a")
	}
	if r.CallerIDA != "" {
		if err := r.CallerIDA.Validate(); err != nil {
			return FieldError("caller_id_a", "%s", ErrorMessage(err))
		}
	}
	if r.CallerIDB != "" {
		if err := r.CallerIDB.Validate(); err != nil {
			return FieldError("caller_id_b", "%s", ErrorMessage(err))
		}
	}
	secs := func(field string, v int, lo, hi time.Duration) error {
		if v < int(lo/time.Second) || v > int(hi/time.Second) {
			return FieldError(field, "must be between %d and %d seconds", int(lo/time.Second), int(hi/time.Second))
		}
		return nil
	}
	if err := secs("ring_timeout_a", r.RingTimeoutA, MinRingTimeout, MaxRingTimeout); err != nil {
		return err
	}
	if err := secs("ring_timeout_b", r.RingTimeoutB, MinRingTimeout, MaxRingTimeout); err != nil {
		return err
	}
	if err := secs("max_duration", r.MaxDuration, MinMaxDuration, MaxMaxDuration); err != nil {
		return err
	}
	if err := ValidatePromptName(r.Prompt); err != nil {
		return err
	}
	if err := ValidateWebhookURL(r.WebhookURL); err != nil {
		return err
	}
	if len(r.Metadata) > 0 {
		if len(r.Metadata) > MaxCallbackMetadata {
			return FieldError("metadata", "must have at most %d bytes of JSON", MaxCallbackMetadata)
		}
		var m map[string]any
		if err := json.Unmarshal(r.Metadata, &m); err != nil || m == nil {
			return FieldError("metadata", "must be a JSON object")
		}
	}
	return nil
}

// ValidatePromptName checks the form of a prompt name: 1 to 64 characters
// from [a-z0-9_-]. Whether the name is in the allow-list is the engine's
// business. It returns an EINVALID *Error.
func ValidatePromptName(s string) error {
	if len(s) < 1 || len(s) > 64 {
		return FieldError("prompt", "must have 1 to 64 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return FieldError("prompt", "may contain only a-z, 0-9, '_' and '-'")
		}
	}
	return nil
}

// CallbackFilter selects callbacks of an account for listing, newest first.
// Cursor is the opaque value returned with the previous page.
type CallbackFilter struct {
	Status CallbackStatus
	Since  time.Time
	Cursor string
	Limit  int
}

// CallbackService stores callbacks and their history.
type CallbackService interface {
	// CreateCallback stores a queued callback (and its first history entry
	// and webhook) before anything is dialled. It returns created=false
	// when an idempotent repeat returned the first callback. EINVALID,
	// ECONFLICT (idempotency key reused with another request), ERATELIMIT
	// (the account's queue is full), EUNAVAILABLE (not created: no
	// controller will dial it), EOUTCOMEUNKNOWN (it may have been created
	// and may be dialled; a repeat with the same idempotency key tells).
	CreateCallback(ctx context.Context, r *CallbackRequest) (cb *Callback, created bool, err error)
	// Callback returns one callback of an account with its legs, history
	// and CDR ids. ENOTFOUND.
	Callback(ctx context.Context, accountID, id string) (*Callback, error)
	// Callbacks lists an account's callbacks, newest first, and the cursor
	// of the next page ("" at the end). EINVALID.
	Callbacks(ctx context.Context, accountID string, f CallbackFilter) ([]*Callback, string, error)
	// CancelCallback fails a queued callback with ReasonCancelled at once,
	// or records that a live one must be hung up, and returns it. A
	// callback that already ended is returned unchanged. ENOTFOUND.
	CancelCallback(ctx context.Context, accountID, id string) (*Callback, error)
}

// HangupReason maps a FreeSWITCH hangup cause of a leg that failed before
// it was answered to the callback's failure reason. Causes that mean the
// far end was busy, did not answer, or refused (or does not exist) map to
// the leg's busy, no-answer or rejected reason; causes that mean our node,
// gateway or network could not place the call map to node_unavailable.
// Unknown causes count as rejected: the far end was not reached.
func HangupReason(leg, cause string) FailReason {
	pick := func(a, b FailReason) FailReason {
		if leg == LegB {
			return b
		}
		return a
	}
	switch causeClass[cause] {
	case classBusy:
		return pick(ReasonABusy, ReasonBBusy)
	case classNoAnswer:
		return pick(ReasonANoAnswer, ReasonBNoAnswer)
	case classNode:
		return ReasonNodeUnavailable
	case classMaxDuration:
		return ReasonMaxDuration
	}
	return pick(ReasonARejected, ReasonBRejected)
}

type causeKind int

const (
	classRejected causeKind = iota
	classBusy
	classNoAnswer
	classNode
	classMaxDuration
)

// causeClass classifies FreeSWITCH's hangup causes (switch_call_cause_t in
// FreeSWITCH 1.10). Causes absent here are rejections.
var causeClass = map[string]causeKind{
	"USER_BUSY":       classBusy,
	"BUSY_EVERYWHERE": classBusy,

	"NO_ANSWER":                classNoAnswer,
	"NO_USER_RESPONSE":         classNoAnswer,
	"ORIGINATOR_CANCEL":        classNoAnswer, // originate_timeout expired or the call was cancelled while ringing
	"PROGRESS_TIMEOUT":         classNoAnswer,
	"SUBSCRIBER_ABSENT":        classNoAnswer,
	"USER_NOT_REGISTERED":      classNoAnswer,
	"NO_PICKUP":                classNoAnswer,
	"RECOVERY_ON_TIMER_EXPIRE": classNoAnswer,

	"NORMAL_TEMPORARY_FAILURE":  classNode,
	"NORMAL_CIRCUIT_CONGESTION": classNode,
	"SWITCH_CONGESTION":         classNode,
	"NETWORK_OUT_OF_ORDER":      classNode,
	"DESTINATION_OUT_OF_ORDER":  classNode,
	"REQUESTED_CHAN_UNAVAIL":    classNode,
	"GATEWAY_DOWN":              classNode,
	"INVALID_GATEWAY":           classNode,
	"INVALID_PROFILE":           classNode,
	"INVALID_URL":               classNode,
	"CHAN_NOT_IMPLEMENTED":      classNode,
	"SYSTEM_SHUTDOWN":           classNode,
	"CRASH":                     classNode,
	"MEDIA_TIMEOUT":             classNode,
	"SRTP_READ_ERROR":           classNode,
	"EXCHANGE_ROUTING_ERROR":    classNode,
	"INTERWORKING":              classNode,

	"ALLOTTED_TIMEOUT": classMaxDuration,
}

// RetryPolicy is an account's policy for leg-A failures: when A is busy or
// does not answer, the callback is queued again after Delay, up to
// Attempts extra times.
type RetryPolicy struct {
	Attempts int           // extra attempts, 0 to 5
	Delay    time.Duration // between attempts, 10 s to 1 h
}

// Retries reports whether reason is one RetryPolicy applies to.
func (reason FailReason) Retries() bool {
	return reason == ReasonABusy || reason == ReasonANoAnswer
}

// CallbackUpdate is one step a callback worker persists, atomically: a
// leg's facts, history entries, and optionally a status change (with its
// history entry and webhook). It applies only while Owner holds the
// callback's lease and the callback has not ended.
type CallbackUpdate struct {
	ID    string
	Owner string
	// Status, when set, is the new status; Reason goes with failed.
	Status CallbackStatus
	Reason FailReason
	// Detail explains the status change in the history.
	Detail string
	// Node, when set, records the node the attempt runs on.
	Node string
	// Leg, when set, records facts about one leg; zero times and an empty
	// cause leave what is stored, and facts already stored are kept.
	Leg *LegUpdate
	// Events are history entries written before the status entry.
	Events []CallbackEvent
	// RunAt, with Status queued, is when the next attempt may start; the
	// attempt counter is incremented and the lease released.
	RunAt time.Time
}

// LegUpdate is what a worker learned about one leg.
type LegUpdate struct {
	Leg      string
	Attempt  int
	UUID     string
	Node     string
	Number   Number
	CallerID Number
	Ringing  time.Time
	Answered time.Time
	Hangup   time.Time
	Cause    string
	// Gateway is the route plan's gateway of this placement (empty: the
	// single configured gateway).
	Gateway string
	// Replaces says the leg is placed again, with a new UUID, under the
	// same attempt, because the node refused the previous placement
	// before anything rang: the leg's record is reset to the new one (the
	// refused placement stays in the history and in its own CDR).
	Replaces bool
}
