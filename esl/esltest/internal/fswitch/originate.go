package fswitch

import (
	"strconv"
	"time"

	"callbridge/esl/esltest/internal/call"

	"github.com/google/uuid"
)

// setupDelay is the simulated time between sending an INVITE and the far
// end's first response.
const setupDelay = 20 * time.Millisecond

const originateUsage = "-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n"

// originateAPI runs the originate command; result is called once, with
// s.mu held, with the command output ("+OK <uuid>\n" or "-ERR <CAUSE>\n"),
// at the point real FreeSWITCH returns.
func (s *Switch) originateAPI(arg string, result func(string)) {
	fail := func(out string) {
		s.mu.Lock()
		result(out)
		s.mu.Unlock()
	}
	ds, app, err := call.ParseOriginate(arg)
	if err != nil {
		fail(originateUsage)
		return
	}
	switch app.Name {
	case "park", "bridge", "playback", "echo":
	default:
		fail("-ERR APPLICATION_NOT_SIMULATED\n")
		return
	}
	ep, err := call.ParseEndpoint(ds)
	if err != nil {
		fail("-ERR INVALID_URL\n")
		return
	}
	s.mu.Lock()
	ch, out := s.newOutboundLocked(ep, nil)
	if ch == nil {
		result(out)
		s.mu.Unlock()
		return
	}
	s.goLocked(func() { s.runOutbound(ch, ep, &app, result) })
	s.mu.Unlock()
}

