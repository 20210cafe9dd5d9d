package dialplan

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"callbridge"
)

// Refusal is how a refused call ends: an optional announcement, then a
// hang-up with Cause.
type Refusal struct {
	// Cause is the FreeSWITCH hang-up cause, e.g. "UNALLOCATED_NUMBER".
	Cause string
	// Announcement is a sound file played before hanging up; empty for none.
	Announcement string
}

// Options shape the documents Render writes. The zero value is usable:
// see the field comments for the defaults.
type Options struct {
	// RingTimeout is how long the target may ring; 0 means 30 s. Whole
	// seconds, 1 s to 600 s.
	RingTimeout time.Duration
	// RecordDir is the absolute directory, on the FreeSWITCH host,
	// recordings are written under as <RecordDir>/<binding id>/<call
	// uuid>.wav; empty means /var/lib/freeswitch/recordings/callbridge.
	RecordDir string
	// Refusals overrides the refusal of each reason. A reason that is not
	// in the map hangs up without announcement: UNALLOCATED_NUMBER for
	// unknown numbers, missing or expired bindings, CALL_REJECTED for
	// callers who are not a party, OUTGOING_CALL_BARRED (Q.850 cause 52,
	// which FreeSWITCH answers with SIP 403 Forbidden) when the account's
	// prepaid balance cannot pay: the account may not place the outgoing
	// leg, the way prepaid switches bar calls for lack of credit. The
	// callee did not decline anything, so CALL_REJECTED (SIP 603 Decline)
	// would mislead. SERVICE_UNAVAILABLE (SIP 503) when the route plan
	// leaves no carrier to try: the failure is ours and passing, and a
	// 503 lets the caller's carrier try another route to X.
	Refusals map[Reason]Refusal
	// DialPlus dials targets as +E.164 instead of bare digits, for
	// carriers that want it.
	DialPlus bool
	// Router, when set, names this controller (callbridge.RouterName) in
	// the callbridge.VarRouter variable of every leg a route dials, so
	// that only this controller holds the legs' gateway slots. Render
	// refuses a value callbridge.ValidateRouter rejects.
	Router string
}

// DefaultRecordDir is where recordings go when Options.RecordDir is empty.
const DefaultRecordDir = "/var/lib/freeswitch/recordings/callbridge"

// causes are the hang-up causes a refusal may use.
var causes = map[string]bool{
	"UNALLOCATED_NUMBER":   true,
	"CALL_REJECTED":        true,
	"NO_ROUTE_DESTINATION": true,
	"NUMBER_CHANGED":       true,
	"USER_BUSY":            true,
	"SERVICE_UNAVAILABLE":  true,
	"OUTGOING_CALL_BARRED": true,
	"INCOMING_CALL_BARRED": true,
}

// Validate checks o. Every value it lets through is safe inside a
// FreeSWITCH application argument: no '$' (variable expansion), no '{',
// ',' or space (dial-string syntax).
func (o *Options) Validate() error {
	if o.RingTimeout != 0 && (o.RingTimeout < time.Second || o.RingTimeout > 600*time.Second || o.RingTimeout%time.Second != 0) {
		return errors.New("dialplan: ring timeout must be whole seconds from 1 to 600")
	}
	if o.RecordDir != "" && (o.RecordDir[0] != '/' || !isPath(o.RecordDir)) {
		return errors.New("dialplan: record dir must be an absolute path of [A-Za-z0-9/._-]")
	}
	if o.Router != "" {
		if err := callbridge.ValidateRouter(o.Router); err != nil {
			return fmt.Errorf("dialplan: %w", err)
		}
	}
	for r, ref := range o.Refusals {
		if !causes[ref.Cause] {
			return fmt.Errorf("dialplan: refusal %s: unsupported hang-up cause %q", r, ref.Cause)
		}
		if ref.Announcement != "" && !isPath(ref.Announcement) {
			return fmt.Errorf("dialplan: refusal %s: announcement must be a path of [A-Za-z0-9/._-]", r)
		}
	}
	return nil
}

// refusal returns the refusal configured for r.
func (o *Options) refusal(r Reason) Refusal {
	if ref, ok := o.Refusals[r]; ok {
		return ref
	}
	switch r {
	case ReasonNotAParty:
		return Refusal{Cause: "CALL_REJECTED"}
	case ReasonInsufficientFunds:
		return Refusal{Cause: "OUTGOING_CALL_BARRED"}
	case ReasonNoCarrier:
		return Refusal{Cause: "SERVICE_UNAVAILABLE"}
	}
	return Refusal{Cause: "UNALLOCATED_NUMBER"}
}

