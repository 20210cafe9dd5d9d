package callbridge

import (
	"context"
	"encoding/json"
	"strings"
	"time"
)

// Legs a CDR describes: the values of VarLeg callbridge sets, plus LegPlain
// for a channel it did not tag (a call placed by someone else on the node).
const (
	LegCallbackA = "a"        // the first leg of a callback
	LegCallbackB = "b"        // the second leg of a callback
	LegInbound   = "inbound"  // a caller's leg into a privacy number X
	LegOutbound  = "outbound" // the leg from X to the bound party
	LegPlain     = "plain"    // a channel without callbridge variables
)

// Dispositions: how a leg ended, in words an account understands. They are
// derived from the hangup cause and whether the leg was answered.
const (
	DispositionAnswered  = "answered"
	DispositionBusy      = "busy"
	DispositionNoAnswer  = "no_answer"
	DispositionRejected  = "rejected"
	DispositionCancelled = "cancelled"
	DispositionFailed    = "failed"
)

// Disposition returns the disposition of a leg that ended with the
// FreeSWITCH hangup cause (e.g. "USER_BUSY") and was or was not answered.
// An answered leg is DispositionAnswered whatever its cause.
func Disposition(cause string, answered bool) string {
	if answered {
		return DispositionAnswered
	}
	switch cause {
	case "USER_BUSY":
		return DispositionBusy
	case "NO_ANSWER", "NO_USER_RESPONSE", "ALLOTTED_TIMEOUT", "PROGRESS_TIMEOUT":
		return DispositionNoAnswer
	case "CALL_REJECTED", "USER_CHALLENGE":
		return DispositionRejected
	case "ORIGINATOR_CANCEL", "LOSE_RACE", "PICKED_OFF":
		return DispositionCancelled
	}
	return DispositionFailed
}

// CDRFlags qualify a CDR, mostly how it was priced.
type CDRFlags uint16

// CDR flags. Sell flags concern the account's deck, Buy flags the
// carrier's.
const (
	// CDRUnanswered: the leg was not answered; it costs nothing.
	CDRUnanswered CDRFlags = 1 << iota
	// CDRShort: answered but shorter than the deck's ShortMS; free.
	CDRShort
	// CDRUnratedDefault: no sell rate matched and the deck's default rate
	// priced the leg.
	CDRUnratedDefault
	// CDRUnrated: no sell rate matched and no default applied, or the
	// account has no deck: the leg awaits re-rating.
	CDRUnrated
	// CDRBuyUnratedDefault: the carrier deck's default rate priced the leg.
	CDRBuyUnratedDefault
	// CDRBuyUnrated: the leg left through a gateway whose deck has no
	// matching rate, or the gateway has no deck.
	CDRBuyUnrated
	// CDREstimated: no hangup was received; the sweep closed the leg and
	// priced it by the account's missing-hangup policy (BillingProfile.
	// MissingHangup): at its maximum duration, or until it was found gone.
	CDREstimated
	// CDRMinimum: a minimum charge replaced a smaller sell amount.
	CDRMinimum
	// CDRRerated: the leg was priced again after it was first stored.
	CDRRerated
	// CDRMaxDuration: with CDREstimated, the account's missing-hangup
	// policy was HangupMaxDuration: the leg was charged its maximum
	// duration. CDREstimated alone: policy HangupEstimate.
	CDRMaxDuration
)

var cdrFlagNames = [...]string{
	"unanswered", "short", "unrated_default", "unrated",
	"buy_unrated_default", "buy_unrated", "estimated", "minimum", "rerated",
	"max_duration",
}

// Has reports whether every flag of f is set in fs.
func (fs CDRFlags) Has(f CDRFlags) bool { return fs&f == f }