// newOutboundLocked creates an outbound leg for ep; parent is the leg that
// originates it from a bridge (nil for originate). If the endpoint cannot
// be used it returns nil and the originate output.
func (s *Switch) newOutboundLocked(ep *call.Endpoint, parent *call.Channel) (*call.Channel, string) {
	switch ep.Kind {
	case "sofia", "loopback":
	case "error":
		return nil, "-ERR " + ep.Cause + "\n"
	default:
		return nil, "-ERR CHAN_NOT_IMPLEMENTED\n"
	}
	set := s.Settings()
	if set.MaxSessions > 0 && s.liveCountLocked() >= set.MaxSessions {
		return nil, "-ERR DESTINATION_OUT_OF_ORDER\n"
	}

	id := ep.Vars.Get("origination_uuid")
	if id == "" {
		id = uuid.NewString()
	}
	if s.chans[id] != nil {
		return nil, "-ERR DESTINATION_OUT_OF_ORDER\n"
	}
	if s.paused {
		set.Logger.Info("esltest: originate refused: paused", "uuid", id)
		return nil, "-ERR DESTINATION_OUT_OF_ORDER\n"
	}
	if s.maxSess < 0 || s.maxSess > 0 && len(s.chans) >= s.maxSess {
		set.Logger.Info("esltest: originate refused: over session limit", "limit", s.maxSess, "uuid", id)
		return nil, "-ERR DESTINATION_OUT_OF_ORDER\n"
	}
	now := s.clk.Now()
	s.sessions++
	ch := &call.Channel{UUID: id, Direction: "outbound", Created: now, SessionID: s.sessions,
		CallState: "DOWN", AnswerState: "ringing", KillCh: make(chan struct{}), Done: make(chan struct{}), AnswerCh: make(chan struct{}),
		DestNumber: ep.Number, Rule: set.Script.Lookup(ep.Number)}
	if ep.Profile == "gateway" && s.gatewayRefusesLocked(ep.Gateway) {
		ch.Rule = call.Rule{Outcome: call.OutcomeFail}
	}
	refusal := ""
	switch {
	case ep.Kind != "sofia":
	case ep.Profile == "gateway":
		if s.gatewayDownLocked(ep.Gateway) {
			// "Gateway NAME is down!": the same events as an unknown
			// profile (FreeSWITCH 1.10.12).
			refusal = "-ERR GATEWAY_DOWN\n"
		}
	case ep.Profile != "internal" && ep.Profile != "external":
		refusal = "-ERR INVALID_PROFILE\n"
	}
	if refusal != "" {
		// mod_sofia refuses before a session exists: only CHANNEL_DESTROY.
		ch.Shadow = true
		ch.Name = "N/A"
		ch.Running, ch.StateNum = "CS_NONE", 0
		ch.Vars.Set("direction", "outbound")
		ch.Vars.Set("is_outbound", "true")
		ch.Vars.Set("uuid", id)
		ch.Vars.Set("call_uuid", id)
		ch.Vars.Set("session_id", strconv.Itoa(ch.SessionID))
		e := s.newEventLocked("CHANNEL_DESTROY", "switch_core_session.c", "switch_core_session_perform_destroy", 1584)
		ch.AppendChannelData(e)
		s.Emit(e)
		return nil, refusal
	}
	ch.Name = ep.ChannelName()
	cidName, cidNum := "", "0000000000"
	if parent != nil {
		cidName, cidNum = parent.Profile.CIDName, parent.Profile.CIDNumber
	}
	if v := ep.Vars.Get("origination_caller_id_name"); v != "" {
		cidName = v
	}
	if v := ep.Vars.Get("origination_caller_id_number"); v != "" {
		cidNum = v
	}
	// A leg dialled from a session keeps that session's caller as its
	// Orig- caller id, whatever number it presents (the real switch shows
	// the real caller there on a binding's outbound leg).
	origName, origNum := cidName, cidNum
	if parent != nil {
		origName, origNum = parent.Profile.CIDName, parent.Profile.CIDNumber
	}
	ch.Profile = call.Profile{Direction: "outbound", LogicalDirection: "outbound", CIDName: cidName, CIDNumber: cidNum,
		OrigCIDName: origName, OrigCIDNumber: origNum, CalleeName: "Outbound Call", CalleeNumber: ep.Number,
		ANI: cidNum, Destination: ep.Number, Source: "src/switch_ivr_originate.c", Context: "default",
		ChannelName: ch.Name, Index: 1, Created: now}
	v := &ch.Vars
	v.Set("direction", "outbound")
	v.Set("is_outbound", "true")
	v.Set("uuid", id)
	v.Set("call_uuid", id)
	v.Set("session_id", strconv.Itoa(ch.SessionID))
	if ep.Kind == "sofia" {
		profileName := ep.Profile
		if profileName == "gateway" {
			profileName = "external"
		}
		host := ep.Host
		if host == "" {
			host = ep.Gateway
		}
		v.Set("sip_local_network_addr", "127.0.0.1")
		v.Set("sip_profile_name", profileName)
		v.Set("video_media_flow", "disabled")
		v.Set("text_media_flow", "disabled")
		v.Set("channel_name", ch.Name)
		v.Set("sip_destination_url", "sip:"+ep.Number+"@"+host)
		if ep.Gateway != "" {
			v.Set("sip_gateway_name", ep.Gateway)
		}
	} else {
		v.Set("channel_name", ch.Name)
	}
	for _, k := range ep.Vars.Keys {
		v.Set(k, ep.Vars.Values[k])
	}
	call.ExecuteOnOriginate(ch)
	v.Set("originate_early_media", "true")
	v.Set("originate_endpoint", ep.Kind)
	if ep.Kind == "sofia" {
		v.Set("rtp_use_codec_string", "PCMU,PCMA")
		v.Set("local_media_ip", "127.0.0.1")
		v.Set("local_media_port", strconv.Itoa(16384+2*(ch.SessionID%8000)))
		v.Set("advertised_media_ip", "127.0.0.1")
		v.Set("audio_media_flow", "sendrecv")
		v.Set("sip_outgoing_contact_uri", "<sip:mod_sofia@127.0.0.1:5080>")
		v.Set("sip_req_uri", ep.Number+"@"+ep.Host)
		v.Set("sofia_profile_name", v.Get("sip_profile_name"))
		v.Set("recovery_profile_name", v.Get("sip_profile_name"))
		v.Set("sofia_profile_url", "sip:mod_sofia@127.0.0.1:5080")
	}
	if parent != nil {
		ch.Other, ch.OtherType = parent, "originator"
		// A leg dialled from a session (the bridge application) names
		// its originator from its first events on, as the captures show.
		ch.Vars.Set("originator", parent.UUID)
		snap := parent.Profile
		ch.OtherProfile = &snap
		// The B leg's caller profile is cloned from the originator's.
		ch.Profile.Username, ch.Profile.Dialplan = parent.Profile.Username, parent.Profile.Dialplan
		ch.Profile.NetworkAddr = parent.Profile.NetworkAddr
	}
	s.chans[id] = ch
	if n := s.liveCountLocked(); n > s.peak {
		s.peak = n
	}
	return ch, ""
}

// emitLocked sends a channel event: common headers, pre headers, channel data,
// post headers.
func (s *Switch) emitLocked(ch *call.Channel, name, file, fn string, line int, pre, post []header) {
	e := s.newEventLocked(name, file, fn, line)
	for _, h := range pre {
		e.Add(h.name, h.value)
	}
	ch.AppendChannelData(e)
	for _, h := range post {
		e.Add(h.name, h.value)
	}
	s.Emit(e)
}

