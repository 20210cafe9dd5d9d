package fswitch

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"callbridge/esl/esltest/internal/call"

	"github.com/google/uuid"
)

// validToken accepts what a SIP user part may carry in this simulator.
func validToken(v string) bool {
	if v == "" || len(v) > 64 {
		return false
	}
	for _, c := range v {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.ContainsRune("+-_.*#", c)) {
			return false
		}
	}
	return true
}

// Inbound simulates a call from caller to dest arriving on the
// "internal" sofia profile (context "public"): the leg is created, the
// dialplan is fetched from DialplanURL as mod_xml_curl would, and
// executed. It returns the new leg's UUID once the leg exists.
func (s *Switch) Inbound(caller, dest string) (string, error) {
	if !validToken(caller) || !validToken(dest) {
		return "", errors.New("INVALID_NUMBER_FORMAT")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", errors.New("SYSTEM_SHUTDOWN")
	}
	now := s.clk.Now()
	s.sessions++
	id := uuid.NewString()
	ch := &call.Channel{UUID: id, Direction: "inbound", Created: now, SessionID: s.sessions,
		CallState: "DOWN", AnswerState: "ringing", HitDialplan: true, KillCh: make(chan struct{}),
		Done: make(chan struct{}), AnswerCh: make(chan struct{}), DestNumber: dest}
	ch.Name = "sofia/internal/" + caller + "@127.0.0.1:5070"
	ch.Profile = call.Profile{Direction: "inbound", LogicalDirection: "inbound", Username: caller, Dialplan: "XML",
		CIDName: caller, CIDNumber: caller, OrigCIDName: caller, OrigCIDNumber: caller,
		NetworkAddr: "127.0.0.1", ANI: caller, Destination: dest, Source: "mod_sofia", Context: "public",
		ChannelName: ch.Name, Index: 1, Created: now}
	v := &ch.Vars
	v.Set("direction", "inbound")
	v.Set("uuid", id)
	v.Set("call_uuid", id)
	v.Set("session_id", strconv.Itoa(ch.SessionID))
	v.Set("sip_from_user", caller)
	v.Set("sip_from_port", "5070")
	v.Set("sip_from_uri", caller+"@127.0.0.1:5070")
	v.Set("sip_from_host", "127.0.0.1")
	v.Set("video_media_flow", "disabled")
	v.Set("text_media_flow", "disabled")
	v.Set("channel_name", ch.Name)
	v.Set("sip_call_id", id+"@127.0.0.1")
	v.Set("sip_local_network_addr", "127.0.0.1")
	v.Set("sip_network_ip", "127.0.0.1")
	v.Set("sip_network_port", "5070")
	v.Set("sip_invite_stamp", call.Usec(now))
	v.Set("sip_received_ip", "127.0.0.1")
	v.Set("sip_received_port", "5070")
	v.Set("sip_via_protocol", "udp")
	v.Set("sofia_profile_name", "internal")
	v.Set("sofia_profile_url", "sip:mod_sofia@127.0.0.1:5080")
	v.Set("recovery_profile_name", "internal")
	v.Set("sip_req_user", dest)
	v.Set("sip_req_uri", dest+"@127.0.0.1:5080")
	v.Set("sip_to_user", dest)
	v.Set("sip_to_uri", dest+"@127.0.0.1:5080")
	v.Set("sip_to_host", "127.0.0.1")
	v.Set("max_forwards", "70")
	v.Set("rtp_use_codec_string", "PCMU,PCMA")
	v.Set("remote_audio_media_flow", "sendrecv")
	v.Set("audio_media_flow", "sendrecv")
	v.Set("remote_media_ip", "127.0.0.1")
	v.Set("remote_media_port", "6100")
	call.SetCodecVars(v)
	v.Set("dtmf_type", "info")
	v.Set("endpoint_disposition", "RECEIVED")
	s.chans[id] = ch
	if n := s.liveCountLocked(); n > s.peak {
		s.peak = n
	}
	ch.Running, ch.StateNum, ch.Bare = "CS_NEW", 0, true
	s.emitLocked(ch, "CHANNEL_STATE", "switch_channel.c", "switch_channel_perform_set_running_state", 2408, nil, nil)
	ch.Bare = false
	s.codecLocked(ch)
	s.stateLocked(ch, "CS_INIT")
	ch.StateNum = 2
	s.emitLocked(ch, "CHANNEL_CREATE", "switch_core_state_machine.c", "switch_core_session_run", 626, nil, nil)
	ch.Running = "CS_ROUTING"
	s.callStateLocked(ch, "RINGING")
	s.stateLocked(ch, "CS_ROUTING")
	s.goLocked(func() { s.runInbound(ch) })
	s.mu.Unlock()
	return id, nil
}

