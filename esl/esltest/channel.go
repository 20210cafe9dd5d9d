package esltest

import (
	"strconv"
	"strings"
	"time"
)

// Channel states (switch_channel_state_t) and their numbers.
var stateNumber = map[string]int{
	"CS_NEW": 0, "CS_INIT": 1, "CS_ROUTING": 2, "CS_SOFT_EXECUTE": 3, "CS_EXECUTE": 4,
	"CS_EXCHANGE_MEDIA": 5, "CS_PARK": 6, "CS_CONSUME_MEDIA": 7, "CS_HIBERNATE": 8,
	"CS_RESET": 9, "CS_HANGUP": 10, "CS_REPORTING": 11, "CS_DESTROY": 12, "CS_NONE": 13,
}

// Call states (switch_channel_callstate_t) and their numbers.
var callStateNumber = map[string]int{
	"DOWN": 0, "DIALING": 1, "RINGING": 2, "EARLY": 3, "ACTIVE": 4, "HELD": 5,
	"RING_WAIT": 6, "HANGUP": 7, "UNHELD": 8,
}

// causeCode maps hangup cause names to their numbers (Q.850 where defined).
var causeCode = map[string]int{
	"UNSPECIFIED": 0, "UNALLOCATED_NUMBER": 1, "NO_ROUTE_TRANSIT_NET": 2, "NO_ROUTE_DESTINATION": 3,
	"CHANNEL_UNACCEPTABLE": 6, "CALL_AWARDED_DELIVERED": 7, "NORMAL_CLEARING": 16, "USER_BUSY": 17,
	"NO_USER_RESPONSE": 18, "NO_ANSWER": 19, "SUBSCRIBER_ABSENT": 20, "CALL_REJECTED": 21,
	"NUMBER_CHANGED": 22, "REDIRECTION_TO_NEW_DESTINATION": 23, "EXCHANGE_ROUTING_ERROR": 25,
	"DESTINATION_OUT_OF_ORDER": 27, "INVALID_NUMBER_FORMAT": 28, "FACILITY_REJECTED": 29,
	"RESPONSE_TO_STATUS_ENQUIRY": 30, "NORMAL_UNSPECIFIED": 31, "NORMAL_CIRCUIT_CONGESTION": 34,
	"NETWORK_OUT_OF_ORDER": 38, "NORMAL_TEMPORARY_FAILURE": 41, "SWITCH_CONGESTION": 42,
	"ACCESS_INFO_DISCARDED": 43, "REQUESTED_CHAN_UNAVAIL": 44, "PRE_EMPTED": 45,
	"FACILITY_NOT_SUBSCRIBED": 50, "OUTGOING_CALL_BARRED": 52, "INCOMING_CALL_BARRED": 54,
	"BEARERCAPABILITY_NOTAUTH": 57, "BEARERCAPABILITY_NOTAVAIL": 58, "SERVICE_UNAVAILABLE": 63,
	"BEARERCAPABILITY_NOTIMPL": 65, "CHAN_NOT_IMPLEMENTED": 66, "FACILITY_NOT_IMPLEMENTED": 69,
	"SERVICE_NOT_IMPLEMENTED": 79, "INVALID_CALL_REFERENCE": 81, "INCOMPATIBLE_DESTINATION": 88,
	"INVALID_MSG_UNSPECIFIED": 95, "MANDATORY_IE_MISSING": 96, "MESSAGE_TYPE_NONEXIST": 97,
	"WRONG_MESSAGE": 98, "IE_NONEXIST": 99, "INVALID_IE_CONTENTS": 100, "WRONG_CALL_STATE": 101,
	"RECOVERY_ON_TIMER_EXPIRE": 102, "MANDATORY_IE_LENGTH_ERROR": 103, "PROTOCOL_ERROR": 111,
	"INTERWORKING": 127, "SUCCESS": 142, "ORIGINATOR_CANCEL": 487, "CRASH": 500,
	"SYSTEM_SHUTDOWN": 501, "LOSE_RACE": 502, "MANAGER_REQUEST": 503, "BLIND_TRANSFER": 600,
	"ATTENDED_TRANSFER": 601, "ALLOTTED_TIMEOUT": 602, "USER_CHALLENGE": 603, "MEDIA_TIMEOUT": 604,
	"PICKED_OFF": 605, "USER_NOT_REGISTERED": 606, "PROGRESS_TIMEOUT": 607, "INVALID_GATEWAY": 608,
	"GATEWAY_DOWN": 609, "INVALID_URL": 610, "INVALID_PROFILE": 611, "NO_PICKUP": 612,
	"SRTP_READ_ERROR": 613,
}