func (s *Switch) stateLocked(ch *call.Channel, running string) {
	ch.Running = running
	if n, ok := call.StateNumber[running]; ok && n > ch.StateNum || running == "CS_EXCHANGE_MEDIA" || running == "CS_EXECUTE" {
		ch.StateNum = n
	}
	s.emitLocked(ch, "CHANNEL_STATE", "switch_channel.c", "switch_channel_perform_set_running_state", 2408, nil, nil)
}

func (s *Switch) callStateLocked(ch *call.Channel, cs string) {
	old := ch.CallState
	ch.CallState = cs
	s.emitLocked(ch, "CHANNEL_CALLSTATE", "switch_channel.c", "switch_channel_perform_set_callstate", 301,
		[]header{{"Original-Channel-Call-State", old}, {"Channel-Call-State-Number", strconv.Itoa(call.CallStateNumber[cs])}}, nil)
}

func (s *Switch) codecLocked(ch *call.Channel) {
	if ch.Codec {
		return
	}
	ch.Codec = true
	s.emitLocked(ch, "CODEC", "switch_core_codec.c", "switch_core_session_set_real_read_codec", 168, nil,
		[]header{{"channel-read-codec-name", "PCMU"}, {"channel-read-codec-rate", "8000"}, {"channel-read-codec-bit-rate", "64000"}})
	s.emitLocked(ch, "CODEC", "switch_core_codec.c", "switch_core_session_set_write_codec", 450, nil,
		[]header{{"Channel-Write-Codec-Name", "PCMU"}, {"Channel-Write-Codec-Rate", "8000"}, {"Channel-Write-codec-bit-rate", "64000"}})
}

func (s *Switch) progressLocked(ch *call.Channel) {
	ch.Progress = s.clk.Now()
	ch.Profile.NetworkAddr = "127.0.0.1"
	ch.Vars.Set("sip_reply_host", "127.0.0.1")
	ch.Vars.Set("sip_network_ip", "127.0.0.1")
	ch.Vars.Set("sip_to_user", ch.DestNumber)
	ch.Vars.Set("sip_from_user", ch.Profile.CIDNumber)
	s.emitLocked(ch, "CHANNEL_PROGRESS", "switch_channel.c", "switch_channel_perform_mark_ring_ready_value", 3505, nil, nil)
	s.callStateLocked(ch, "RINGING")
}

func (s *Switch) progressMediaLocked(ch *call.Channel) {
	ch.ProgressMedia = s.clk.Now()
	ch.Profile.NetworkAddr = "127.0.0.1"
	call.SetMediaVars(ch, "EARLY MEDIA")
	s.codecLocked(ch)
	ch.AnswerState = "early"
	s.emitLocked(ch, "CHANNEL_PROGRESS_MEDIA", "switch_channel.c", "switch_channel_perform_mark_pre_answered", 3560, nil, nil)
	s.callStateLocked(ch, "EARLY")
}

func (s *Switch) answerLocked(ch *call.Channel) {
	ch.Answered = s.clk.Now()
	close(ch.AnswerCh)
	ch.Profile.NetworkAddr = "127.0.0.1"
	call.SetMediaVars(ch, "ANSWER")
	s.codecLocked(ch)
	ch.AnswerState = "answered"
	s.emitLocked(ch, "CHANNEL_ANSWER", "switch_channel.c", "switch_channel_perform_mark_answered", 3846, nil, nil)
	s.callStateLocked(ch, "ACTIVE")
	s.executeOnAnswerLocked(ch)
}

// startAppLocked moves the leg into CS_EXECUTE and emits CHANNEL_EXECUTE.
func (s *Switch) startAppLocked(ch *call.Channel, name, arg string) {
	if ch.Running != "CS_EXECUTE" {
		s.stateLocked(ch, "CS_EXECUTE")
	}
	ch.App, ch.AppArg, ch.AppUUID = name, arg, uuid.NewString()
	ch.Vars.Set("current_application", name)
	if arg != "" {
		ch.Vars.Set("current_application_data", arg)
	} else {
		ch.Vars.Del("current_application_data")
	}
	post := []header{{"Application", name}}
	if arg != "" {
		post = append(post, header{"Application-Data", arg})
	}
	post = append(post, header{"Application-UUID", ch.AppUUID})
	s.emitLocked(ch, "CHANNEL_EXECUTE", "switch_core_session.c", "switch_core_session_exec", 2944, nil, post)
	if name == "park" {
		s.emitLocked(ch, "CHANNEL_PARK", "switch_ivr.c", "switch_ivr_park", 1002, nil, nil)
	}
}