// dialplanRequestLocked builds the form body mod_xml_curl POSTs.
func (s *Switch) dialplanRequestLocked(ch *call.Channel) string {
	e := s.newEventLocked("REQUEST_PARAMS", "mod_dialplan_xml.c", "dialplan_xml_locate", 610)
	ch.AppendChannelData(e)
	for _, k := range ch.Vars.Keys {
		e.Add("variable_"+k, ch.Vars.Values[k])
	}
	ch.Profile.AppendTo(e, "Hunt-", ch, true)
	var b strings.Builder
	b.WriteString("hostname=" + call.URLEncode(s.Settings().Hostname) + "&section=dialplan&tag_name=&key_name=&key_value=")
	for _, h := range e.Headers {
		b.WriteString("&" + h.Name + "=" + call.URLEncode(h.Value))
	}
	return b.String()
}

// fetchDialplan POSTs the request and returns the actions to run, or a
// hangup cause when there is no route.
func (s *Switch) fetchDialplan(ch *call.Channel) ([]call.Action, []string, string) {
	set := s.Settings()
	if set.DialplanURL == "" {
		return nil, nil, "NO_ROUTE_DESTINATION"
	}
	s.mu.Lock()
	body := s.dialplanRequestLocked(ch)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, set.DialplanTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, set.DialplanURL, strings.NewReader(body))
	if err != nil {
		set.Logger.Warn("esltest: dialplan request", "err", err)
		return nil, nil, "NO_ROUTE_DESTINATION"
	}
	req.Header.Set("User-Agent", "freeswitch-xml/1.0")
	req.Header.Set("Accept", "*/*")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if set.DialplanUser != "" || set.DialplanPassword != "" {
		req.SetBasicAuth(set.DialplanUser, set.DialplanPassword)
	}
	resp, err := s.httpClient.Do(req)
	if err != nil {
		set.Logger.Warn("esltest: dialplan request failed", "uuid", ch.UUID, "err", err)
		return nil, nil, "NO_ROUTE_DESTINATION"
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		set.Logger.Warn("esltest: dialplan response", "uuid", ch.UUID, "status", resp.StatusCode, "err", err)
		return nil, nil, "NO_ROUTE_DESTINATION"
	}
	var doc call.Document
	if err := xml.Unmarshal(data, &doc); err != nil {
		set.Logger.Warn("esltest: dialplan XML", "uuid", ch.UUID, "err", err)
		return nil, nil, "NO_ROUTE_DESTINATION"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if acts, caps, ok := doc.Route(ch); ok {
		return acts, caps, ""
	}
	return nil, nil, "NO_ROUTE_DESTINATION"
}

