package call

import (
	"strconv"
	"strings"
	"time"
)

// Channel states (switch_channel_state_t) and their numbers.
var StateNumber = map[string]int{
	"CS_NEW": 0, "CS_INIT": 1, "CS_ROUTING": 2, "CS_SOFT_EXECUTE": 3, "CS_EXECUTE": 4,
	"CS_EXCHANGE_MEDIA": 5, "CS_PARK": 6, "CS_CONSUME_MEDIA": 7, "CS_HIBERNATE": 8,
	"CS_RESET": 9, "CS_HANGUP": 10, "CS_REPORTING": 11, "CS_DESTROY": 12, "CS_NONE": 13,
}

// Call states (switch_channel_callstate_t) and their numbers.
var CallStateNumber = map[string]int{
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

// Q850 is switch_channel_cause_q850: FreeSWITCH's own causes above 127
// (ALLOTTED_TIMEOUT, ORIGINATOR_CANCEL...) report Q.850 16.
func Q850(cause string) int {
	if c := causeCode[cause]; c <= 127 {
		return c
	}
	return causeCode["NORMAL_CLEARING"]
}

// NormalizeCause turns a cause given by a client (name in any case, or a
// number) into a cause name; unknown values become NORMAL_CLEARING as in
// switch_channel_str2cause's callers.
func NormalizeCause(s string) string {
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

// Vars is an ordered set of channel variables. Setting a variable moves it
// to the end, as switch_channel_set_variable does.
type Vars struct {
	Keys   []string
	Values map[string]string
}

func (v *Vars) Set(k, val string) {
	if v.Values == nil {
		v.Values = map[string]string{}
	}
	if _, ok := v.Values[k]; ok {
		v.Del(k)
	}
	v.Keys = append(v.Keys, k)
	v.Values[k] = val
}

func (v *Vars) SetIfAbsent(k, val string) {
	if _, ok := v.Values[k]; !ok {
		v.Set(k, val)
	}
}

func (v *Vars) Del(k string) {
	if _, ok := v.Values[k]; !ok {
		return
	}
	delete(v.Values, k)
	for i, key := range v.Keys {
		if key == k {
			v.Keys = append(v.Keys[:i:i], v.Keys[i+1:]...)
			break
		}
	}
}

func (v *Vars) Get(k string) string { return v.Values[k] }

// Profile is a caller profile (switch_caller_profile_t) with its times.
type Profile struct {
	Direction, LogicalDirection string
	Username, Dialplan          string
	CIDName, CIDNumber          string
	OrigCIDName, OrigCIDNumber  string
	CalleeName, CalleeNumber    string
	NetworkAddr, ANI            string
	Destination                 string
	Source, TransferSource      string
	Context, ChannelName        string
	Index                       int
	Created                     time.Time // profile created
}

// SchedHangup is a hangup FreeSWITCH's scheduler will run
// (switch_ivr_schedule_hangup): at At with Cause, unless its task group
// (the channel's uuid for sched_hangup) is cancelled first.
type SchedHangup struct {
	At     time.Time
	Cause  string
	Group  string
	Cancel func()
}

// Channel is one simulated FreeSWITCH channel (leg), as data: the switch
// that holds it guards every field with its own lock.
type Channel struct {
	// Sched are the hangups sched_hangup scheduled and that neither ran
	// nor were cancelled (sched_cancel), in the order they were set.
	Sched []*SchedHangup

	UUID        string
	Name        string
	Direction   string // "inbound" or "outbound"
	Running     string // Channel-State (the running state)
	StateNum    int    // Channel-State-Number (the state already set)
	CallState   string
	AnswerState string // ringing, early, answered, hangup
	HitDialplan bool
	Codec       bool // media negotiated: codec headers present
	SessionID   int

	Profile Profile
	Vars    Vars

	Created, Progress, ProgressMedia, Answered, BridgedAt, Hungup time.Time

	HangupCause string
	App, AppArg string // application being executed
	AppUUID     string

	Other        *Channel // bridged or originating partner
	OtherProfile *Profile // originator's profile as cloned at originate (B legs)
	OtherType    string   // "originator" or "originatee"
	Role         string   // "originator" (holds the bridge) or "originatee"

	DestNumber string // the number the far end is simulated for
	Rule       Rule
	Shadow     bool // only a CHANNEL_DESTROY was emitted (invalid profile)
	Bare       bool // no caller profile yet (CS_NEW of an inbound leg)

	KillCh    chan struct{}
	Killed    bool
	KillCause string
	KillDisp  string
	Done      chan struct{}
	AnswerCh  chan struct{} // closed on answer
	Recs      []string      // active uuid_record paths
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

func Usec(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMicro(), 10)
}

func (p *Profile) AppendTo(e *Event, prefix string, ch *Channel, withIndex bool) {
	opt := func(name, v string) {
		if v != "" {
			e.Add(prefix+name, v)
		}
	}
	e.Add(prefix+"Direction", p.Direction)
	e.Add(prefix+"Logical-Direction", p.LogicalDirection)
	opt("Username", p.Username)
	opt("Dialplan", p.Dialplan)
	opt("Caller-ID-Name", p.CIDName)
	opt("Caller-ID-Number", p.CIDNumber)
	opt("Orig-Caller-ID-Name", p.OrigCIDName)
	opt("Orig-Caller-ID-Number", p.OrigCIDNumber)
	opt("Callee-ID-Name", p.CalleeName)
	opt("Callee-ID-Number", p.CalleeNumber)
	opt("Network-Addr", p.NetworkAddr)
	opt("ANI", p.ANI)
	opt("Destination-Number", p.Destination)
	e.Add(prefix+"Unique-ID", ch.UUID)
	opt("Source", p.Source)
	opt("Transfer-Source", p.TransferSource)
	opt("Context", p.Context)
	e.Add(prefix+"Channel-Name", ch.Name)
	if withIndex {
		e.Add(prefix+"Profile-Index", strconv.Itoa(p.Index))
	}
	e.Add(prefix+"Profile-Created-Time", Usec(p.Created))
	e.Add(prefix+"Channel-Created-Time", Usec(ch.Created))
	e.Add(prefix+"Channel-Answered-Time", Usec(ch.Answered))
	e.Add(prefix+"Channel-Progress-Time", Usec(ch.Progress))
	e.Add(prefix+"Channel-Progress-Media-Time", Usec(ch.ProgressMedia))
	e.Add(prefix+"Channel-Hangup-Time", Usec(ch.Hungup))
	e.Add(prefix+"Channel-Transfer-Time", "0")
	e.Add(prefix+"Channel-Resurrect-Time", "0")
	e.Add(prefix+"Channel-Bridged-Time", Usec(ch.BridgedAt))
	e.Add(prefix+"Channel-Last-Hold", "0")
	e.Add(prefix+"Channel-Hold-Accum", "0")
	e.Add(prefix+"Screen-Bit", "true")
	e.Add(prefix+"Privacy-Hide-Name", "false")
	e.Add(prefix+"Privacy-Hide-Number", "false")
}

// AppendChannelData adds what switch_channel_event_set_data adds: the basic
// channel headers, the caller profile, the other leg and (for the events
// that carry them) every variable.
func (ch *Channel) AppendChannelData(e *Event) {
	e.Add("Channel-State", ch.Running)
	e.Add("Channel-Call-State", ch.CallState)
	e.Add("Channel-State-Number", strconv.Itoa(ch.StateNum))
	e.Add("Channel-Name", ch.Name)
	e.Add("Unique-ID", ch.UUID)
	e.Add("Call-Direction", ch.Direction)
	e.Add("Presence-Call-Direction", ch.Direction)
	e.Add("Channel-HIT-Dialplan", strconv.FormatBool(ch.HitDialplan))
	e.Add("Channel-Call-UUID", ch.UUID)
	e.Add("Answer-State", ch.AnswerState)
	if ch.HangupCause != "" {
		e.Add("Hangup-Cause", ch.HangupCause)
	}
	if ch.Codec {
		e.Add("Channel-Read-Codec-Name", "PCMU")
		e.Add("Channel-Read-Codec-Rate", "8000")
		e.Add("Channel-Read-Codec-Bit-Rate", "64000")
		e.Add("Channel-Write-Codec-Name", "PCMU")
		e.Add("Channel-Write-Codec-Rate", "8000")
		e.Add("Channel-Write-Codec-Bit-Rate", "64000")
	}
	if !ch.Shadow && !ch.Bare {
		ch.Profile.AppendTo(e, "Caller-", ch, true)
		if ch.Other != nil && ch.OtherType != "" {
			e.Add("Other-Type", ch.OtherType)
			p := &ch.Other.Profile
			if ch.OtherProfile != nil {
				p = ch.OtherProfile
			}
			p.AppendTo(e, "Other-Leg-", ch.Other, false)
		}
	}
	if withVars[e.Name] {
		for _, k := range ch.Vars.Keys {
			e.Add("variable_"+k, ch.Vars.Values[k])
		}
	}
}

// Timestamps sets the CDR variables FreeSWITCH computes at hangup
// (switch_channel_set_timestamps), from the simulated times.
func (ch *Channel) Timestamps() {
	stamp := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }
	epoch := func(t time.Time) string {
		if t.IsZero() {
			return "0"
		}
		return strconv.FormatInt(t.Unix(), 10)
	}
	v := &ch.Vars
	v.Set("hangup_cause", ch.HangupCause)
	v.Set("hangup_cause_q850", strconv.Itoa(Q850(ch.HangupCause)))
	v.Set("digits_dialed", "none")
	v.Set("start_stamp", stamp(ch.Created))
	v.Set("profile_start_stamp", stamp(ch.Profile.Created))
	if !ch.Answered.IsZero() {
		v.Set("answer_stamp", stamp(ch.Answered))
	}
	if !ch.BridgedAt.IsZero() {
		v.Set("bridge_stamp", stamp(ch.BridgedAt))
	}
	if !ch.Progress.IsZero() {
		v.Set("progress_stamp", stamp(ch.Progress))
	}
	if !ch.ProgressMedia.IsZero() {
		v.Set("progress_media_stamp", stamp(ch.ProgressMedia))
	}
	v.Set("end_stamp", stamp(ch.Hungup))
	v.Set("start_epoch", epoch(ch.Created))
	v.Set("start_uepoch", Usec(ch.Created))
	v.Set("profile_start_epoch", epoch(ch.Profile.Created))
	v.Set("profile_start_uepoch", Usec(ch.Profile.Created))
	v.Set("answer_epoch", epoch(ch.Answered))
	v.Set("answer_uepoch", Usec(ch.Answered))
	v.Set("bridge_epoch", epoch(ch.BridgedAt))
	v.Set("bridge_uepoch", Usec(ch.BridgedAt))
	v.Set("last_hold_epoch", "0")
	v.Set("last_hold_uepoch", "0")
	v.Set("hold_accum_seconds", "0")
	v.Set("hold_accum_usec", "0")
	v.Set("hold_accum_ms", "0")
	v.Set("resurrect_epoch", "0")
	v.Set("resurrect_uepoch", "0")
	v.Set("progress_epoch", epoch(ch.Progress))
	v.Set("progress_uepoch", Usec(ch.Progress))
	v.Set("progress_media_epoch", epoch(ch.ProgressMedia))
	v.Set("progress_media_uepoch", Usec(ch.ProgressMedia))
	v.Set("end_epoch", epoch(ch.Hungup))
	v.Set("end_uepoch", Usec(ch.Hungup))
	if ch.App != "" || ch.Vars.Get("current_application") != "" {
		app := ch.Vars.Get("current_application")
		v.Set("last_app", app)
		if arg := ch.Vars.Get("current_application_data"); arg != "" {
			v.Set("last_arg", arg)
		}
	}
	v.Set("caller_id", `"`+ch.Profile.CIDName+`" <`+ch.Profile.CIDNumber+`>`)

	// Durations, as switch_channel_set_timestamps: each in s, ms and us.
	since := func(from, to time.Time) time.Duration {
		if from.IsZero() || to.IsZero() {
			return 0
		}
		return to.Sub(from)
	}
	duration := since(ch.Created, ch.Hungup)
	bill := since(ch.Answered, ch.Hungup)
	progress := since(ch.Created, ch.Progress)
	answer := since(ch.Created, ch.Answered)
	wait := since(ch.Created, ch.BridgedAt)
	progressMedia := since(ch.Created, ch.ProgressMedia)
	type d struct {
		name string
		v    time.Duration
	}
	all := []d{{"duration", duration}, {"billsec", bill}, {"progresssec", progress}, {"answersec", answer}, {"waitsec", wait}, {"progress_mediasec", progressMedia}, {"flow_billsec", bill}}
	for _, x := range all {
		v.Set(x.name, strconv.FormatInt(int64(x.v/time.Second), 10))
	}
	msNames := []string{"mduration", "billmsec", "progressmsec", "answermsec", "waitmsec", "progress_mediamsec", "flow_billmsec"}
	for i, x := range all {
		v.Set(msNames[i], strconv.FormatInt(x.v.Milliseconds(), 10))
	}
	usNames := []string{"uduration", "billusec", "progressusec", "answerusec", "waitusec", "progress_mediausec", "flow_billusec"}
	for i, x := range all {
		v.Set(usNames[i], strconv.FormatInt(x.v.Microseconds(), 10))
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

func (ch *Channel) Info() ChannelInfo {
	ci := ChannelInfo{
		UUID: ch.UUID, Name: ch.Name, Direction: ch.Direction, State: ch.Running,
		CallState: ch.CallState, CallerID: ch.Profile.CIDNumber, Destination: ch.Profile.Destination,
		Application: ch.App, Created: ch.Created, Answered: ch.Answered,
		Variables: make(map[string]string, len(ch.Vars.Values)),
	}
	if ch.Other != nil && !ch.BridgedAt.IsZero() {
		ci.BridgedTo = ch.Other.UUID
	}
	for k, v := range ch.Vars.Values {
		ci.Variables[k] = v
	}
	return ci
}

// SetMediaVars sets what sofia learns from the far end's SDP.
func SetMediaVars(ch *Channel, disposition string) {
	v := &ch.Vars
	v.SetIfAbsent("sip_network_ip", "127.0.0.1")
	v.SetIfAbsent("sip_to_user", ch.DestNumber)
	v.Set("ep_codec_string", "CORE_PCM_MODULE.PCMU@8000h@20i@64000b")
	v.Set("remote_audio_media_flow", "sendrecv")
	SetCodecVars(v)
	v.Set("remote_media_ip", "127.0.0.1")
	v.Set("remote_media_port", "6000")
	v.Set("endpoint_disposition", disposition)
}

// SetCodecVars sets the codec variables of a channel that negotiated
// PCMU at 8 kHz, as FreeSWITCH reports them.
func SetCodecVars(v *Vars) {
	v.Set("read_codec", "PCMU")
	v.Set("original_read_codec", "PCMU")
	v.Set("read_rate", "8000")
	v.Set("original_read_rate", "8000")
	v.Set("write_codec", "PCMU")
	v.Set("write_rate", "8000")
}

// PushOriginateCause records how a leg an originate created ended
// for it in the calling leg's originate_causes, as FreeSWITCH 1.10.12
// does after each dial string: "<uuid>;<cause>", NONE for the leg that
// was bridged, pushed as "ARRAY::first|:second" when there are several.
func PushOriginateCause(a *Channel, uuid, cause string) {
	item := uuid + ";" + cause
	switch old := a.Vars.Get("originate_causes"); {
	case old == "":
		a.Vars.Set("originate_causes", item)
	case strings.HasPrefix(old, "ARRAY::"):
		a.Vars.Set("originate_causes", old+"|:"+item)
	default:
		a.Vars.Set("originate_causes", "ARRAY::"+old+"|:"+item)
	}
}

// RefusalStatus is the SIP final response a far end refuses a call with,
// for each cause the simulator's far ends refuse with.
func RefusalStatus(cause string) (code, phrase string, ok bool) {
	switch cause {
	case "USER_BUSY":
		return "486", "Busy Here", true
	case "UNALLOCATED_NUMBER":
		return "404", "Not Found", true
	case "CALL_REJECTED":
		return "603", "Decline", true
	case "NORMAL_TEMPORARY_FAILURE":
		return "503", "Service Unavailable", true
	}
	return "", "", false
}