// isPath reports whether s is 1 to 255 characters of [A-Za-z0-9/._-]
// without "..".
func isPath(s string) bool {
	if len(s) < 1 || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '/' || c == '.' || c == '_' || c == '-') {
			return false
		}
		if c == '.' && i+1 < len(s) && s[i+1] == '.' {
			return false
		}
	}
	return true
}

const (
	xmlHeader   = `<?xml version="1.0" encoding="UTF-8" standalone="no"?>` + "\n"
	notFoundDoc = xmlHeader + `<document type="freeswitch/xml">
  <section name="result">
    <result status="not found"/>
  </section>
</document>
`
)

// NotFound returns the document that tells mod_xml_curl this server has no
// answer, so FreeSWITCH falls back to its static dialplan.
func NotFound() []byte { return []byte(notFoundDoc) }

// AppendNotFound appends the NotFound document to dst.
func AppendNotFound(dst []byte) []byte { return append(dst, notFoundDoc...) }

// Render appends to dst the dialplan document that carries out d for req.
// It fails, leaving dst as it was, when a value it would place in the
// document is not safe (a gateway or binding id from storage that breaks
// the rules, invalid options); callers answer NotFound then.
//
// A route sets the callbridge variables (exported, so they reach the
// outbound leg's CDR too), presents d.Present as caller id name and number
// with privacy flags cleared, keeps the caller's custom SIP headers away
// from the target, optionally records, and bridges through the gateway
// with a ring timeout. A route with a MaxDuration is hung up that long
// after it is answered. A refusal sets the callbridge variables it knows,
// optionally plays an announcement and hangs up with the configured cause.
func Render(dst []byte, req *Request, d Decision, o *Options) ([]byte, error) {
	if err := o.Validate(); err != nil {
		return dst, err
	}
	if !isToken(req.Context, 64) || !callbridge.IsUUID(req.UniqueID) {
		return dst, errors.New("dialplan: request context or uuid is unsafe")
	}
	if err := req.Destination.Validate(); err != nil {
		return dst, fmt.Errorf("dialplan: destination: %w", err)
	}
	if d.AccountID != "" && !isToken(d.AccountID, 64) {
		return dst, errors.New("dialplan: account id is unsafe")
	}
	if d.Routed() {
		if err := checkRoute(d); err != nil {
			return dst, err
		}
	}
	dst = append(dst, xmlHeader...)
	dst = append(dst, `<document type="freeswitch/xml">`+"\n"+`  <section name="dialplan" description="callbridge privacy numbers">`+"\n"+`    <context name="`...)
	dst = appendEscaped(dst, req.Context)
	dst = append(dst, `">`+"\n"+`      <extension name="`...)
	if d.Routed() {
		dst = append(dst, "callbridge-binding-"...)
		dst = appendEscaped(dst, d.Binding.ID)
	} else {
		dst = append(dst, "callbridge-refusal-"...)
		dst = appendEscaped(dst, string(d.Reason))
	}
	dst = append(dst, `">`+"\n"+`        <condition field="destination_number" expression="^`...)
	dst = appendEscaped(dst, regexp.QuoteMeta(req.DestinationRaw))
	dst = append(dst, `$">`+"\n"...)
	dst = appendCDRHook(dst)
	if d.Routed() {
		dst = appendRoute(dst, req, d, o)
	} else {
		dst = appendRefusal(dst, d, o)
	}
	dst = append(dst, "        </condition>\n      </extension>\n    </context>\n  </section>\n</document>\n"...)
	return dst, nil
}

// checkRoute validates every value of a route that comes from storage.
func checkRoute(d Decision) error {
	b := d.Binding
	if b == nil {
		return errors.New("dialplan: route without binding")
	}
	if !callbridge.IsUUID(b.ID) {
		return errors.New("dialplan: binding id is unsafe")
	}
	if err := callbridge.ValidateGateway(d.Gateway); err != nil {
		return fmt.Errorf("dialplan: %w", err)
	}
	if err := checkFailover(d); err != nil {
		return err
	}
	for _, n := range []callbridge.Number{d.X, d.Target, d.Present} {
		if err := n.Validate(); err != nil {
			return fmt.Errorf("dialplan: route number: %w", err)
		}
	}
	switch d.Direction {
	case callbridge.DirectionAToB, callbridge.DirectionBToA, callbridge.DirectionAnyToB:
	default:
		return errors.New("dialplan: unknown direction")
	}
	if d.PostDial < 0 || d.PostDial > time.Hour {
		return errors.New("dialplan: post-dial budget out of range")
	}
	if d.MaxDuration < 0 || d.MaxDuration > 7*24*time.Hour {
		return errors.New("dialplan: max duration out of range")
	}
	if err := callbridge.ValidateExternalID(b.ExternalID); err != nil {
		return fmt.Errorf("dialplan: %w", err)
	}
	return nil
}