// runInbound fetches and executes the dialplan of an inbound leg, then
// hangs it up when the dialplan ends or the caller hangs up.
func (s *Switch) runInbound(ch *call.Channel) {
	acts, caps, cause := s.fetchDialplan(ch)
	if s.closing() {
		return
	}
	s.mu.Lock()
	if cause != "" {
		s.requestHangupLocked(ch, cause, "send_refuse")
	} else {
		s.stateLocked(ch, "CS_EXECUTE")
	}
	s.mu.Unlock()
	for _, a := range acts {
		if s.closing() {
			return
		}
		s.mu.Lock()
		killed := ch.Killed
		s.mu.Unlock()
		if killed {
			break
		}
		if !s.execApp(ch, a.Application, expandDeferred(ch, a.Data, caps, &s.mu)) {
			break
		}
	}
	if s.closing() {
		return
	}
	s.mu.Lock()
	disp := "send_bye"
	if ch.Answered.IsZero() {
		disp = "send_refuse"
	}
	s.requestHangupLocked(ch, "NORMAL_CLEARING", disp)
	s.mu.Unlock()
	s.finishLeg(ch, nil)
}

func expandDeferred(ch *call.Channel, data string, caps []string, mu interface {
	Lock()
	Unlock()
}) string {
	mu.Lock()
	defer mu.Unlock()
	return call.ExpandVars(ch, data, caps)
}

// execApp runs one dialplan application on an inbound leg; it returns false
// when the dialplan must stop.
func (s *Switch) execApp(ch *call.Channel, app, data string) bool {
	s.mu.Lock()
	s.startAppLocked(ch, app, data)
	s.mu.Unlock()
	complete := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if ch.Killed {
			return false
		}
		s.endAppLocked(ch)
		return true
	}
	switch app {
	case "set", "export":
		s.mu.Lock()
		d := data
		nolocal := false
		if rest, ok := strings.CutPrefix(d, "nolocal:"); ok {
			d, nolocal = rest, true
		}
		if k, v, ok := strings.Cut(d, "="); ok {
			if app == "set" && !nolocal {
				call.SetVar(ch, d)
			} else if !nolocal {
				if v == "" {
					ch.Vars.Del(k)
				} else {
					ch.Vars.Set(k, v)
				}
			}
			if app == "export" {
				list := ch.Vars.Get("export_vars")
				if list == "" {
					list = k
				} else if !strings.Contains(","+list+",", ","+k+",") {
					list += "," + k
				}
				ch.Vars.Set("export_vars", list)
				if nolocal {
					ch.Vars.Set("nolocal:"+k, v)
				}
			}
		}
		s.mu.Unlock()
		return complete()
	case "answer":
		s.mu.Lock()
		if ch.Answered.IsZero() {
			s.answerLocked(ch)
		}
		s.mu.Unlock()
		return complete()
	case "pre_answer":
		s.mu.Lock()
		if ch.ProgressMedia.IsZero() && ch.Answered.IsZero() {
			s.progressMediaLocked(ch)
		}
		s.mu.Unlock()
		return complete()
	case "ring_ready":
		s.mu.Lock()
		if ch.Progress.IsZero() {
			ch.Progress = s.clk.Now()
			s.emitLocked(ch, "CHANNEL_PROGRESS", "switch_channel.c", "switch_channel_perform_mark_ring_ready_value", 3505, nil, nil)
		}
		s.mu.Unlock()
		return complete()
	case "playback":
		if !s.playback(ch, data) {
			return false
		}
		return complete()
	case "sleep":
		n, _ := strconv.Atoi(strings.TrimSpace(data))
		if !s.sleepLeg(ch, time.Duration(n)*time.Millisecond) {
			return false
		}
		return complete()
	case "record_session":
		s.mu.Lock()
		ch.Recs = append(ch.Recs, data)
		e := s.newEventLocked("RECORD_START", "switch_ivr_async.c", "record_callback", 1278)
		ch.AppendChannelData(e)
		e.Add("Record-File-Path", data)
		s.Emit(e)
		s.mu.Unlock()
		return complete()
	case "sched_hangup":
		s.mu.Lock()
		s.schedHangupAppLocked(ch, data)
		s.mu.Unlock()
		return complete()
	case "sched_cancel":
		s.mu.Lock()
		s.schedCancelAppLocked(ch, data)
		s.mu.Unlock()
		return complete()
	case "hangup":
		s.mu.Lock()
		disp := "send_bye"
		if ch.Answered.IsZero() {
			disp = "send_refuse"
		}
		s.requestHangupLocked(ch, call.NormalizeCause(strings.TrimSpace(data)), disp)
		s.mu.Unlock()
		return false
	case "bridge":
		bridged, cause := s.runBridgeApp(ch, data)
		s.mu.Lock()
		if ch.Killed {
			s.mu.Unlock()
			return false
		}
		if !bridged {
			ch.Vars.Set("originate_disposition", cause)
			ch.Vars.Set("DIALSTATUS", call.DialStatus(cause))
			cont := call.ContinueOnFail(ch.Vars.Get("continue_on_fail"), cause)
			if !cont {
				disp := "send_bye"
				if ch.Answered.IsZero() {
					disp = "send_refuse"
				}
				s.requestHangupLocked(ch, cause, disp)
				s.mu.Unlock()
				return false
			}
			s.mu.Unlock()
			return complete()
		}
		after := ch.Vars.Get("hangup_after_bridge")
		s.mu.Unlock()
		if call.IsTrue(after) {
			s.mu.Lock()
			s.requestHangupLocked(ch, "NORMAL_CLEARING", "send_bye")
			s.mu.Unlock()
			return false
		}
		return complete()
	}
	s.Settings().Logger.Warn("esltest: dialplan application not simulated; skipped", "app", app, "uuid", ch.UUID)
	return complete()
}