// q850 is switch_channel_cause_q850: FreeSWITCH's own causes above 127
// (ALLOTTED_TIMEOUT, ORIGINATOR_CANCEL...) report Q.850 16.
func q850(cause string) int {
	if c := causeCode[cause]; c <= 127 {
		return c
	}
	return causeCode["NORMAL_CLEARING"]
}

// normalizeCause turns a cause given by a client (name in any case, or a
// number) into a cause name; unknown values become NORMAL_CLEARING as in
// switch_channel_str2cause's callers.
func normalizeCause(s string) string {
	if s == "" {
		return "NORMAL_CLEARING"
	}
	u := strings.ToUpper(s)
	if _, ok := causeCode[u]; ok {
		return u
	}
	if n, err := strconv.Atoi(s); err == nil {
		for name, code := range causeCode {
			if code == n {
				return name
			}
		}
	}
	return "NORMAL_CLEARING"
}

// vars is an ordered set of channel variables. Setting a variable moves it
// to the end, as switch_channel_set_variable does.
type vars struct {
	keys []string
	m    map[string]string
}

func (v *vars) set(k, val string) {
	if v.m == nil {
		v.m = map[string]string{}
	}
	if _, ok := v.m[k]; ok {
		v.del(k)
	}
	v.keys = append(v.keys, k)
	v.m[k] = val
}

func (v *vars) setIfAbsent(k, val string) {
	if _, ok := v.m[k]; !ok {
		v.set(k, val)
	}
}

func (v *vars) del(k string) {
	if _, ok := v.m[k]; !ok {
		return
	}
	delete(v.m, k)
	for i, key := range v.keys {
		if key == k {
			v.keys = append(v.keys[:i:i], v.keys[i+1:]...)
			break
		}
	}
}

func (v *vars) get(k string) string { return v.m[k] }

// profile is a caller profile (switch_caller_profile_t) with its times.
type profile struct {
	direction, logicalDirection string
	username, dialplan          string
	cidName, cidNumber          string
	origCIDName, origCIDNumber  string
	calleeName, calleeNumber    string
	networkAddr, ani            string
	destination                 string
	source, transferSource      string
	context, channelName        string
	index                       int
	created                     time.Time // profile created
}

// channel is one simulated FreeSWITCH channel (leg). All fields are guarded
// by Server.mu.
type channel struct {
	// schedAt and schedCause are the hangup sched_hangup set (zero: none).
	schedAt    time.Time
	schedCause string

	uuid        string
	name        string
	direction   string // "inbound" or "outbound"
	running     string // Channel-State (the running state)
	stateNum    int    // Channel-State-Number (the state already set)
	callState   string
	answerState string // ringing, early, answered, hangup
	hitDialplan bool
	codec       bool // media negotiated: codec headers present
	sessionID   int

	prof profile
	v    vars

	created, progress, progressMedia, answered, bridgedAt, hungup time.Time

	hangupCause string
	app, appArg string // application being executed
	appUUID     string

	other     *channel // bridged or originating partner
	otherProf *profile // originator's profile as cloned at originate (B legs)
	otherType string   // "originator" or "originatee"
	role      string   // "originator" (holds the bridge) or "originatee"

	destNumber string // the number the far end is simulated for
	rule       Rule
	shadow     bool // only a CHANNEL_DESTROY was emitted (invalid profile)
	bare       bool // no caller profile yet (CS_NEW of an inbound leg)

	killCh   chan struct{}
	killed   bool
	killCaus string
	killDisp string
	done     chan struct{}
	answerCh chan struct{} // closed on answer
	recs     []string      // active uuid_record paths
}

// withVars lists the events FreeSWITCH fills with every channel variable.
var withVars = map[string]bool{
	"CHANNEL_CREATE": true, "CHANNEL_ORIGINATE": true, "CHANNEL_PROGRESS": true,
	"CHANNEL_PROGRESS_MEDIA": true, "CHANNEL_ANSWER": true, "CHANNEL_EXECUTE": true,
	"CHANNEL_EXECUTE_COMPLETE": true, "CHANNEL_PARK": true, "CHANNEL_UNPARK": true,
	"CHANNEL_BRIDGE": true, "CHANNEL_UNBRIDGE": true, "CHANNEL_HANGUP": true,
	"CHANNEL_HANGUP_COMPLETE": true, "CHANNEL_DESTROY": true, "CALL_UPDATE": true,
	"PLAYBACK_START": true, "PLAYBACK_STOP": true, "RECORD_START": true, "RECORD_STOP": true,
}

func usec(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMicro(), 10)
}

