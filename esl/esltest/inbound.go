package esltest

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Inbound simulates a call from caller to destination arriving on the
// "internal" sofia profile (context "public"): the leg is created, the
// dialplan is fetched from DialplanURL as mod_xml_curl would, and executed.
// It returns the new leg's UUID once the leg exists.
func (s *Server) Inbound(ctx context.Context, caller, destination string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return s.startInbound(caller, destination)
}

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

func (s *Server) startInbound(caller, dest string) (string, error) {
	if !validToken(caller) || !validToken(dest) {
		return "", errors.New("INVALID_NUMBER_FORMAT")
	}
	s.mu.Lock()
	s.init()
	if s.closed {
		s.mu.Unlock()
		return "", errors.New("SYSTEM_SHUTDOWN")
	}
	now := s.clk.now()
	s.sessions++
	id := uuid.NewString()
	ch := &channel{uuid: id, direction: "inbound", created: now, sessionID: s.sessions,
		callState: "DOWN", answerState: "ringing", hitDialplan: true, killCh: make(chan struct{}),
		done: make(chan struct{}), answerCh: make(chan struct{}), destNumber: dest}
	ch.name = "sofia/internal/" + caller + "@127.0.0.1:5070"
	ch.prof = profile{direction: "inbound", logicalDirection: "inbound", username: caller, dialplan: "XML",
		cidName: caller, cidNumber: caller, origCIDName: caller, origCIDNumber: caller,
		networkAddr: "127.0.0.1", ani: caller, destination: dest, source: "mod_sofia", context: "public",
		channelName: ch.name, index: 1, created: now}
	v := &ch.v
	v.set("direction", "inbound")
	v.set("uuid", id)
	v.set("call_uuid", id)
	v.set("session_id", strconv.Itoa(ch.sessionID))
	v.set("sip_from_user", caller)
	v.set("sip_from_port", "5070")
	v.set("sip_from_uri", caller+"@127.0.0.1:5070")
	v.set("sip_from_host", "127.0.0.1")
	v.set("video_media_flow", "disabled")
	v.set("text_media_flow", "disabled")
	v.set("channel_name", ch.name)
	v.set("sip_call_id", id+"@127.0.0.1")
	v.set("sip_local_network_addr", "127.0.0.1")
	v.set("sip_network_ip", "127.0.0.1")
	v.set("sip_network_port", "5070")
	v.set("sip_invite_stamp", usec(now))
	v.set("sip_received_ip", "127.0.0.1")
	v.set("sip_received_port", "5070")
	v.set("sip_via_protocol", "udp")
	v.set("sofia_profile_name", "internal")
	v.set("sofia_profile_url", "sip:mod_sofia@127.0.0.1:5080")
	v.set("recovery_profile_name", "internal")
	v.set("sip_req_user", dest)
	v.set("sip_req_uri", dest+"@127.0.0.1:5080")
	v.set("sip_to_user", dest)
	v.set("sip_to_uri", dest+"@127.0.0.1:5080")
	v.set("sip_to_host", "127.0.0.1")
	v.set("max_forwards", "70")
	v.set("rtp_use_codec_string", "PCMU,PCMA")
	v.set("remote_audio_media_flow", "sendrecv")
	v.set("audio_media_flow", "sendrecv")
	v.set("remote_media_ip", "127.0.0.1")
	v.set("remote_media_port", "6100")
	v.set("read_codec", "PCMU")
	v.set("original_read_codec", "PCMU")
	v.set("read_rate", "8000")
	v.set("original_read_rate", "8000")
	v.set("write_codec", "PCMU")
	v.set("write_rate", "8000")
	v.set("dtmf_type", "info")
	v.set("endpoint_disposition", "RECEIVED")
	s.chans[id] = ch
	if n := s.liveCountLocked(); n > s.peak {
		s.peak = n
	}
	ch.running, ch.stateNum, ch.bare = "CS_NEW", 0, true
	s.emitLocked(ch, "CHANNEL_STATE", "switch_channel.c", "switch_channel_perform_set_running_state", 2408, nil, nil)
	ch.bare = false
	s.codecLocked(ch)
	s.stateLocked(ch, "CS_INIT")
	ch.stateNum = 2
	s.emitLocked(ch, "CHANNEL_CREATE", "switch_core_state_machine.c", "switch_core_session_run", 626, nil, nil)
	ch.running = "CS_ROUTING"
	s.callStateLocked(ch, "RINGING")
	s.stateLocked(ch, "CS_ROUTING")
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		s.runInbound(ch)
	}()
	return id, nil
}