// schedHangupAppLocked runs the dialplan application "sched_hangup
// [+]<time> [<cause>]" on ch: '+' is seconds from now, otherwise an epoch.
func (s *Switch) schedHangupAppLocked(ch *call.Channel, data string) {
	f := strings.Fields(data)
	if len(f) == 0 {
		return
	}
	cause := "ALLOTTED_TIMEOUT"
	if len(f) > 1 {
		cause = call.NormalizeCause(f[1])
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(f[0], "+"), 10, 64)
	if err != nil {
		return
	}
	d := time.Duration(n) * time.Second
	if !strings.HasPrefix(f[0], "+") {
		d = time.Unix(n, 0).Sub(s.clk.Now())
	}
	s.scheduleHangupLocked(ch, d, cause)
}

// schedCancelAppLocked runs the dialplan application "sched_cancel
// [<group>]": it deletes the scheduler tasks of group, by default the
// channel's uuid (the group of its sched_hangup). A task id (digits) is
// accepted and ignored: the simulator does not number tasks.
func (s *Switch) schedCancelAppLocked(ch *call.Channel, data string) {
	group := strings.TrimSpace(data)
	if group == "" {
		group = ch.UUID
	}
	if strings.Trim(group, "0123456789") == "" {
		s.logf("sched_cancel: task ids not simulated", "id", group)
		return
	}
	for _, c := range s.chans {
		s.cancelSchedLocked(c, group)
	}
}

// executeOnAnswerLocked runs the applications ("<app> <data>") of the
// channel variables whose name starts with execute_on_answer when the
// channel answers, in the order they were set, as FreeSWITCH 1.10
// (switch_channel_execute_on) does. Only sched_hangup and sched_cancel
// are simulated; others are logged.
func (s *Switch) executeOnAnswerLocked(ch *call.Channel) {
	for _, k := range slices.Clone(ch.Vars.Keys) {
		if !strings.HasPrefix(strings.ToLower(k), "execute_on_answer") {
			continue
		}
		v := strings.TrimSpace(ch.Vars.Get(k))
		app, data, _ := strings.Cut(v, " ")
		switch app {
		case "sched_hangup":
			s.schedHangupAppLocked(ch, data)
		case "sched_cancel":
			s.schedCancelAppLocked(ch, data)
		case "":
		default:
			s.logf("execute_on_answer: application not simulated", "application", app)
		}
	}
}
