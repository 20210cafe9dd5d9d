package routing

import (
	"slices"
	"strings"

	"callbridge"
)

// Verdict is what an attempt's end says about what to do next.
type Verdict uint8

// Verdicts.
const (
	// Stop: the attempt ended for a reason that is not the carrier's
	// (the person called is busy, did not answer, refused, does not
	// exist, or the call was answered): do not try another gateway.
	Stop Verdict = iota
	// Failover: the carrier could not carry the call; try the next
	// gateway. It counts as a carrier failure for the gateway's Breaker.
	Failover
)

// String returns "stop" or "failover".
func (v Verdict) String() string {
	if v == Failover {
		return "failover"
	}
	return "stop"
}

// DefaultFailoverCauses are the FreeSWITCH hangup causes that mean the
// carrier could not carry the call.
var DefaultFailoverCauses = []string{
	"NORMAL_TEMPORARY_FAILURE",
	"GATEWAY_DOWN",
	"NO_ROUTE_DESTINATION",
	"RECOVERY_ON_TIMER_EXPIRE",
	"DESTINATION_OUT_OF_ORDER",
}

// DefaultFailoverSIPCodes are the carrier's SIP final responses that mean
// it could not carry the call: 503 Service Unavailable and 408 Request
// Timeout.
var DefaultFailoverSIPCodes = []int{503, 408}

// calleeCauses are the hangup causes that speak about the person called.
// No configuration can make them fail over: trying another carrier would
// ring a busy or absent person again, or call a number that does not
// exist through every carrier.
var calleeCauses = []string{
	"USER_BUSY",
	"NO_ANSWER",
	"CALL_REJECTED",
	"UNALLOCATED_NUMBER",
	"NO_USER_RESPONSE",
	"BUSY_EVERYWHERE",
	"SUBSCRIBER_ABSENT",
	"USER_NOT_REGISTERED",
	"NUMBER_CHANGED",
	"INVALID_NUMBER_FORMAT",
	"ORIGINATOR_CANCEL",
	"NORMAL_CLEARING",
	"NO_PICKUP",
	"PROGRESS_TIMEOUT",
	"ALLOTTED_TIMEOUT",
}

// calleeSIPCodes are final responses about the person called: busy (486,
// 600), decline (603, 607), not found (404, 604), gone (410), temporarily
// unavailable (480), cancelled (487), address incomplete (484).
var calleeSIPCodes = []int{404, 410, 480, 484, 486, 487, 600, 603, 604, 607}

// Policy decides, from how an attempt ended, whether to fail over. The
// zero value is not usable; NewPolicy builds one.
type Policy struct {
	causes   []string
	sipCodes []int
}

// NewPolicy returns the policy that fails over on causes (FreeSWITCH
// hangup cause names) and sipCodes (the carrier's SIP final responses);
// an empty list means its default. It refuses, as an EINVALID
// *callbridge.Error naming failover_causes or failover_sip_codes, a name
// that is not an upper-case cause, a code outside 400 to 699, and any
// cause or code about the person called (USER_BUSY, NO_ANSWER,
// CALL_REJECTED, UNALLOCATED_NUMBER, 486, 603...): those never fail over.
func NewPolicy(causes []string, sipCodes []int) (*Policy, error) {
	if len(causes) == 0 {
		causes = DefaultFailoverCauses
	}
	if len(sipCodes) == 0 {
		sipCodes = DefaultFailoverSIPCodes
	}
	if len(causes) > 64 {
		return nil, callbridge.FieldError("failover_causes", "at most 64 causes")
	}
	if len(sipCodes) > 64 {
		return nil, callbridge.FieldError("failover_sip_codes", "at most 64 codes")
	}
	for _, c := range causes {
		if !isCauseName(c) {
			return nil, callbridge.FieldError("failover_causes", "%q is not a hangup cause name (upper-case letters, digits and '_')", c)
		}
		if slices.Contains(calleeCauses, c) {
			return nil, callbridge.FieldError("failover_causes", "%s is an answer about the person called; it never fails over", c)
		}
	}
	for _, code := range sipCodes {
		if code < 400 || code > 699 {
			return nil, callbridge.FieldError("failover_sip_codes", "%d is not a SIP failure response (400 to 699)", code)
		}
		if slices.Contains(calleeSIPCodes, code) {
			return nil, callbridge.FieldError("failover_sip_codes", "%d is an answer about the person called; it never fails over", code)
		}
	}
	return &Policy{causes: slices.Clone(causes), sipCodes: slices.Clone(sipCodes)}, nil
}

func isCauseName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Causes returns the hangup causes the policy fails over on, for a
// dialplan's continue_on_fail.
func (p *Policy) Causes() []string { return slices.Clone(p.causes) }

// SIPCodes returns the SIP responses the policy fails over on.
func (p *Policy) SIPCodes() []int { return slices.Clone(p.sipCodes) }

// Classify says whether a leg that ended with the FreeSWITCH hangup cause
// and, when the carrier sent one, its SIP final response (sip_term_status;
// 0 when there was none) should be tried on the next gateway.
//
// An answer about the person called, by cause or by SIP code, always
// stops. Otherwise the SIP code decides when it is one of the policy's;
// then the cause. Anything else stops: a failure the policy does not
// name is not retried elsewhere.
func (p *Policy) Classify(cause string, sipCode int) Verdict {
	cause = strings.ToUpper(strings.TrimSpace(cause))
	if slices.Contains(calleeCauses, cause) || slices.Contains(calleeSIPCodes, sipCode) {
		return Stop
	}
	if sipCode != 0 && slices.Contains(p.sipCodes, sipCode) {
		return Failover
	}
	if slices.Contains(p.causes, cause) {
		return Failover
	}
	return Stop
}