func (p *profile) appendTo(e *event, prefix string, ch *channel, withIndex bool) {
	opt := func(name, v string) {
		if v != "" {
			e.add(prefix+name, v)
		}
	}
	e.add(prefix+"Direction", p.direction)
	e.add(prefix+"Logical-Direction", p.logicalDirection)
	opt("Username", p.username)
	opt("Dialplan", p.dialplan)
	opt("Caller-ID-Name", p.cidName)
	opt("Caller-ID-Number", p.cidNumber)
	opt("Orig-Caller-ID-Name", p.origCIDName)
	opt("Orig-Caller-ID-Number", p.origCIDNumber)
	opt("Callee-ID-Name", p.calleeName)
	opt("Callee-ID-Number", p.calleeNumber)
	opt("Network-Addr", p.networkAddr)
	opt("ANI", p.ani)
	opt("Destination-Number", p.destination)
	e.add(prefix+"Unique-ID", ch.uuid)
	opt("Source", p.source)
	opt("Transfer-Source", p.transferSource)
	opt("Context", p.context)
	e.add(prefix+"Channel-Name", ch.name)
	if withIndex {
		e.add(prefix+"Profile-Index", strconv.Itoa(p.index))
	}
	e.add(prefix+"Profile-Created-Time", usec(p.created))
	e.add(prefix+"Channel-Created-Time", usec(ch.created))
	e.add(prefix+"Channel-Answered-Time", usec(ch.answered))
	e.add(prefix+"Channel-Progress-Time", usec(ch.progress))
	e.add(prefix+"Channel-Progress-Media-Time", usec(ch.progressMedia))
	e.add(prefix+"Channel-Hangup-Time", usec(ch.hungup))
	e.add(prefix+"Channel-Transfer-Time", "0")
	e.add(prefix+"Channel-Resurrect-Time", "0")
	e.add(prefix+"Channel-Bridged-Time", usec(ch.bridgedAt))
	e.add(prefix+"Channel-Last-Hold", "0")
	e.add(prefix+"Channel-Hold-Accum", "0")
	e.add(prefix+"Screen-Bit", "true")
	e.add(prefix+"Privacy-Hide-Name", "false")
	e.add(prefix+"Privacy-Hide-Number", "false")
}

// appendChannelData adds what switch_channel_event_set_data adds: the basic
// channel headers, the caller profile, the other leg and (for the events
// that carry them) every variable.
func (ch *channel) appendChannelData(e *event) {
	e.add("Channel-State", ch.running)
	e.add("Channel-Call-State", ch.callState)
	e.add("Channel-State-Number", strconv.Itoa(ch.stateNum))
	e.add("Channel-Name", ch.name)
	e.add("Unique-ID", ch.uuid)
	e.add("Call-Direction", ch.direction)
	e.add("Presence-Call-Direction", ch.direction)
	e.add("Channel-HIT-Dialplan", strconv.FormatBool(ch.hitDialplan))
	e.add("Channel-Call-UUID", ch.uuid)
	e.add("Answer-State", ch.answerState)
	if ch.hangupCause != "" {
		e.add("Hangup-Cause", ch.hangupCause)
	}
	if ch.codec {
		e.add("Channel-Read-Codec-Name", "PCMU")
		e.add("Channel-Read-Codec-Rate", "8000")
		e.add("Channel-Read-Codec-Bit-Rate", "64000")
		e.add("Channel-Write-Codec-Name", "PCMU")
		e.add("Channel-Write-Codec-Rate", "8000")
		e.add("Channel-Write-Codec-Bit-Rate", "64000")
	}
	if !ch.shadow && !ch.bare {
		ch.prof.appendTo(e, "Caller-", ch, true)
		if ch.other != nil && ch.otherType != "" {
			e.add("Other-Type", ch.otherType)
			p := &ch.other.prof
			if ch.otherProf != nil {
				p = ch.otherProf
			}
			p.appendTo(e, "Other-Leg-", ch.other, false)
		}
	}
	if withVars[e.name] {
		for _, k := range ch.v.keys {
			e.add("variable_"+k, ch.v.m[k])
		}
	}
}