// appendCDRHook has FreeSWITCH keep the CDR record of the inbound leg
// (see callbridge.CDRHook) and prepares the variables the hook of the
// bridged leg is built from (callbridge.CDRHookBridgeRef). The data of a
// set action is expanded twice, so "\\\\" stores one backslash.
func appendCDRHook(dst []byte) []byte {
	dst = appendAction(dst, "set", callbridge.VarDollar+"=$")
	dst = appendAction(dst, "set", callbridge.VarBackslash+`=\\\\`)
	return appendAction(dst, "set", "api_reporting_hook="+callbridge.CDRHook(callbridge.CDRHookSetRef))
}

func appendRoute(dst []byte, req *Request, d Decision, o *Options) []byte {
	b := d.Binding
	ring := int(o.RingTimeout / time.Second)
	if ring == 0 {
		ring = 30
	}
	legTimeout := ring
	if d.PostDial > 0 {
		legTimeout = min(legTimeout, postDialSecs(d.PostDial))
	}
	dst = appendAction(dst, "set", callbridge.VarLeg+"=inbound")
	dst = appendAction(dst, "export", callbridge.VarBindingID+"="+b.ID)
	dst = appendAction(dst, "export", callbridge.VarAccount+"="+d.AccountID)
	dst = appendAction(dst, "export", callbridge.VarX+"="+string(d.X))
	dst = appendAction(dst, "export", callbridge.VarDirection+"="+d.Direction)
	if b.ExternalID != "" {
		dst = appendAction(dst, "export", callbridge.VarExternalID+"="+b.ExternalID)
	}
	// The caller's X- headers would tell the target who is calling.
	dst = appendAction(dst, "set", "sip_copy_custom_headers=false")
	dst = appendAction(dst, "set", "hangup_after_bridge=true")
	// A failed bridge ends the call with the target's cause (busy, no
	// answer...), which the caller's carrier then plays, as a direct call
	// would.
	dst = appendAction(dst, "set", "continue_on_fail=false")
	dst = appendAction(dst, "set", "call_timeout="+strconv.Itoa(ring))
	budget := postDialBudget(d)
	if budget > 0 {
		// The budget stops counting when the call is answered: this
		// cancels the channel's scheduler tasks (group: its uuid), the
		// budget's sched_hangup below. FreeSWITCH runs the
		// execute_on_answer* variables in the order they were set
		// (switch_channel_execute_on walks the channel's variables in
		// order), so this one, set first, runs before the prepaid cap's
		// and spares the sched_hangup that cap schedules in the same group.
		dst = appendAction(dst, "set", "execute_on_answer_post_dial=sched_cancel")
	}
	if d.MaxDuration > 0 {
		// The cap counts from the answer, as billing does: execute_on_answer
		// runs when the bridged target answers (which answers this leg);
		// a sched_hangup action before the bridge would count the ringing
		// too. Rounded down so the call is not billed past its grant.
		secs := strconv.FormatInt(max(int64(d.MaxDuration/time.Second), 1), 10)
		dst = appendAction(dst, "export", callbridge.VarMaxMS+"="+strconv.FormatInt(d.MaxDuration.Milliseconds(), 10))
		dst = appendAction(dst, "set", "execute_on_answer=sched_hangup +"+secs+" ALLOTTED_TIMEOUT")
	}
	if b.Record {
		dir := o.RecordDir
		if dir == "" {
			dir = DefaultRecordDir
		}
		dst = appendAction(dst, "set", "RECORD_STEREO=true")
		dst = appendAction(dst, "set", "RECORD_ANSWER_REQ=true")
		dst = appendAction(dst, "record_session", dir+"/"+b.ID+"/"+req.UniqueID+".wav")
	}
	if budget > 0 {
		// The post-dial budget bounds the whole sequential bridge, whose
		// attempts each restart call_timeout and leg_timeout: the caller's
		// leg is hung up NO_ANSWER when it runs out unanswered, which
		// cancels the attempt ringing then (see Decision.PostDial).
		dst = appendAction(dst, "sched_hangup", "+"+strconv.Itoa(budget)+" "+PostDialCause)
	}
	target := string(d.Target)
	if o.DialPlus {
		target = d.Target.E164()
	}
	// origination_caller_id_* set the caller id of the new leg itself (the
	// effective_* variables are ignored inside a dial string);
	// origination_privacy=screen clears hide flags inherited from a caller
	// who withheld their number, so the target still sees X; sip_cid_type=pid
	// puts the same number in P-Asserted-Identity.
	dial := "{origination_caller_id_number=" + string(d.Present) +
		",origination_caller_id_name=" + string(d.Present) +
		",origination_privacy=screen,sip_cid_type=pid" +
		",leg_timeout=" + strconv.Itoa(legTimeout) +
		failoverVars(d) +
		"," + callbridge.VarLeg + "=outbound" +
		"," + callbridge.VarCallee + "=" + string(d.Target) +
		"," + callbridge.VarDollar + "=$" +
		routerVar(o) +
		",execute_on_originate='set api_reporting_hook=" + callbridge.CDRHook(callbridge.CDRHookBridgeRef) + "'"
	if len(d.Gateways) == 0 {
		return appendAction(dst, "bridge", dial+"}sofia/gateway/"+d.Gateway+"/"+target)
	}
	// A route plan's gateways: FreeSWITCH's sequential bridge, stopped by
	// any cause but the failover causes (failoverVars, Failover). Each
	// dial string's own variables ("[...]", which override the shared
	// "{...}" ones on that leg) name its gateway and attempt, so the
	// leg's events and CDR say which attempt it was; both values are
	// checked (checkFailover), never caller input.
	dial += "}"
	for i, g := range d.Gateways {
		if i > 0 {
			dial += "|"
		}
		dial += "[" + callbridge.VarGateway + "=" + g + "," + callbridge.VarAttempt + "=" + strconv.Itoa(i+1) + "]" +
			"sofia/gateway/" + g + "/" + target
	}
	return appendAction(dst, "bridge", dial)
}