// endAppLocked emits the end of the running application.
func (s *Switch) endAppLocked(ch *call.Channel) {
	if ch.App == "" {
		return
	}
	if ch.App == "park" {
		s.emitLocked(ch, "CHANNEL_UNPARK", "switch_ivr.c", "switch_ivr_park", 1213, nil, nil)
	}
	post := []header{{"Application", ch.App}}
	if ch.AppArg != "" {
		post = append(post, header{"Application-Data", ch.AppArg})
	}
	post = append(post, header{"Application-Response", "_none_"}, header{"Application-UUID", ch.AppUUID})
	s.emitLocked(ch, "CHANNEL_EXECUTE_COMPLETE", "switch_core_session.c", "switch_core_session_exec", 2967, nil, post)
	ch.Vars.Set("last_app", ch.App)
	if ch.AppArg != "" {
		ch.Vars.Set("last_arg", ch.AppArg)
	}
	ch.App, ch.AppArg = "", ""
}

// requestHangupLocked asks the leg's goroutine to hang up; the first
// request wins.
func (s *Switch) requestHangupLocked(ch *call.Channel, cause, disposition string) {
	if ch.Killed {
		return
	}
	ch.Killed = true
	ch.KillCause, ch.KillDisp = cause, disposition
	close(ch.KillCh)
}

// sleepLeg waits d of simulated time (forever if d < 0); false means the
// leg was asked to hang up or the server is closing.
func (s *Switch) sleepLeg(ch *call.Channel, d time.Duration) bool {
	return s.clk.Sleep(s.ctx, d, ch.KillCh)
}

func (s *Switch) closing() bool { return s.ctx.Err() != nil }

// failLocked marks the leg for hangup with the far end's refusal.
func (s *Switch) failLocked(ch *call.Channel, cause, disposition string) {
	ch.Profile.NetworkAddr = "127.0.0.1" // the refusal came from the far end
	s.requestHangupLocked(ch, cause, disposition)
}