// timestamps sets the CDR variables FreeSWITCH computes at hangup
// (switch_channel_set_timestamps), from the simulated times.
func (ch *channel) timestamps() {
	stamp := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }
	epoch := func(t time.Time) string {
		if t.IsZero() {
			return "0"
		}
		return strconv.FormatInt(t.Unix(), 10)
	}
	v := &ch.v
	v.set("hangup_cause", ch.hangupCause)
	v.set("hangup_cause_q850", strconv.Itoa(q850(ch.hangupCause)))
	v.set("digits_dialed", "none")
	v.set("start_stamp", stamp(ch.created))
	v.set("profile_start_stamp", stamp(ch.prof.created))
	if !ch.answered.IsZero() {
		v.set("answer_stamp", stamp(ch.answered))
	}
	if !ch.bridgedAt.IsZero() {
		v.set("bridge_stamp", stamp(ch.bridgedAt))
	}
	if !ch.progress.IsZero() {
		v.set("progress_stamp", stamp(ch.progress))
	}
	if !ch.progressMedia.IsZero() {
		v.set("progress_media_stamp", stamp(ch.progressMedia))
	}
	v.set("end_stamp", stamp(ch.hungup))
	v.set("start_epoch", epoch(ch.created))
	v.set("start_uepoch", usec(ch.created))
	v.set("profile_start_epoch", epoch(ch.prof.created))
	v.set("profile_start_uepoch", usec(ch.prof.created))
	v.set("answer_epoch", epoch(ch.answered))
	v.set("answer_uepoch", usec(ch.answered))
	v.set("bridge_epoch", epoch(ch.bridgedAt))
	v.set("bridge_uepoch", usec(ch.bridgedAt))
	v.set("last_hold_epoch", "0")
	v.set("last_hold_uepoch", "0")
	v.set("hold_accum_seconds", "0")
	v.set("hold_accum_usec", "0")
	v.set("hold_accum_ms", "0")
	v.set("resurrect_epoch", "0")
	v.set("resurrect_uepoch", "0")
	v.set("progress_epoch", epoch(ch.progress))
	v.set("progress_uepoch", usec(ch.progress))
	v.set("progress_media_epoch", epoch(ch.progressMedia))
	v.set("progress_media_uepoch", usec(ch.progressMedia))
	v.set("end_epoch", epoch(ch.hungup))
	v.set("end_uepoch", usec(ch.hungup))
	if ch.app != "" || ch.v.get("current_application") != "" {
		app := ch.v.get("current_application")
		v.set("last_app", app)
		if arg := ch.v.get("current_application_data"); arg != "" {
			v.set("last_arg", arg)
		}
	}
	v.set("caller_id", `"`+ch.prof.cidName+`" <`+ch.prof.cidNumber+`>`)

	// Durations, as switch_channel_set_timestamps: each in s, ms and us.
	since := func(from, to time.Time) time.Duration {
		if from.IsZero() || to.IsZero() {
			return 0
		}
		return to.Sub(from)
	}
	duration := since(ch.created, ch.hungup)
	bill := since(ch.answered, ch.hungup)
	progress := since(ch.created, ch.progress)
	answer := since(ch.created, ch.answered)
	wait := since(ch.created, ch.bridgedAt)
	progressMedia := since(ch.created, ch.progressMedia)
	type d struct {
		name string
		v    time.Duration
	}
	all := []d{{"duration", duration}, {"billsec", bill}, {"progresssec", progress}, {"answersec", answer}, {"waitsec", wait}, {"progress_mediasec", progressMedia}, {"flow_billsec", bill}}
	for _, x := range all {
		v.set(x.name, strconv.FormatInt(int64(x.v/time.Second), 10))
	}
	msNames := []string{"mduration", "billmsec", "progressmsec", "answermsec", "waitmsec", "progress_mediamsec", "flow_billmsec"}
	for i, x := range all {
		v.set(msNames[i], strconv.FormatInt(x.v.Milliseconds(), 10))
	}
	usNames := []string{"uduration", "billusec", "progressusec", "answerusec", "waitusec", "progress_mediausec", "flow_billusec"}
	for i, x := range all {
		v.set(usNames[i], strconv.FormatInt(x.v.Microseconds(), 10))
	}
}

// ChannelInfo describes a live channel for tests.
type ChannelInfo struct {
	UUID        string
	Name        string
	Direction   string // "inbound" or "outbound"
	State       string // Channel-State, e.g. CS_EXECUTE
	CallState   string // DOWN, RINGING, EARLY, ACTIVE, HANGUP
	CallerID    string
	Destination string
	Application string
	BridgedTo   string // UUID of the bridged leg, "" if none
	Created     time.Time
	Answered    time.Time // zero if not answered
	Variables   map[string]string
}

func (ch *channel) info() ChannelInfo {
	ci := ChannelInfo{
		UUID: ch.uuid, Name: ch.name, Direction: ch.direction, State: ch.running,
		CallState: ch.callState, CallerID: ch.prof.cidNumber, Destination: ch.prof.destination,
		Application: ch.app, Created: ch.created, Answered: ch.answered,
		Variables: make(map[string]string, len(ch.v.m)),
	}
	if ch.other != nil && !ch.bridgedAt.IsZero() {
		ci.BridgedTo = ch.other.uuid
	}
	for k, v := range ch.v.m {
		ci.Variables[k] = v
	}
	return ci
}