// PostDialCause is the hang-up cause of a binding call whose route
// plan's post-dial budget ran out before any attempt answered: the cause
// of an attempt that rang out (a leg_timeout ends a bridge NO_ANSWER), and
// what a callback leg whose budget is spent ends with. The caller hears
// SIP 480 Temporarily Unavailable, unless an earlier attempt ended with
// a SIP status: sofia then answers the caller with that one (the first
// carrier's 503, say), as it does for any failed bridge.
const PostDialCause = "NO_ANSWER"

// postDialSecs is a post-dial budget in whole seconds, rounded down, at
// least one.
func postDialSecs(budget time.Duration) int {
	return max(int(budget/time.Second), 1)
}

// postDialBudget is the seconds after which the caller's leg is hung up
// when no attempt of d's sequential bridge answered, or 0 when nothing
// but each attempt's leg_timeout bounds it: without a budget, or with one
// gateway, whose leg_timeout is the budget already.
func postDialBudget(d Decision) int {
	if d.PostDial <= 0 || len(d.Gateways) < 2 {
		return 0
	}
	return postDialSecs(d.PostDial)
}

// routerVar is the dial string's callbridge.VarRouter variable, checked
// by Render (callbridge.ValidateRouter: no ',', quote, bracket or XML
// character), or nothing without Options.Router.
func routerVar(o *Options) string {
	if o.Router == "" {
		return ""
	}
	return "," + callbridge.VarRouter + "=" + o.Router
}

func appendRefusal(dst []byte, d Decision, o *Options) []byte {
	ref := o.refusal(d.Reason)
	dst = appendAction(dst, "set", callbridge.VarRefusal+"="+string(d.Reason))
	dst = appendAction(dst, "set", callbridge.VarX+"="+string(d.X))
	if d.AccountID != "" {
		dst = appendAction(dst, "set", callbridge.VarAccount+"="+d.AccountID)
	}
	if ref.Announcement != "" {
		dst = appendAction(dst, "playback", ref.Announcement)
	}
	return appendAction(dst, "hangup", ref.Cause)
}

func appendAction(dst []byte, app, data string) []byte {
	dst = append(dst, `          <action application="`...)
	dst = appendEscaped(dst, app)
	dst = append(dst, `" data="`...)
	dst = appendEscaped(dst, data)
	return append(dst, `"/>`+"\n"...)
}

// appendEscaped appends s escaped for an XML attribute value. Bytes that
// XML 1.0 cannot carry at all (control characters, invalid UTF-8) become
// U+FFFD, so the document stays well formed whatever s holds.
func appendEscaped(dst []byte, s string) []byte {
	for _, r := range s {
		switch {
		case r == '&':
			dst = append(dst, "&amp;"...)
		case r == '<':
			dst = append(dst, "&lt;"...)
		case r == '>':
			dst = append(dst, "&gt;"...)
		case r == '"':
			dst = append(dst, "&quot;"...)
		case r == '\'':
			dst = append(dst, "&apos;"...)
		case r == '\t':
			dst = append(dst, "&#x9;"...)
		case r == '\n':
			dst = append(dst, "&#xA;"...)
		case r == '\r':
			dst = append(dst, "&#xD;"...)
		case r < 0x20 || r == 0xFFFE || r == 0xFFFF || (r >= 0xD800 && r <= 0xDFFF):
			dst = append(dst, "\uFFFD"...)
		default:
			dst = append(dst, string(r)...)
		}
	}
	return dst
}