// Dialplan XML as mod_xml_curl returns it.
type xmlDocument struct {
	XMLName  xml.Name     `xml:"document"`
	Sections []xmlSection `xml:"section"`
}

type xmlSection struct {
	Name     string       `xml:"name,attr"`
	Result   *xmlResult   `xml:"result"`
	Contexts []xmlContext `xml:"context"`
}

type xmlResult struct {
	Status string `xml:"status,attr"`
}

type xmlContext struct {
	Name       string         `xml:"name,attr"`
	Extensions []xmlExtension `xml:"extension"`
}

type xmlExtension struct {
	Name       string         `xml:"name,attr"`
	Conditions []xmlCondition `xml:"condition"`
}

type xmlCondition struct {
	Field       string      `xml:"field,attr"`
	Expression  string      `xml:"expression,attr"`
	Actions     []xmlAction `xml:"action"`
	AntiActions []xmlAction `xml:"anti-action"`
}

type xmlAction struct {
	Application string `xml:"application,attr"`
	Data        string `xml:"data,attr"`
}

// dialplanRequestLocked builds the form body mod_xml_curl POSTs.
func (s *Server) dialplanRequestLocked(ch *channel) string {
	e := s.newEventLocked("REQUEST_PARAMS", "mod_dialplan_xml.c", "dialplan_xml_locate", 610)
	ch.appendChannelData(e)
	for _, k := range ch.v.keys {
		e.add("variable_"+k, ch.v.m[k])
	}
	ch.prof.appendTo(e, "Hunt-", ch, true)
	var b strings.Builder
	b.WriteString("hostname=" + urlEncode(s.Hostname) + "&section=dialplan&tag_name=&key_name=&key_value=")
	for _, h := range e.headers {
		b.WriteString("&" + h.name + "=" + urlEncode(h.value))
	}
	return b.String()
}

// fetchDialplan POSTs the request and returns the actions to run, or a
// hangup cause when there is no route.
func (s *Server) fetchDialplan(ch *channel) ([]xmlAction, []string, string) {
	if s.DialplanURL == "" {
		return nil, nil, "NO_ROUTE_DESTINATION"
	}
	s.mu.Lock()
	body := s.dialplanRequestLocked(ch)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, s.DialplanTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.DialplanURL, strings.NewReader(body))
	if err != nil {
		s.Logger.Warn("esltest: dialplan request", "err", err)
		return nil, nil, "NO_ROUTE_DESTINATION"
	}
	req.Header.Set("User-Agent", "freeswitch-xml/1.0")
	req.Header.Set("Accept", "*/*")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if s.DialplanUser != "" || s.DialplanPassword != "" {
		req.SetBasicAuth(s.DialplanUser, s.DialplanPassword)
	}
	resp, err := s.httpClient.Do(req)
	if err != nil {
		s.Logger.Warn("esltest: dialplan request failed", "uuid", ch.uuid, "err", err)
		return nil, nil, "NO_ROUTE_DESTINATION"
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		s.Logger.Warn("esltest: dialplan response", "uuid", ch.uuid, "status", resp.StatusCode, "err", err)
		return nil, nil, "NO_ROUTE_DESTINATION"
	}
	var doc xmlDocument
	if err := xml.Unmarshal(data, &doc); err != nil {
		s.Logger.Warn("esltest: dialplan XML", "uuid", ch.uuid, "err", err)
		return nil, nil, "NO_ROUTE_DESTINATION"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sec := range doc.Sections {
		if sec.Name != "dialplan" || sec.Result != nil {
			continue
		}
		for _, cx := range sec.Contexts {
			if cx.Name != ch.prof.context {
				continue
			}
			for _, ext := range cx.Extensions {
				if acts, caps, ok := s.matchExtensionLocked(ch, ext); ok {
					return acts, caps, ""
				}
			}
		}
	}
	return nil, nil, "NO_ROUTE_DESTINATION"
}