// runOutbound drives an outbound leg from INVITE to destroy. app is the
// originate application (nil for a bridge's B leg); result receives the
// originate output once.
func (s *Switch) runOutbound(ch *call.Channel, ep *call.Endpoint, app *call.Application, result func(string)) {
	resultSent := false
	sendResult := func(out string) {
		if !resultSent {
			resultSent = true
			result(out)
		}
	}
	s.mu.Lock()
	ch.Running, ch.StateNum = "CS_NONE", 1
	s.emitLocked(ch, "CHANNEL_OUTGOING", "switch_core_session.c", "switch_core_session_outgoing_channel", 768, nil, nil)
	s.stateLocked(ch, "CS_INIT")
	ch.StateNum = 2
	s.emitLocked(ch, "CHANNEL_CREATE", "switch_core_state_machine.c", "switch_core_session_run", 626, nil, nil)
	s.emitLocked(ch, "CHANNEL_ORIGINATE", "switch_core_state_machine.c", "switch_core_session_run", 632, nil, nil)
	s.stateLocked(ch, "CS_ROUTING")
	s.stateLocked(ch, "CS_CONSUME_MEDIA")
	timeout := 60 * time.Second
	for _, k := range []string{"originate_timeout", "leg_timeout", "call_timeout"} {
		if n, err := strconv.Atoi(ch.Vars.Get(k)); err == nil && n > 0 {
			timeout = time.Duration(n) * time.Second
			break
		}
	}
	rule := ch.Rule
	s.mu.Unlock()

	deadline := s.clk.Now().Add(timeout)
	remaining := func() time.Duration { return deadline.Sub(s.clk.Now()) }
	appStarted := false
	startApp := func() {
		// Called with s.mu held, at the point originate returns.
		sendResult("+OK " + ch.UUID + "\n")
		if app != nil {
			appStarted = true
			for _, set := range app.Sets {
				s.startAppLocked(ch, "set", set)
				call.SetVar(ch, call.ExpandVars(ch, set, nil))
				s.endAppLocked(ch)
			}
			s.startAppLocked(ch, app.Name, app.Arg)
		}
	}

	ok := func() bool {
		if !s.sleepLeg(ch, setupDelay) {
			return false
		}
		if rule.RingMS > 0 || (rule.Outcome == call.OutcomeNoAnswer && rule.EarlyMediaMS == 0) {
			s.mu.Lock()
			s.progressLocked(ch)
			s.mu.Unlock()
			ring := ms(rule.RingMS)
			if rule.Outcome == call.OutcomeNoAnswer && rule.EarlyMediaMS == 0 {
				ring = -1
			}
			if ring < 0 || ring > remaining() {
				if !s.sleepLeg(ch, remaining()) {
					return false
				}
				s.mu.Lock()
				s.failLocked(ch, "NO_ANSWER", "send_cancel")
				s.mu.Unlock()
				return false
			}
			if !s.sleepLeg(ch, ring) {
				return false
			}
		}
		if rule.EarlyMediaMS > 0 {
			s.mu.Lock()
			s.progressMediaLocked(ch)
			startApp()
			s.mu.Unlock()
			early := ms(rule.EarlyMediaMS)
			if rule.Outcome == call.OutcomeNoAnswer {
				early = -1
			}
			if !s.sleepLeg(ch, early) {
				return false
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		switch rule.Outcome {
		case call.OutcomeAnswer:
			s.answerLocked(ch)
			if !appStarted {
				if app != nil {
					ch.HitDialplan = true
					s.emitLocked(ch, "CALL_UPDATE", "switch_channel.c", "switch_channel_flip_cid", 3277, []header{{"Direction", "RECV"}}, nil)
				}
				startApp()
			}
			return true
		case call.OutcomeBusy:
			s.failLocked(ch, "USER_BUSY", "recv_refuse")
		case call.OutcomeUnallocated:
			s.failLocked(ch, "UNALLOCATED_NUMBER", "recv_refuse")
		case call.OutcomeRejected:
			s.failLocked(ch, "CALL_REJECTED", "recv_refuse")
		case call.OutcomeFail:
			s.failLocked(ch, "NORMAL_TEMPORARY_FAILURE", "recv_refuse")
		}
		return false
	}()
	if s.closing() {
		return
	}
	if ok && app != nil {
		switch app.Name {
		case "bridge":
			s.runBridgeApp(ch, app.Arg)
			if s.closing() {
				return
			}
			s.mu.Lock()
			s.requestHangupLocked(ch, "NORMAL_CLEARING", "send_bye")
			s.mu.Unlock()
		case "playback":
			if s.playback(ch, app.Arg) {
				s.mu.Lock()
				s.endAppLocked(ch)
				s.requestHangupLocked(ch, "NORMAL_CLEARING", "send_bye")
				s.mu.Unlock()
			}
		}
	}
	if ok {
		s.talk(ch, rule)
	}
	if s.closing() {
		return
	}
	s.finishLeg(ch, func(out string) { sendResult(out) })
}

// talk keeps an answered leg up until it is hung up, or until the far end
// hangs up after the scripted talk time.
func (s *Switch) talk(ch *call.Channel, rule call.Rule) {
	d := time.Duration(-1)
	if rule.TalkMS > 0 {
		d = ms(rule.TalkMS)
	}
	if s.sleepLeg(ch, d) {
		s.mu.Lock()
		s.requestHangupLocked(ch, "NORMAL_CLEARING", "recv_bye")
		s.mu.Unlock()
	}
}

// finishLeg runs the hangup of a leg that was asked to hang up: HANGUP,
// the end of its bridge and application, HANGUP_COMPLETE with the CDR
// variables, DESTROY. failed (called with s.mu held) receives
// "-ERR <cause>" if originate had not returned yet.
func (s *Switch) finishLeg(ch *call.Channel, failed func(string)) {
	s.mu.Lock()
	cause, disp := ch.KillCause, ch.KillDisp
	ch.HangupCause = cause
	ch.Hungup = s.clk.Now()
	ch.AnswerState = "hangup"
	ch.StateNum = 10
	partner := ch.Other
	bridged := partner != nil && !ch.BridgedAt.IsZero()
	if bridged {
		ch.Vars.Set("bridge_hangup_cause", cause)
	}
	if disp == "recv_refuse" {
		if code, phrase, ok := call.RefusalStatus(cause); ok {
			// A final failure response from the far end, as FreeSWITCH
			// 1.10.12 records it when the response arrives, before the
			// hangup: CHANNEL_HANGUP already carries it (fixtures 29c,
			// 29e, 81).
			ch.Vars.Set("sip_invite_failure_status", code)
			ch.Vars.Set("sip_invite_failure_phrase", phrase)
			ch.Vars.Set("sip_term_status", code)
			ch.Vars.Set("proto_specific_hangup_cause", "sip:"+code)
			ch.Vars.Set("sip_term_cause", strconv.Itoa(call.Q850(cause)))
		}
	}
	s.emitLocked(ch, "CHANNEL_HANGUP", "switch_channel.c", "switch_channel_perform_hangup", 3445, nil, nil)
	// A bridge application decides itself what its leg does when the
	// bridge ends (hangup_after_bridge); otherwise the partner goes too.
	if partner != nil && (bridged || ch.Role == "originator") && !(ch.Role == "originatee" && partner.App == "bridge") {
		// FreeSWITCH's scheduler runs once a second and fires every task
		// due by then: a partner whose own sched_hangup falls in the same
		// second hangs up with its cause, not as the bridge's casualty
		// (max_duration ends both legs ALLOTTED_TIMEOUT).
		partnerCause := "NORMAL_CLEARING"
		for _, h := range partner.Sched {
			if h.At.Sub(ch.Hungup) < time.Second {
				partnerCause = h.Cause
				break
			}
		}
		s.requestHangupLocked(partner, partnerCause, "send_bye")
		if !partner.Killed {
			partner.Vars.Set("bridge_hangup_cause", cause)
		}
	}
	s.mu.Unlock()
	if partner != nil && ch.Role == "originator" {
		select {
		case <-partner.Done:
		case <-s.ctx.Done():
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if bridged && ch.Role == "originator" {
		s.emitLocked(ch, "CHANNEL_UNBRIDGE", "switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1879,
			[]header{{"Bridge-A-Unique-ID", ch.UUID}, {"Bridge-B-Unique-ID", partner.UUID}}, nil)
	}
	s.endAppLocked(ch)
	s.stateLocked(ch, "CS_HANGUP")
	s.callStateLocked(ch, "HANGUP")
	s.stateLocked(ch, "CS_REPORTING")
	ch.Timestamps()
	ch.Vars.Set("sip_hangup_disposition", disp)
	s.reportingHookLocked(ch)
	s.emitLocked(ch, "CHANNEL_HANGUP_COMPLETE", "switch_core_state_machine.c", "switch_core_session_reporting_state", 943,
		[]header{{"Hangup-Cause", cause}}, nil)
	if failed != nil {
		failed("-ERR " + cause + "\n")
	}
	ch.StateNum = 12
	s.emitLocked(ch, "CHANNEL_DESTROY", "switch_core_session.c", "switch_core_session_perform_destroy", 1584, nil, nil)
	s.stateLocked(ch, "CS_DESTROY")
	delete(s.chans, ch.UUID)
	close(ch.Done)
	billed := time.Duration(0)
	if !ch.Answered.IsZero() {
		billed = ch.Hungup.Sub(ch.Answered)
	}
	s.logf("esltest: call ended", "uuid", ch.UUID, "direction", ch.Direction, "destination", ch.Profile.Destination,
		"cause", cause, "billmsec", billed.Milliseconds())
}

// playback emits the events of playing a file for 1 s of simulated time;
// it returns false if the leg was hung up meanwhile.
func (s *Switch) playback(ch *call.Channel, file string) bool {
	s.mu.Lock()
	s.emitLocked(ch, "PLAYBACK_START", "switch_ivr_play_say.c", "switch_ivr_play_file", 1533, nil,
		[]header{{"Playback-File-Path", file}})
	s.mu.Unlock()
	if !s.sleepLeg(ch, time.Second) {
		return false
	}
	s.mu.Lock()
	s.emitLocked(ch, "PLAYBACK_STOP", "switch_ivr_play_say.c", "switch_ivr_play_file", 2063, nil,
		[]header{{"Playback-File-Path", file}, {"Playback-Status", "done"}})
	s.mu.Unlock()
	return true
}

// playbackEventsLocked emits the events of a broadcast playback at once.
func (s *Switch) playbackEventsLocked(ch *call.Channel, file string) {
	s.emitLocked(ch, "PLAYBACK_START", "switch_ivr_play_say.c", "switch_ivr_play_file", 1533, nil,
		[]header{{"Playback-File-Path", file}})
	s.emitLocked(ch, "PLAYBACK_STOP", "switch_ivr_play_say.c", "switch_ivr_play_file", 2063, nil,
		[]header{{"Playback-File-Path", file}, {"Playback-Status", "done"}})
}

func ms(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
