package dialplan

import (
	"errors"
	"fmt"
	"strings"

	"callbridge"
)

// MaxGateways is the most gateways one bridge tries.
const MaxGateways = 10

// Failover returns d routed through gateways, tried in that order: the
// next is tried only when the previous one failed with one of causes
// (FreeSWITCH hang-up cause names such as NORMAL_TEMPORARY_FAILURE); on
// any other cause (USER_BUSY, NO_ANSWER...) the call ends with it. A
// refusal is returned unchanged. Render checks the gateways (1 to
// MaxGateways, each a valid gateway name, no repeats) and the causes
// (known to FreeSWITCH, not repeated, at least one when there are two
// gateways or more), and refuses to render otherwise.
//
// The bridge is FreeSWITCH's sequential bridge: one dial string per
// gateway joined with "|", each with its own variables naming the gateway
// and the attempt's number (callbridge.VarGateway, callbridge.VarAttempt),
// and fail_on_single_reject set to "!" and the causes, so that a failure
// with any other cause stops the sequence. switch_ivr_originate.c (1.10)
// checks it after each dial string of a "|" list fails: the leg's cause
// name is looked up in the value (switch_stristr), "!" negates, and a
// hit ends the whole originate with that cause. The value's commas are
// protected by single quotes, which the "{...}" parser (switch_separate_
// string) honours as FreeSWITCH's "^^" delimiter syntax would.
// A DOWN gateway is passed over only when GATEWAY_DOWN is among causes.
// continue_on_fail does not govern "|" (checked on FreeSWITCH 1.10.12: with
// continue_on_fail listing only carrier causes, a 486 from the callee on
// the first gateway still went on to the second, and the caller heard the
// second's 503); it stays false, so the call ends with the last attempt's
// cause, as a call through one gateway does.
func (d Decision) Failover(gateways []string, causes []string) Decision {
	if !d.Routed() {
		return d
	}
	d.Gateways = gateways
	d.FailoverCauses = causes
	if len(gateways) > 0 {
		d.Gateway = gateways[0]
	}
	return d
}

// fsCauses are the hang-up cause names of FreeSWITCH 1.10
// (CAUSE_CHART in src/switch_channel.c).
var fsCauses = []string{
	"NONE", "UNALLOCATED_NUMBER", "NO_ROUTE_TRANSIT_NET", "NO_ROUTE_DESTINATION",
	"CHANNEL_UNACCEPTABLE", "CALL_AWARDED_DELIVERED", "NORMAL_CLEARING", "USER_BUSY",
	"NO_USER_RESPONSE", "NO_ANSWER", "SUBSCRIBER_ABSENT", "CALL_REJECTED", "NUMBER_CHANGED",
	"REDIRECTION_TO_NEW_DESTINATION", "EXCHANGE_ROUTING_ERROR", "DESTINATION_OUT_OF_ORDER",
	"INVALID_NUMBER_FORMAT", "FACILITY_REJECTED", "RESPONSE_TO_STATUS_ENQUIRY",
	"NORMAL_UNSPECIFIED", "NORMAL_CIRCUIT_CONGESTION", "NETWORK_OUT_OF_ORDER",
	"NORMAL_TEMPORARY_FAILURE", "SWITCH_CONGESTION", "ACCESS_INFO_DISCARDED",
	"REQUESTED_CHAN_UNAVAIL", "PRE_EMPTED", "FACILITY_NOT_SUBSCRIBED", "OUTGOING_CALL_BARRED",
	"INCOMING_CALL_BARRED", "BEARERCAPABILITY_NOTAUTH", "BEARERCAPABILITY_NOTAVAIL",
	"SERVICE_UNAVAILABLE", "BEARERCAPABILITY_NOTIMPL", "CHAN_NOT_IMPLEMENTED",
	"FACILITY_NOT_IMPLEMENTED", "SERVICE_NOT_IMPLEMENTED", "INVALID_CALL_REFERENCE",
	"INCOMPATIBLE_DESTINATION", "INVALID_MSG_UNSPECIFIED", "MANDATORY_IE_MISSING",
	"MESSAGE_TYPE_NONEXIST", "WRONG_MESSAGE", "IE_NONEXIST", "INVALID_IE_CONTENTS",
	"WRONG_CALL_STATE", "RECOVERY_ON_TIMER_EXPIRE", "MANDATORY_IE_LENGTH_ERROR",
	"PROTOCOL_ERROR", "INTERWORKING", "SUCCESS", "ORIGINATOR_CANCEL", "CRASH",
	"SYSTEM_SHUTDOWN", "LOSE_RACE", "MANAGER_REQUEST", "BLIND_TRANSFER", "ATTENDED_TRANSFER",
	"ALLOTTED_TIMEOUT", "USER_CHALLENGE", "MEDIA_TIMEOUT", "PICKED_OFF", "USER_NOT_REGISTERED",
	"PROGRESS_TIMEOUT", "INVALID_GATEWAY", "GATEWAY_DOWN", "INVALID_URL", "INVALID_PROFILE",
	"NO_PICKUP", "UNKNOWN",
}