// matchExtensionLocked evaluates an extension's conditions (all must
// match; anti-actions run for a failed condition that has them).
func (s *Server) matchExtensionLocked(ch *channel, ext xmlExtension) ([]xmlAction, []string, bool) {
	var acts []xmlAction
	var caps []string
	for _, c := range ext.Conditions {
		if c.Field == "" && c.Expression == "" {
			acts = append(acts, c.Actions...)
			continue
		}
		value := s.fieldLocked(ch, c.Field)
		re, err := regexp.Compile(c.Expression)
		if err != nil {
			return nil, nil, false
		}
		m := re.FindStringSubmatch(value)
		if m == nil {
			if len(c.AntiActions) > 0 {
				return append(acts, c.AntiActions...), caps, true
			}
			return nil, nil, false
		}
		caps = m
		acts = append(acts, c.Actions...)
	}
	return acts, caps, len(ext.Conditions) > 0
}

func (s *Server) fieldLocked(ch *channel, field string) string {
	if strings.HasPrefix(field, "${") {
		return expandVars(ch, field, nil)
	}
	if v, ok := profileField(ch, field); ok {
		return v
	}
	return ch.v.get(field)
}

// profileField returns a caller-profile field (or the channel uuid) by the
// name dialplan conditions and ${...} references use; ok is false for
// names that are channel variables instead.
func profileField(ch *channel, name string) (v string, ok bool) {
	switch name {
	case "destination_number":
		return ch.prof.destination, true
	case "caller_id_number":
		return ch.prof.cidNumber, true
	case "caller_id_name":
		return ch.prof.cidName, true
	case "ani":
		return ch.prof.ani, true
	case "context":
		return ch.prof.context, true
	case "network_addr":
		return ch.prof.networkAddr, true
	case "username":
		return ch.prof.username, true
	case "uuid":
		return ch.uuid, true
	}
	return "", false
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}|\$([0-9])`)

// expandVars substitutes ${var} (channel variables and caller-profile
// fields) and $N (regex captures of the matched condition).
func expandVars(ch *channel, s string, caps []string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if m[1] != '{' {
			n := int(m[1] - '0')
			if n < len(caps) {
				return caps[n]
			}
			return ""
		}
		name := m[2 : len(m)-1]
		if v, ok := profileField(ch, name); ok {
			return v
		}
		return ch.v.get(name)
	})
}

// runInbound fetches and executes the dialplan of an inbound leg, then
// hangs it up when the dialplan ends or the caller hangs up.
func (s *Server) runInbound(ch *channel) {
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
		killed := ch.killed
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
	if ch.answered.IsZero() {
		disp = "send_refuse"
	}
	s.requestHangupLocked(ch, "NORMAL_CLEARING", disp)
	s.mu.Unlock()
	s.finishLeg(ch, nil)
}

func expandDeferred(ch *channel, data string, caps []string, mu interface {
	Lock()
	Unlock()
}) string {
	mu.Lock()
	defer mu.Unlock()
	return expandVars(ch, data, caps)
}

// execApp runs one dialplan application on an inbound leg; it returns false
// when the dialplan must stop.
func (s *Server) execApp(ch *channel, app, data string) bool {
	s.mu.Lock()
	s.startAppLocked(ch, app, data)
	s.mu.Unlock()
	complete := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if ch.killed {
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
				setVarLocked(ch, d)
			} else if !nolocal {
				if v == "" {
					ch.v.del(k)
				} else {
					ch.v.set(k, v)
				}
			}
			if app == "export" {
				list := ch.v.get("export_vars")
				if list == "" {
					list = k
				} else if !strings.Contains(","+list+",", ","+k+",") {
					list += "," + k
				}
				ch.v.set("export_vars", list)
				if nolocal {
					ch.v.set("nolocal:"+k, v)
				}
			}
		}
		s.mu.Unlock()
		return complete()
	case "answer":
		s.mu.Lock()
		if ch.answered.IsZero() {
			s.answerLocked(ch)
		}
		s.mu.Unlock()
		return complete()
	case "pre_answer":
		s.mu.Lock()
		if ch.progressMedia.IsZero() && ch.answered.IsZero() {
			s.progressMediaLocked(ch)
		}
		s.mu.Unlock()
		return complete()
	case "ring_ready":
		s.mu.Lock()
		if ch.progress.IsZero() {
			ch.progress = s.clk.now()
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
		ch.recs = append(ch.recs, data)
		e := s.newEventLocked("RECORD_START", "switch_ivr_async.c", "record_callback", 1278)
		ch.appendChannelData(e)
		e.add("Record-File-Path", data)
		s.dispatchLocked(e)
		s.mu.Unlock()
		return complete()
	case "sched_hangup":
		s.mu.Lock()
		s.schedHangupAppLocked(ch, data)
		s.mu.Unlock()
		return complete()
	case "hangup":
		s.mu.Lock()
		disp := "send_bye"
		if ch.answered.IsZero() {
			disp = "send_refuse"
		}
		s.requestHangupLocked(ch, normalizeCause(strings.TrimSpace(data)), disp)
		s.mu.Unlock()
		return false
	case "bridge":
		bridged, cause := s.runBridgeApp(ch, data)
		s.mu.Lock()
		if ch.killed {
			s.mu.Unlock()
			return false
		}
		if !bridged {
			ch.v.set("originate_disposition", cause)
			ch.v.set("DIALSTATUS", dialStatus(cause))
			cont := continueOnFail(ch.v.get("continue_on_fail"), cause)
			if !cont {
				disp := "send_bye"
				if ch.answered.IsZero() {
					disp = "send_refuse"
				}
				s.requestHangupLocked(ch, cause, disp)
				s.mu.Unlock()
				return false
			}
			s.mu.Unlock()
			return complete()
		}
		after := ch.v.get("hangup_after_bridge")
		s.mu.Unlock()
		if isTrue(after) {
			s.mu.Lock()
			s.requestHangupLocked(ch, "NORMAL_CLEARING", "send_bye")
			s.mu.Unlock()
			return false
		}
		return complete()
	}
	s.Logger.Warn("esltest: dialplan application not simulated; skipped", "app", app, "uuid", ch.uuid)
	return complete()
}

func isTrue(v string) bool {
	switch strings.ToLower(v) {
	case "true", "yes", "on", "1", "enabled", "active", "allow":
		return true
	}
	return false
}

// continueOnFail applies the continue_on_fail variable: true, or a list of
// causes (names or numbers) for which the dialplan continues.
func continueOnFail(v, cause string) bool {
	if v == "" {
		return false
	}
	if isTrue(v) {
		return true
	}
	for _, c := range strings.Split(v, ",") {
		c = strings.TrimSpace(c)
		if strings.EqualFold(c, cause) || c == strconv.Itoa(causeCode[cause]) {
			return true
		}
	}
	return false
}

func dialStatus(cause string) string {
	switch cause {
	case "USER_BUSY":
		return "BUSY"
	case "NO_ANSWER", "NO_USER_RESPONSE":
		return "NOANSWER"
	case "ORIGINATOR_CANCEL":
		return "CANCEL"
	}
	return "CONGESTION"
}

// schedHangupAppLocked runs the dialplan application "sched_hangup
// [+]<time> [<cause>]" on ch: '+' is seconds from now, otherwise an epoch.
func (s *Server) schedHangupAppLocked(ch *channel, data string) {
	f := strings.Fields(data)
	if len(f) == 0 {
		return
	}
	cause := "ALLOTTED_TIMEOUT"
	if len(f) > 1 {
		cause = normalizeCause(f[1])
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(f[0], "+"), 10, 64)
	if err != nil {
		return
	}
	d := time.Duration(n) * time.Second
	if !strings.HasPrefix(f[0], "+") {
		d = time.Unix(n, 0).Sub(s.clk.now())
	}
	s.scheduleHangupLocked(ch, d, cause)
}

// executeOnAnswerLocked runs the application in the channel variable
// execute_on_answer ("<app> <data>") when the channel answers, as
// FreeSWITCH does. Only sched_hangup is simulated; others are logged.
func (s *Server) executeOnAnswerLocked(ch *channel) {
	v := strings.TrimSpace(ch.v.get("execute_on_answer"))
	if v == "" {
		return
	}
	app, data, _ := strings.Cut(v, " ")
	switch app {
	case "sched_hangup":
		s.schedHangupAppLocked(ch, data)
	default:
		s.logf("execute_on_answer: application not simulated", "application", app)
	}
}