// Names returns the names of the set flags, in bit order.
func (fs CDRFlags) Names() []string {
	names := []string{}
	for i, n := range cdrFlagNames {
		if fs&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return names
}

// String returns the flag names separated by commas.
func (fs CDRFlags) String() string { return strings.Join(fs.Names(), ",") }

// ParseCDRFlags returns the flags named in names. Unknown names are an
// EINVALID *Error, so a flag cannot be lost on a round trip.
func ParseCDRFlags(names []string) (CDRFlags, error) {
	var fs CDRFlags
next:
	for _, n := range names {
		for i, known := range cdrFlagNames {
			if n == known {
				fs |= 1 << i
				continue next
			}
		}
		return 0, Errorf(EINVALID, "unknown CDR flag %q", n)
	}
	return fs, nil
}

// MarshalJSON writes the flags as a list of names.
func (fs CDRFlags) MarshalJSON() ([]byte, error) { return json.Marshal(fs.Names()) }

// UnmarshalJSON reads a list of flag names.
func (fs *CDRFlags) UnmarshalJSON(b []byte) error {
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return err
	}
	f, err := ParseCDRFlags(names)
	if err != nil {
		return err
	}
	*fs = f
	return nil
}

// CDR is the record of one call leg (one FreeSWITCH channel), priced twice:
// what the account pays (sell) and what the carrier charges (buy). It is
// stored once per channel UUID. Numbers are kept as FreeSWITCH reported
// them (they are not always E.164: "anonymous", extensions); times are UTC
// with microseconds; money is int64 micro-units.
type CDR struct {
	// UUID is the channel's Unique-ID.
	UUID string `json:"uuid"`
	// OtherUUID is the leg it was bridged to (or originated by), if any.
	OtherUUID string `json:"other_uuid,omitempty"`
	// Attempt numbers an outbound leg a route plan's gateway carried (1
	// for the first gateway tried, 2 for the first failover...): the
	// leg's VarAttempt. Every attempt of one leg has the same OtherUUID,
	// the leg it served; only the one that connected is answered and
	// costs anything. 0 for legs no plan routed.
	Attempt int `json:"attempt,omitempty"`
	// Leg is one of the Leg* constants.
	Leg string `json:"leg"`
	// AccountID is the account the leg belongs to; empty for a plain leg.
	AccountID  string `json:"account_id,omitempty"`
	CallbackID string `json:"callback_id,omitempty"`
	BindingID  string `json:"binding_id,omitempty"`
	// Direction is FreeSWITCH's Call-Direction: "inbound" or "outbound".
	Direction string `json:"direction"`
	// Caller is the calling number, Callee the called one (what is rated),
	// Presented the number shown to the called party.
	Caller    string `json:"caller"`
	Callee    string `json:"callee"`
	Presented string `json:"presented"`
	// Gateway is the carrier gateway the leg used; empty for none.
	Gateway string `json:"gateway,omitempty"`
	// Node is the FreeSWITCH node that carried the leg.
	Node     string    `json:"node"`
	StartAt  time.Time `json:"start_at"`
	AnswerAt time.Time `json:"answer_at,omitzero"`
	EndAt    time.Time `json:"end_at"`
	// DurationMS is from creation to hangup (FreeSWITCH mduration);
	// BillMS from answer to hangup (billmsec), what is priced.
	DurationMS int64 `json:"duration_ms"`
	BillMS     int64 `json:"bill_ms"`
	// HangupCause is FreeSWITCH's cause, e.g. NORMAL_CLEARING; Q850 its code.
	HangupCause string `json:"hangup_cause"`
	Q850        int    `json:"q850"`
	Disposition string `json:"disposition"`
	// Sell is what the account is charged, in micro-units of SellCurrency,
	// by version SellDeckVersion of deck SellDeckID, rate SellPrefix.
	Sell            int64  `json:"sell_micros"`
	SellCurrency    string `json:"sell_currency,omitempty"`
	SellDeckID      string `json:"sell_deck_id,omitempty"`
	SellDeckVersion int64  `json:"sell_deck_version,omitempty"`
	SellPrefix      string `json:"sell_prefix,omitempty"`
	// Buy is what the carrier charges for the leg.
	Buy            int64    `json:"buy_micros"`
	BuyCurrency    string   `json:"buy_currency,omitempty"`
	BuyDeckID      string   `json:"buy_deck_id,omitempty"`
	BuyDeckVersion int64    `json:"buy_deck_version,omitempty"`
	BuyPrefix      string   `json:"buy_prefix,omitempty"`
	Flags          CDRFlags `json:"flags"`
	// MaxMS is the longest the leg was allowed to last (VarMaxMS); 0 when
	// unknown. It is not stored.
	MaxMS int64 `json:"-"`
	// PostDialMS is an outbound leg's post-dial delay: from its creation
	// to the far end's first ringing, early media or answer (the earliest
	// of FreeSWITCH's progressmsec, progress_mediamsec and answermsec that
	// is not 0); 0 when none came. It is not stored.
	PostDialMS int64 `json:"-"`
	// Router is the controller that routed the leg through Gateway
	// (VarRouter, when valid), empty when the leg does not name one. It
	// is not stored; the pipeline hands it to Config.OnAttempt.
	Router string `json:"-"`
	// SIPStatus is the far end's final SIP response to an outbound leg
	// (sip_term_status, e.g. 503), 0 when unknown. It is not stored; the
	// pipeline hands it to Config.OnAttempt.
	SIPStatus int `json:"-"`
	// RatedAt is when the prices were computed; CreatedAt when the CDR was
	// stored. Both are set by the store.
	RatedAt   time.Time `json:"rated_at,omitzero"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// Answered reports whether the leg was answered.
func (c *CDR) Answered() bool { return !c.AnswerAt.IsZero() }

// Margin returns Sell minus Buy when both are in the same currency.
func (c *CDR) Margin() (int64, bool) {
	if c.SellCurrency == "" || c.SellCurrency != c.BuyCurrency {
		return 0, false
	}
	return c.Sell - c.Buy, true
}

// LiveChannel is a call leg callbridge believes is up: seen created, not
// yet seen hung up. The sweep closes the ones whose hangup never arrives.
type LiveChannel struct {
	UUID       string    `json:"uuid"`
	Node       string    `json:"node"`
	OtherUUID  string    `json:"other_uuid,omitempty"`
	Leg        string    `json:"leg"`
	AccountID  string    `json:"account_id,omitempty"`
	CallbackID string    `json:"callback_id,omitempty"`
	BindingID  string    `json:"binding_id,omitempty"`
	Direction  string    `json:"direction"`
	Caller     string    `json:"caller"`
	Callee     string    `json:"callee"`
	Presented  string    `json:"presented"`
	Gateway    string    `json:"gateway,omitempty"`
	StartAt    time.Time `json:"start_at"`
	AnswerAt   time.Time `json:"answer_at,omitzero"`
	// MaxMS is the longest the leg may last; 0 when unknown.
	MaxMS int64 `json:"max_ms"`
	// SeenAt is when the last event about the leg was received.
	SeenAt time.Time `json:"seen_at"`
}

// CDRDeadLetter is a record the pipeline could not store after retrying:
// kept, with why, for an operator, never dropped.
type CDRDeadLetter struct {
	ID int64 `json:"id"`
	// UUID is the channel, when it could be read.
	UUID string `json:"uuid"`
	Node string `json:"node"`
	// Reason is the last error.
	Reason   string `json:"reason"`
	Attempts int    `json:"attempts"`
	// Payload is the record as JSON: the CDR, or the raw event headers of
	// an event that could not be parsed.
	Payload   json.RawMessage `json:"payload"`
	CreatedAt time.Time       `json:"created_at"`
}

// CDRFilter selects an account's CDRs. From is inclusive and To exclusive
// on StartAt; Number matches the caller, callee or presented number.
type CDRFilter struct {
	From       time.Time
	To         time.Time
	Number     string
	BindingID  string
	CallbackID string
	// Cursor is the opaque value returned with the previous page.
	Cursor string
	Limit  int
}

// CDRService reads stored CDRs.
type CDRService interface {
	// CDRs lists an account's CDRs by StartAt, oldest first, and the cursor
	// of the next page ("" at the end). EINVALID for a bad filter or cursor.
	CDRs(ctx context.Context, accountID string, f CDRFilter) ([]*CDR, string, error)
}