// IsCause reports whether s is a hang-up cause name FreeSWITCH 1.10
// knows (CAUSE_CHART in src/switch_channel.c), which a failover may name.
func IsCause(s string) bool { return contains(fsCauses, s) }

// checkFailover validates d's gateways and failover causes.
func checkFailover(d Decision) error {
	if len(d.Gateways) == 0 {
		if len(d.FailoverCauses) > 0 {
			return errors.New("dialplan: failover causes without gateways")
		}
		return nil
	}
	if len(d.Gateways) > MaxGateways {
		return fmt.Errorf("dialplan: %d gateways, at most %d", len(d.Gateways), MaxGateways)
	}
	if d.Gateway != d.Gateways[0] {
		return errors.New("dialplan: gateway is not the first of the failover gateways")
	}
	for i, g := range d.Gateways {
		if err := callbridge.ValidateGateway(g); err != nil {
			return fmt.Errorf("dialplan: failover: %w", err)
		}
		for _, h := range d.Gateways[:i] {
			if g == h {
				return fmt.Errorf("dialplan: gateway %s is tried twice", g)
			}
		}
	}
	if len(d.Gateways) > 1 && len(d.FailoverCauses) == 0 {
		return errors.New("dialplan: several gateways but no failover cause")
	}
	for i, c := range d.FailoverCauses {
		known := false
		for _, k := range fsCauses {
			if c == k {
				known = true
				break
			}
		}
		if !known {
			return fmt.Errorf("dialplan: failover cause %q is not a FreeSWITCH hang-up cause", c)
		}
		for _, prev := range d.FailoverCauses[:i] {
			if c == prev {
				return fmt.Errorf("dialplan: failover cause %s listed twice", c)
			}
		}
	}
	// FreeSWITCH looks the cause up as a substring of the list
	// (switch_stristr in switch_ivr_originate.c): no other cause may be
	// found in it, or that cause would fail over too.
	list := failOnSingleReject(d.FailoverCauses)
	for _, k := range fsCauses {
		if strings.Contains(list, k) && !contains(d.FailoverCauses, k) {
			return fmt.Errorf("dialplan: failover causes %v contain cause %s, which FreeSWITCH would fail over on too", d.FailoverCauses, k)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// failOnSingleReject is the value of fail_on_single_reject that stops a
// sequential bridge on every cause but causes.
func failOnSingleReject(causes []string) string {
	return "!" + strings.Join(causes, ",")
}

// failoverVars returns the dial-string variable that stops a sequential
// bridge on every cause but the failover causes, "" for one gateway. It
// comes before the CDR hook's execute_on_originate, whose text holds
// quotes that only FreeSWITCH's expansion of the calling leg's variables
// escapes.
func failoverVars(d Decision) string {
	if len(d.Gateways) < 2 {
		return ""
	}
	return ",fail_on_single_reject='" + failOnSingleReject(d.FailoverCauses) + "'"
}
