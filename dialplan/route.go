package dialplan

import (
	"time"

	"callbridge"
)

// Reason says why a call was refused.
type Reason string

// Refusal reasons.
const (
	// ReasonUnknownNumber: X is in no account's pool.
	ReasonUnknownNumber Reason = "unknown_number"
	// ReasonNumberDisabled: X is in a pool but disabled.
	ReasonNumberDisabled Reason = "number_disabled"
	// ReasonNoBinding: X has no active binding.
	ReasonNoBinding Reason = "no_binding"
	// ReasonExpired: the binding that would have routed the call expired.
	ReasonExpired Reason = "expired"
	// ReasonNotAParty: X carries AXB bindings, none of which has the caller
	// as a party (or the caller id is withheld).
	ReasonNotAParty Reason = "not_a_party"
	// ReasonInsufficientFunds: the binding would route the call, but X's
	// account is prepaid and its balance cannot pay for it.
	ReasonInsufficientFunds Reason = "insufficient_funds"
	// ReasonNoCarrier: the account's route plan has a route for the
	// target, but every gateway of it is skipped (down, circuit open, at
	// its cap...): no carrier can take the call now.
	ReasonNoCarrier Reason = "no_carrier"
)

// Line is what the controller knows about one virtual number X: its pool
// entry and the bindings that may route it (usually the active ones).
type Line struct {
	X         callbridge.Number
	AccountID string
	Gateway   string
	Enabled   bool
	Bindings  []*callbridge.Binding
}

// Decision is the outcome of Decide: a route when Reason is empty, else a
// refusal.
type Decision struct {
	// Reason is empty for a route.
	Reason Reason
	// X is the number called.
	X callbridge.Number
	// AccountID owns X; empty when X is unknown.
	AccountID string
	// Binding is the binding that routes the call (nil for refusals).
	Binding *callbridge.Binding
	// Direction is one of the callbridge.Direction* values.
	Direction string
	// Target is the number the call is bridged to.
	Target callbridge.Number
	// Present is the caller id the target sees.
	Present callbridge.Number
	// Gateway is the sofia gateway the call leaves through (the first of
	// Gateways when there are several).
	Gateway string
	// Gateways, when not empty, are the gateways the call is tried
	// through, in order; FailoverCauses are the hang-up causes on which
	// the next one is tried. Set both with Failover.
	Gateways       []string
	FailoverCauses []string
	// PostDial, when positive, is the route plan's post-dial budget: the
	// longest the attempts of the call, together, may take before one
	// answers. No attempt rings longer than it (each leg's leg_timeout is
	// the ring timeout or PostDial, whichever is shorter). FreeSWITCH has
	// no timer over a whole sequential bridge (call_timeout,
	// originate_timeout, progress_timeout and leg_timeout restart with
	// every dial string of a "|" list), so with two gateways or more the
	// caller's leg carries one: a sched_hangup with PostDialCause before
	// the bridge, cancelled (sched_cancel) when the call is answered. The
	// caller's hang-up cancels the attempt ringing then (its CDR says
	// ORIGINATOR_CANCEL). Whole seconds, rounded down, at least one;
	// FreeSWITCH's scheduler runs once a second, so the call ends within
	// about a second of it. The plan's MaxAttempts bounds the number of
	// attempts. At most an hour.
	PostDial time.Duration
	// MaxDuration, when positive, caps a route: the call is hung up with
	// ALLOTTED_TIMEOUT this long after it is answered (a prepaid
	// account's grant). Render uses whole seconds, rounded down, at least
	// one.
	MaxDuration time.Duration
}

// Routed reports whether d bridges the call.
func (d Decision) Routed() bool { return d.Reason == "" }

// Refuse turns a decision into a refusal for reason r, keeping the number
// called and its account so the refusal is attributed.
func (d Decision) Refuse(r Reason) Decision {
	return Decision{Reason: r, X: d.X, AccountID: d.AccountID}
}

// Decide routes req on line at now. line is nil when X is unknown. Only
// bindings that are Routable at now count, so a binding routes nothing from
// the instant it expires even if nobody has marked it expired yet.
func Decide(req *Request, line *Line, now time.Time) Decision {
	d := Decision{X: req.Destination}
	if line == nil || line.X != req.Destination {
		d.Reason = ReasonUnknownNumber
		return d
	}
	d.AccountID = line.AccountID
	if !line.Enabled {
		d.Reason = ReasonNumberDisabled
		return d
	}
	d.Gateway = line.Gateway
	var expired bool
	for _, b := range line.Bindings {
		if b.X != line.X || b.Status != callbridge.StatusActive {
			continue
		}
		var dir string
		var target callbridge.Number
		switch b.Mode {
		case callbridge.ModeXB:
			dir, target = callbridge.DirectionAnyToB, b.B
		case callbridge.ModeAXB:
			switch b.Party(req.Caller) {
			case "a":
				dir, target = callbridge.DirectionAToB, b.B
			case "b":
				dir, target = callbridge.DirectionBToA, b.A
			default:
				continue
			}
		default:
			continue
		}
		if !b.Routable(now) {
			expired = true
			continue
		}
		d.Binding, d.Direction, d.Target = b, dir, target
		d.Present = line.X
		if b.Mode == callbridge.ModeAXB && b.CallerDisplay == callbridge.DisplayCaller {
			d.Present = req.Caller
		}
		return d
	}
	switch {
	case expired:
		d.Reason = ReasonExpired
	case hasRoutable(line, callbridge.ModeAXB, now):
		d.Reason = ReasonNotAParty
	default:
		d.Reason = ReasonNoBinding
	}
	d.Gateway = ""
	return d
}

// hasRoutable reports whether line has a routable binding of mode m.
func hasRoutable(line *Line, m callbridge.BindingMode, now time.Time) bool {
	for _, b := range line.Bindings {
		if b.Mode == m && b.Routable(now) {
			return true
		}
	}
	return false
}
