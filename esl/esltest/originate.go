package esltest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// setupDelay is the simulated time between sending an INVITE and the far
// end's first response.
const setupDelay = 20 * time.Millisecond

// endpoint is a parsed dial string.
type endpoint struct {
	vars    vars   // {global} and [local] variables, in order
	kind    string // "sofia", "loopback", "error"
	profile string // sofia profile; "gateway" for gateways
	gateway string
	number  string
	host    string
	raw     string // dial string without variables
	cause   string // for error/<cause>
}

// parseVarBlock splits "a=b,c='x,y'" into ordered variables. Values may be
// single-quoted to protect commas; "\," is an escaped comma.
func parseVarBlock(s string, into *vars) {
	var parts []string
	var cur strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			cur.WriteByte(s[i+1])
			i++
		case c == '\'':
			quoted = !quoted
		case c == ',' && !quoted:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	parts = append(parts, cur.String())
	for _, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		if !ok || strings.TrimSpace(k) == "" {
			continue
		}
		into.set(strings.TrimSpace(k), v)
	}
}

// blockEnd returns the index of the bracket that closes the variable
// block ds starts with, or -1. Brackets of the same kind nest (a CDR
// hook holds "{name}" references) and escaped characters are skipped.
func blockEnd(ds string) int {
	open := ds[0]
	closer := map[byte]byte{'{': '}', '[': ']', '<': '>'}[open]
	depth := 0
	for i := 0; i < len(ds); i++ {
		switch ds[i] {
		case '\\':
			i++
		case open:
			depth++
		case closer:
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// errBadDialString reports a dial string that names no usable endpoint.
var errBadDialString = errors.New("esltest: bad dial string")

// parseEndpoint parses "{vars}[vars]tech/..." dial strings.
func parseEndpoint(ds string) (*endpoint, error) {
	ep := &endpoint{}
	for len(ds) > 0 && (ds[0] == '{' || ds[0] == '[' || ds[0] == '<') {
		end := blockEnd(ds)
		if end < 0 {
			return nil, errBadDialString
		}
		parseVarBlock(ds[1:end], &ep.vars)
		ds = ds[end+1:]
	}
	ep.raw = ds
	parts := strings.Split(ds, "/")
	switch parts[0] {
	case "sofia":
		if len(parts) < 3 {
			return nil, errBadDialString
		}
		if parts[1] == "gateway" {
			if len(parts) < 4 || parts[2] == "" {
				return nil, errBadDialString
			}
			ep.kind, ep.profile, ep.gateway = "sofia", "gateway", parts[2]
			ep.number = strings.Join(parts[3:], "/")
		} else {
			ep.kind, ep.profile = "sofia", parts[1]
			ep.number = strings.Join(parts[2:], "/")
		}
		ep.number = strings.TrimPrefix(ep.number, "sip:")
		if user, host, ok := strings.Cut(ep.number, "@"); ok {
			ep.number, ep.host = user, host
		}
	case "loopback":
		if len(parts) < 2 {
			return nil, errBadDialString
		}
		ep.kind, ep.number = "loopback", parts[1]
	case "error":
		if len(parts) < 2 {
			return nil, errBadDialString
		}
		ep.kind, ep.cause = "error", normalizeCause(parts[1])
		return ep, nil
	default:
		ep.kind = parts[0]
		return ep, nil
	}
	if ep.number == "" {
		return nil, errBadDialString
	}
	return ep, nil
}

// channelName is the Channel-Name FreeSWITCH gives such a leg.
func (ep *endpoint) channelName() string {
	switch {
	case ep.kind == "loopback":
		return "loopback/" + ep.number + "-a"
	case ep.profile == "gateway":
		return "sofia/gateway/" + ep.gateway + "/" + ep.number
	case ep.host != "":
		return "sofia/" + ep.profile + "/" + ep.number + "@" + ep.host
	}
	return "sofia/" + ep.profile + "/" + ep.number
}

// application is an "&app(arg)" originate target, or the last
// application of an inline one ("set:a=b,park inline"), whose sets run
// first.
type application struct {
	name, arg string
	sets      []string
}

// parseOriginate splits "originate <dialstring> &app(arg) [...]" arguments.
func parseOriginate(arg string) (string, application, error) {
	arg = strings.TrimSpace(arg)
	// The dial string ends at the first space outside {} and [].
	depth := 0
	split := -1
	for i := 0; i < len(arg); i++ {
		switch arg[i] {
		case '{', '[', '<':
			depth++
		case '}', ']', '>':
			depth--
		case ' ':
			if depth == 0 && split < 0 {
				split = i
			}
		}
		if split >= 0 {
			break
		}
	}
	if split < 0 {
		return "", application{}, errors.New("missing target")
	}
	ds, rest := arg[:split], strings.TrimSpace(arg[split:])
	if apps, ok := strings.CutSuffix(rest, " inline"); ok {
		app, err := parseInline(apps)
		return ds, app, err
	}
	if !strings.HasPrefix(rest, "&") {
		return "", application{}, errors.New("only &application and inline targets are simulated")
	}
	rest = rest[1:]
	name := rest
	var appArg string
	if i := strings.IndexByte(rest, '('); i >= 0 {
		name = rest[:i]
		depth := 0
		end := -1
		for j := i; j < len(rest); j++ {
			if rest[j] == '(' {
				depth++
			} else if rest[j] == ')' {
				depth--
				if depth == 0 {
					end = j
					break
				}
			}
		}
		if end < 0 {
			return "", application{}, errors.New("unbalanced parentheses")
		}
		appArg = rest[i+1 : end]
	} else if sp := strings.IndexByte(rest, ' '); sp >= 0 {
		name, appArg = rest[:sp], strings.TrimSpace(rest[sp+1:])
	}
	return ds, application{name: name, arg: appArg}, nil
}

// parseInline reads an inline dialplan "app[:arg],app[:arg]" of set
// applications followed by one other application.
func parseInline(apps string) (application, error) {
	var app application
	list := strings.Split(apps, ",")
	for i, a := range list {
		name, arg, _ := strings.Cut(a, ":")
		if i < len(list)-1 {
			if name != "set" {
				return app, errors.New("only set may come before the last inline application")
			}
			app.sets = append(app.sets, arg)
			continue
		}
		app.name, app.arg = name, arg
	}
	return app, nil
}

const originateUsage = "-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n"

// originateAPI runs the originate command; result is called once, with
// s.mu held, with the command output ("+OK <uuid>\n" or "-ERR <CAUSE>\n"),
// at the point real FreeSWITCH returns.
func (s *Server) originateAPI(arg string, result func(string)) {
	fail := func(out string) {
		s.mu.Lock()
		result(out)
		s.mu.Unlock()
	}
	ds, app, err := parseOriginate(arg)
	if err != nil {
		fail(originateUsage)
		return
	}
	switch app.name {
	case "park", "bridge", "playback", "echo":
	default:
		fail("-ERR APPLICATION_NOT_SIMULATED\n")
		return
	}
	ep, err := parseEndpoint(ds)
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
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runOutbound(ch, ep, &app, result)
	}()
}

// newOutboundLocked creates an outbound leg for ep; parent is the leg that
// originates it from a bridge (nil for originate). If the endpoint cannot
// be used it returns nil and the originate output.
func (s *Server) newOutboundLocked(ep *endpoint, parent *channel) (*channel, string) {
	switch ep.kind {
	case "sofia", "loopback":
	case "error":
		return nil, "-ERR " + ep.cause + "\n"
	default:
		return nil, "-ERR CHAN_NOT_IMPLEMENTED\n"
	}
	if s.MaxSessions > 0 && s.liveCountLocked() >= s.MaxSessions {
		return nil, "-ERR DESTINATION_OUT_OF_ORDER\n"
	}

	id := ep.vars.get("origination_uuid")
	if id == "" {
		id = uuid.NewString()
	}
	if s.chans[id] != nil {
		return nil, "-ERR DESTINATION_OUT_OF_ORDER\n"
	}
	if s.paused {
		s.Logger.Info("esltest: originate refused: paused", "uuid", id)
		return nil, "-ERR DESTINATION_OUT_OF_ORDER\n"
	}
	if s.maxSess < 0 || s.maxSess > 0 && len(s.chans) >= s.maxSess {
		s.Logger.Info("esltest: originate refused: over session limit", "limit", s.maxSess, "uuid", id)
		return nil, "-ERR DESTINATION_OUT_OF_ORDER\n"
	}
	now := s.clk.now()
	s.sessions++
	ch := &channel{uuid: id, direction: "outbound", created: now, sessionID: s.sessions,
		callState: "DOWN", answerState: "ringing", killCh: make(chan struct{}), done: make(chan struct{}), answerCh: make(chan struct{}),
		destNumber: ep.number, rule: s.Script.Lookup(ep.number)}
	if ep.profile == "gateway" && s.gatewayRefusesLocked(ep.gateway) {
		ch.rule = Rule{Outcome: OutcomeFail}
	}
	refusal := ""
	switch {
	case ep.kind != "sofia":
	case ep.profile == "gateway":
		if s.gatewayDownLocked(ep.gateway) {
			// "Gateway NAME is down!": the same events as an unknown
			// profile (FreeSWITCH 1.10.12).
			refusal = "-ERR GATEWAY_DOWN\n"
		}
	case ep.profile != "internal" && ep.profile != "external":
		refusal = "-ERR INVALID_PROFILE\n"
	}
	if refusal != "" {
		// mod_sofia refuses before a session exists: only CHANNEL_DESTROY.
		ch.shadow = true
		ch.name = "N/A"
		ch.running, ch.stateNum = "CS_NONE", 0
		ch.v.set("direction", "outbound")
		ch.v.set("is_outbound", "true")
		ch.v.set("uuid", id)
		ch.v.set("call_uuid", id)
		ch.v.set("session_id", strconv.Itoa(ch.sessionID))
		e := s.newEventLocked("CHANNEL_DESTROY", "switch_core_session.c", "switch_core_session_perform_destroy", 1584)
		ch.appendChannelData(e)
		s.dispatchLocked(e)
		return nil, refusal
	}
	ch.name = ep.channelName()
	cidName, cidNum := "", "0000000000"
	if parent != nil {
		cidName, cidNum = parent.prof.cidName, parent.prof.cidNumber
	}
	if v := ep.vars.get("origination_caller_id_name"); v != "" {
		cidName = v
	}
	if v := ep.vars.get("origination_caller_id_number"); v != "" {
		cidNum = v
	}
	// A leg dialled from a session keeps that session's caller as its
	// Orig- caller id, whatever number it presents (the real switch shows
	// the real caller there on a binding's outbound leg).
	origName, origNum := cidName, cidNum
	if parent != nil {
		origName, origNum = parent.prof.cidName, parent.prof.cidNumber
	}
	ch.prof = profile{direction: "outbound", logicalDirection: "outbound", cidName: cidName, cidNumber: cidNum,
		origCIDName: origName, origCIDNumber: origNum, calleeName: "Outbound Call", calleeNumber: ep.number,
		ani: cidNum, destination: ep.number, source: "src/switch_ivr_originate.c", context: "default",
		channelName: ch.name, index: 1, created: now}
	v := &ch.v
	v.set("direction", "outbound")
	v.set("is_outbound", "true")
	v.set("uuid", id)
	v.set("call_uuid", id)
	v.set("session_id", strconv.Itoa(ch.sessionID))
	if ep.kind == "sofia" {
		profileName := ep.profile
		if profileName == "gateway" {
			profileName = "external"
		}
		host := ep.host
		if host == "" {
			host = ep.gateway
		}
		v.set("sip_local_network_addr", "127.0.0.1")
		v.set("sip_profile_name", profileName)
		v.set("video_media_flow", "disabled")
		v.set("text_media_flow", "disabled")
		v.set("channel_name", ch.name)
		v.set("sip_destination_url", "sip:"+ep.number+"@"+host)
		if ep.gateway != "" {
			v.set("sip_gateway_name", ep.gateway)
		}
	} else {
		v.set("channel_name", ch.name)
	}
	for _, k := range ep.vars.keys {
		v.set(k, ep.vars.m[k])
	}
	executeOnOriginateLocked(ch)
	v.set("originate_early_media", "true")
	v.set("originate_endpoint", ep.kind)
	if ep.kind == "sofia" {
		v.set("rtp_use_codec_string", "PCMU,PCMA")
		v.set("local_media_ip", "127.0.0.1")
		v.set("local_media_port", strconv.Itoa(16384+2*(ch.sessionID%8000)))
		v.set("advertised_media_ip", "127.0.0.1")
		v.set("audio_media_flow", "sendrecv")
		v.set("sip_outgoing_contact_uri", "<sip:mod_sofia@127.0.0.1:5080>")
		v.set("sip_req_uri", ep.number+"@"+ep.host)
		v.set("sofia_profile_name", v.get("sip_profile_name"))
		v.set("recovery_profile_name", v.get("sip_profile_name"))
		v.set("sofia_profile_url", "sip:mod_sofia@127.0.0.1:5080")
	}
	if parent != nil {
		ch.other, ch.otherType = parent, "originator"
		// A leg dialled from a session (the bridge application) names
		// its originator from its first events on, as the captures show.
		ch.v.set("originator", parent.uuid)
		snap := parent.prof
		ch.otherProf = &snap
		// The B leg's caller profile is cloned from the originator's.
		ch.prof.username, ch.prof.dialplan = parent.prof.username, parent.prof.dialplan
		ch.prof.networkAddr = parent.prof.networkAddr
	}
	s.chans[id] = ch
	if n := s.liveCountLocked(); n > s.peak {
		s.peak = n
	}
	return ch, ""
}

// emit sends a channel event: common headers, pre headers, channel data,
// post headers.
func (s *Server) emitLocked(ch *channel, name, file, fn string, line int, pre, post []header) {
	e := s.newEventLocked(name, file, fn, line)
	e.headers = append(e.headers, pre...)
	ch.appendChannelData(e)
	e.headers = append(e.headers, post...)
	s.dispatchLocked(e)
}

func (s *Server) stateLocked(ch *channel, running string) {
	ch.running = running
	if n, ok := stateNumber[running]; ok && n > ch.stateNum || running == "CS_EXCHANGE_MEDIA" || running == "CS_EXECUTE" {
		ch.stateNum = n
	}
	s.emitLocked(ch, "CHANNEL_STATE", "switch_channel.c", "switch_channel_perform_set_running_state", 2408, nil, nil)
}

func (s *Server) callStateLocked(ch *channel, cs string) {
	old := ch.callState
	ch.callState = cs
	s.emitLocked(ch, "CHANNEL_CALLSTATE", "switch_channel.c", "switch_channel_perform_set_callstate", 301,
		[]header{{"Original-Channel-Call-State", old}, {"Channel-Call-State-Number", strconv.Itoa(callStateNumber[cs])}}, nil)
}

func (s *Server) codecLocked(ch *channel) {
	if ch.codec {
		return
	}
	ch.codec = true
	s.emitLocked(ch, "CODEC", "switch_core_codec.c", "switch_core_session_set_real_read_codec", 168, nil,
		[]header{{"channel-read-codec-name", "PCMU"}, {"channel-read-codec-rate", "8000"}, {"channel-read-codec-bit-rate", "64000"}})
	s.emitLocked(ch, "CODEC", "switch_core_codec.c", "switch_core_session_set_write_codec", 450, nil,
		[]header{{"Channel-Write-Codec-Name", "PCMU"}, {"Channel-Write-Codec-Rate", "8000"}, {"Channel-Write-codec-bit-rate", "64000"}})
}

// mediaVarsLocked sets what sofia learns from the far end's SDP.
func mediaVarsLocked(ch *channel, disposition string) {
	v := &ch.v
	v.setIfAbsent("sip_network_ip", "127.0.0.1")
	v.setIfAbsent("sip_to_user", ch.destNumber)
	v.set("ep_codec_string", "CORE_PCM_MODULE.PCMU@8000h@20i@64000b")
	v.set("remote_audio_media_flow", "sendrecv")
	v.set("read_codec", "PCMU")
	v.set("original_read_codec", "PCMU")
	v.set("read_rate", "8000")
	v.set("original_read_rate", "8000")
	v.set("write_codec", "PCMU")
	v.set("write_rate", "8000")
	v.set("remote_media_ip", "127.0.0.1")
	v.set("remote_media_port", "6000")
	v.set("endpoint_disposition", disposition)
}

func (s *Server) progressLocked(ch *channel) {
	ch.progress = s.clk.now()
	ch.prof.networkAddr = "127.0.0.1"
	ch.v.set("sip_reply_host", "127.0.0.1")
	ch.v.set("sip_network_ip", "127.0.0.1")
	ch.v.set("sip_to_user", ch.destNumber)
	ch.v.set("sip_from_user", ch.prof.cidNumber)
	s.emitLocked(ch, "CHANNEL_PROGRESS", "switch_channel.c", "switch_channel_perform_mark_ring_ready_value", 3505, nil, nil)
	s.callStateLocked(ch, "RINGING")
}

func (s *Server) progressMediaLocked(ch *channel) {
	ch.progressMedia = s.clk.now()
	ch.prof.networkAddr = "127.0.0.1"
	mediaVarsLocked(ch, "EARLY MEDIA")
	s.codecLocked(ch)
	ch.answerState = "early"
	s.emitLocked(ch, "CHANNEL_PROGRESS_MEDIA", "switch_channel.c", "switch_channel_perform_mark_pre_answered", 3560, nil, nil)
	s.callStateLocked(ch, "EARLY")
}

func (s *Server) answerLocked(ch *channel) {
	ch.answered = s.clk.now()
	close(ch.answerCh)
	ch.prof.networkAddr = "127.0.0.1"
	mediaVarsLocked(ch, "ANSWER")
	s.codecLocked(ch)
	ch.answerState = "answered"
	s.emitLocked(ch, "CHANNEL_ANSWER", "switch_channel.c", "switch_channel_perform_mark_answered", 3846, nil, nil)
	s.callStateLocked(ch, "ACTIVE")
	s.executeOnAnswerLocked(ch)
}

// startAppLocked moves the leg into CS_EXECUTE and emits CHANNEL_EXECUTE.
func (s *Server) startAppLocked(ch *channel, name, arg string) {
	if ch.running != "CS_EXECUTE" {
		s.stateLocked(ch, "CS_EXECUTE")
	}
	ch.app, ch.appArg, ch.appUUID = name, arg, uuid.NewString()
	ch.v.set("current_application", name)
	if arg != "" {
		ch.v.set("current_application_data", arg)
	} else {
		ch.v.del("current_application_data")
	}
	post := []header{{"Application", name}}
	if arg != "" {
		post = append(post, header{"Application-Data", arg})
	}
	post = append(post, header{"Application-UUID", ch.appUUID})
	s.emitLocked(ch, "CHANNEL_EXECUTE", "switch_core_session.c", "switch_core_session_exec", 2944, nil, post)
	if name == "park" {
		s.emitLocked(ch, "CHANNEL_PARK", "switch_ivr.c", "switch_ivr_park", 1002, nil, nil)
	}
}

// endAppLocked emits the end of the running application.
func (s *Server) endAppLocked(ch *channel) {
	if ch.app == "" {
		return
	}
	if ch.app == "park" {
		s.emitLocked(ch, "CHANNEL_UNPARK", "switch_ivr.c", "switch_ivr_park", 1213, nil, nil)
	}
	post := []header{{"Application", ch.app}}
	if ch.appArg != "" {
		post = append(post, header{"Application-Data", ch.appArg})
	}
	post = append(post, header{"Application-Response", "_none_"}, header{"Application-UUID", ch.appUUID})
	s.emitLocked(ch, "CHANNEL_EXECUTE_COMPLETE", "switch_core_session.c", "switch_core_session_exec", 2967, nil, post)
	ch.v.set("last_app", ch.app)
	if ch.appArg != "" {
		ch.v.set("last_arg", ch.appArg)
	}
	ch.app, ch.appArg = "", ""
}

// requestHangupLocked asks the leg's goroutine to hang up; the first
// request wins.
func (s *Server) requestHangupLocked(ch *channel, cause, disposition string) {
	if ch.killed {
		return
	}
	ch.killed = true
	ch.killCaus, ch.killDisp = cause, disposition
	close(ch.killCh)
}

// sleepLeg waits d of simulated time (forever if d < 0); false means the
// leg was asked to hang up or the server is closing.
func (s *Server) sleepLeg(ch *channel, d time.Duration) bool {
	return s.clk.sleep(s.ctx, d, ch.killCh)
}

func (s *Server) closing() bool { return s.ctx.Err() != nil }

// failLocked marks the leg for hangup with the far end's refusal.
func (s *Server) failLocked(ch *channel, cause, disposition string) {
	ch.prof.networkAddr = "127.0.0.1" // the refusal came from the far end
	s.requestHangupLocked(ch, cause, disposition)
}

// runOutbound drives an outbound leg from INVITE to destroy. app is the
// originate application (nil for a bridge's B leg); result receives the
// originate output once.
func (s *Server) runOutbound(ch *channel, ep *endpoint, app *application, result func(string)) {
	resultSent := false
	sendResult := func(out string) {
		if !resultSent {
			resultSent = true
			result(out)
		}
	}
	s.mu.Lock()
	ch.running, ch.stateNum = "CS_NONE", 1
	s.emitLocked(ch, "CHANNEL_OUTGOING", "switch_core_session.c", "switch_core_session_outgoing_channel", 768, nil, nil)
	s.stateLocked(ch, "CS_INIT")
	ch.stateNum = 2
	s.emitLocked(ch, "CHANNEL_CREATE", "switch_core_state_machine.c", "switch_core_session_run", 626, nil, nil)
	s.emitLocked(ch, "CHANNEL_ORIGINATE", "switch_core_state_machine.c", "switch_core_session_run", 632, nil, nil)
	s.stateLocked(ch, "CS_ROUTING")
	s.stateLocked(ch, "CS_CONSUME_MEDIA")
	timeout := 60 * time.Second
	for _, k := range []string{"originate_timeout", "leg_timeout", "call_timeout"} {
		if n, err := strconv.Atoi(ch.v.get(k)); err == nil && n > 0 {
			timeout = time.Duration(n) * time.Second
			break
		}
	}
	rule := ch.rule
	s.mu.Unlock()

	deadline := s.clk.now().Add(timeout)
	remaining := func() time.Duration { return deadline.Sub(s.clk.now()) }
	appStarted := false
	startApp := func() {
		// Called with s.mu held, at the point originate returns.
		sendResult("+OK " + ch.uuid + "\n")
		if app != nil {
			appStarted = true
			for _, set := range app.sets {
				s.startAppLocked(ch, "set", set)
				setVarLocked(ch, expandVars(ch, set, nil))
				s.endAppLocked(ch)
			}
			s.startAppLocked(ch, app.name, app.arg)
		}
	}

	ok := func() bool {
		if !s.sleepLeg(ch, setupDelay) {
			return false
		}
		if rule.RingMS > 0 || (rule.Outcome == OutcomeNoAnswer && rule.EarlyMediaMS == 0) {
			s.mu.Lock()
			s.progressLocked(ch)
			s.mu.Unlock()
			ring := ms(rule.RingMS)
			if rule.Outcome == OutcomeNoAnswer && rule.EarlyMediaMS == 0 {
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
			if rule.Outcome == OutcomeNoAnswer {
				early = -1
			}
			if !s.sleepLeg(ch, early) {
				return false
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		switch rule.Outcome {
		case OutcomeAnswer:
			s.answerLocked(ch)
			if !appStarted {
				if app != nil {
					ch.hitDialplan = true
					s.emitLocked(ch, "CALL_UPDATE", "switch_channel.c", "switch_channel_flip_cid", 3277, []header{{"Direction", "RECV"}}, nil)
				}
				startApp()
			}
			return true
		case OutcomeBusy:
			s.failLocked(ch, "USER_BUSY", "recv_refuse")
		case OutcomeUnallocated:
			s.failLocked(ch, "UNALLOCATED_NUMBER", "recv_refuse")
		case OutcomeRejected:
			s.failLocked(ch, "CALL_REJECTED", "recv_refuse")
		case OutcomeFail:
			s.failLocked(ch, "NORMAL_TEMPORARY_FAILURE", "recv_refuse")
		}
		return false
	}()
	if s.closing() {
		return
	}
	if ok && app != nil {
		switch app.name {
		case "bridge":
			s.runBridgeApp(ch, app.arg)
			if s.closing() {
				return
			}
			s.mu.Lock()
			s.requestHangupLocked(ch, "NORMAL_CLEARING", "send_bye")
			s.mu.Unlock()
		case "playback":
			if s.playback(ch, app.arg) {
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
func (s *Server) talk(ch *channel, rule Rule) {
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
func (s *Server) finishLeg(ch *channel, failed func(string)) {
	s.mu.Lock()
	cause, disp := ch.killCaus, ch.killDisp
	ch.hangupCause = cause
	ch.hungup = s.clk.now()
	ch.answerState = "hangup"
	ch.stateNum = 10
	partner := ch.other
	bridged := partner != nil && !ch.bridgedAt.IsZero()
	if bridged {
		ch.v.set("bridge_hangup_cause", cause)
	}
	if disp == "recv_refuse" {
		if code, phrase, ok := refusalStatus(cause); ok {
			// A final failure response from the far end, as FreeSWITCH
			// 1.10.12 records it when the response arrives, before the
			// hangup: CHANNEL_HANGUP already carries it (fixtures 29c,
			// 29e, 81).
			ch.v.set("sip_invite_failure_status", code)
			ch.v.set("sip_invite_failure_phrase", phrase)
			ch.v.set("sip_term_status", code)
			ch.v.set("proto_specific_hangup_cause", "sip:"+code)
			ch.v.set("sip_term_cause", strconv.Itoa(q850(cause)))
		}
	}
	s.emitLocked(ch, "CHANNEL_HANGUP", "switch_channel.c", "switch_channel_perform_hangup", 3445, nil, nil)
	// A bridge application decides itself what its leg does when the
	// bridge ends (hangup_after_bridge); otherwise the partner goes too.
	if partner != nil && (bridged || ch.role == "originator") && !(ch.role == "originatee" && partner.app == "bridge") {
		// FreeSWITCH's scheduler runs once a second and fires every task
		// due by then: a partner whose own sched_hangup falls in the same
		// second hangs up with its cause, not as the bridge's casualty
		// (max_duration ends both legs ALLOTTED_TIMEOUT).
		partnerCause := "NORMAL_CLEARING"
		if at := partner.schedAt; !at.IsZero() && at.Sub(ch.hungup) < time.Second {
			partnerCause = partner.schedCause
		}
		s.requestHangupLocked(partner, partnerCause, "send_bye")
		if !partner.killed {
			partner.v.set("bridge_hangup_cause", cause)
		}
	}
	s.mu.Unlock()
	if partner != nil && ch.role == "originator" {
		select {
		case <-partner.done:
		case <-s.ctx.Done():
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if bridged && ch.role == "originator" {
		s.emitLocked(ch, "CHANNEL_UNBRIDGE", "switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1879,
			[]header{{"Bridge-A-Unique-ID", ch.uuid}, {"Bridge-B-Unique-ID", partner.uuid}}, nil)
	}
	s.endAppLocked(ch)
	s.stateLocked(ch, "CS_HANGUP")
	s.callStateLocked(ch, "HANGUP")
	s.stateLocked(ch, "CS_REPORTING")
	ch.timestamps()
	ch.v.set("sip_hangup_disposition", disp)
	s.reportingHookLocked(ch)
	s.emitLocked(ch, "CHANNEL_HANGUP_COMPLETE", "switch_core_state_machine.c", "switch_core_session_reporting_state", 943,
		[]header{{"Hangup-Cause", cause}}, nil)
	if failed != nil {
		failed("-ERR " + cause + "\n")
	}
	ch.stateNum = 12
	s.emitLocked(ch, "CHANNEL_DESTROY", "switch_core_session.c", "switch_core_session_perform_destroy", 1584, nil, nil)
	s.stateLocked(ch, "CS_DESTROY")
	delete(s.chans, ch.uuid)
	close(ch.done)
	billed := time.Duration(0)
	if !ch.answered.IsZero() {
		billed = ch.hungup.Sub(ch.answered)
	}
	s.logf("esltest: call ended", "uuid", ch.uuid, "direction", ch.direction, "destination", ch.prof.destination,
		"cause", cause, "billmsec", billed.Milliseconds())
}

// playback emits the events of playing a file for 1 s of simulated time;
// it returns false if the leg was hung up meanwhile.
func (s *Server) playback(ch *channel, file string) bool {
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
func (s *Server) playbackEventsLocked(ch *channel, file string) {
	s.emitLocked(ch, "PLAYBACK_START", "switch_ivr_play_say.c", "switch_ivr_play_file", 1533, nil,
		[]header{{"Playback-File-Path", file}})
	s.emitLocked(ch, "PLAYBACK_STOP", "switch_ivr_play_say.c", "switch_ivr_play_file", 2063, nil,
		[]header{{"Playback-File-Path", file}, {"Playback-Status", "done"}})
}

// bridgeLocked joins a (the originator) and b and emits CHANNEL_BRIDGE.
func (s *Server) bridgeLocked(a, b *channel) {
	now := s.clk.now()
	a.other, b.other = b, a
	a.role, b.role = "originator", "originatee"
	a.otherType, b.otherType = "originatee", "originator"
	a.bridgedAt, b.bridgedAt = now, now
	for _, p := range [][2]*channel{{a, b}, {b, a}} {
		x, y := p[0], p[1]
		x.v.set("bridge_channel", y.name)
		x.v.set("bridge_uuid", y.uuid)
		x.v.set("signal_bond", y.uuid)
		x.v.set("last_sent_callee_id_name", y.prof.cidName)
		x.v.set("last_sent_callee_id_number", y.prof.cidNumber)
	}
	s.emitLocked(a, "CHANNEL_BRIDGE", "switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1689,
		[]header{{"Bridge-A-Unique-ID", a.uuid}, {"Bridge-B-Unique-ID", b.uuid}}, nil)
	// A real CHANNEL_BRIDGE carries none of these (0 of 11 captured);
	// later events and the CDR do.
	a.v.set("last_bridge_to", b.uuid)
	b.v.set("last_bridge_to", a.uuid)
	a.v.set("last_bridge_role", "originator")
	b.v.set("last_bridge_role", "originatee")
	a.v.set("bridge_to", b.uuid)
	if b.running != "CS_EXCHANGE_MEDIA" {
		s.stateLocked(b, "CS_EXCHANGE_MEDIA")
	}
	s.emitLocked(a, "CALL_UPDATE", "mod_sofia.c", "sofia_receive_message", 2100,
		[]header{{"Direction", "SEND"}, {"Sent-Callee-ID-Name", b.prof.calleeName}, {"Sent-Callee-ID-Number", b.prof.destination}, {"Bridged-To", b.uuid}}, nil)
	s.emitLocked(b, "CALL_UPDATE", "mod_sofia.c", "sofia_receive_message", 2100,
		[]header{{"Direction", "SEND"}, {"Sent-Callee-ID-Name", a.prof.cidName}, {"Sent-Callee-ID-Number", a.prof.cidNumber}, {"Bridged-To", a.uuid}}, nil)
}

// uuidBridge implements "uuid_bridge <a> <b>".
func (s *Server) uuidBridge(aID, bID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	// FreeSWITCH gives one answer for every refusal.
	const invalid = "-ERR Invalid uuid\n"
	a, b := s.chans[aID], s.chans[bID]
	if a == nil || a.shadow || a.killed || b == nil || b.shadow || b.killed || a == b {
		return invalid
	}
	if !a.bridgedAt.IsZero() || !b.bridgedAt.IsZero() {
		return invalid
	}
	if a.answered.IsZero() && a.progressMedia.IsZero() && b.answered.IsZero() && b.progressMedia.IsZero() {
		return invalid
	}
	ts := fmt.Sprintf("%d:%s:uuid_br:%s", s.clk.now().Unix(), uuid.NewString(), b.uuid)
	a.prof.transferSource = ts
	b.prof.transferSource = ts
	a.v.set("transfer_source", ts)
	b.v.set("transfer_source", ts)
	s.bridgeLocked(a, b)
	return "+OK " + bID + "\n"
}

// runBridgeApp executes "bridge <dialstring>" on leg a: it originates the B
// leg, bridges on its answer, and returns when the bridge is over or failed.
// It reports whether the bridge was established and the failure cause.
func (s *Server) runBridgeApp(a *channel, data string) (bool, string) {
	data = strings.TrimSpace(data)
	global, rest := "", data
	if strings.HasPrefix(rest, "{") {
		if end := blockEnd(rest); end > 0 {
			global, rest = rest[:end+1], rest[end+1:]
		}
	}
	// Each originate lists the legs it tried afresh (switch_ivr_originate.c
	// clears originate_causes first).
	s.mu.Lock()
	a.v.del("originate_causes")
	s.mu.Unlock()
	alts := splitOutsideQuotes(rest, '|')
	if len(alts) == 1 {
		return s.runBridgeOne(a, data)
	}
	// FreeSWITCH's sequential bridge: each dial string in turn, with the
	// shared variables, until one is bridged or one fails with a cause
	// fail_on_single_reject stops at (switch_ivr_originate.c: the cause's
	// name found in the value, case-insensitively; "!" negates; "true"
	// stops at any). Without it every failure goes on to the next.
	var shared vars
	if global != "" {
		parseVarBlock(global[1:len(global)-1], &shared)
	}
	reject := shared.get("fail_on_single_reject")
	var cause string
	for _, alt := range alts {
		var ok bool
		ok, cause = s.runBridgeOne(a, global+alt)
		if ok {
			return true, cause
		}
		s.mu.Lock()
		gone := a.killed
		s.mu.Unlock()
		if gone || cause == "ORIGINATOR_CANCEL" || cause == "SYSTEM_SHUTDOWN" || stopsSequence(reject, cause) {
			return false, cause
		}
	}
	return false, cause
}

// splitOutsideQuotes splits s at sep outside single quotes, as
// switch_separate_string splits a dial string's "|" list.
func splitOutsideQuotes(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case s[i] == '\'':
			quoted = !quoted
		case s[i] == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// pushOriginateCauseLocked records how a leg an originate created ended
// for it in the calling leg's originate_causes, as FreeSWITCH 1.10.12
// does after each dial string: "<uuid>;<cause>", NONE for the leg that
// was bridged, pushed as "ARRAY::first|:second" when there are several.
func pushOriginateCauseLocked(a *channel, uuid, cause string) {
	item := uuid + ";" + cause
	switch old := a.v.get("originate_causes"); {
	case old == "":
		a.v.set("originate_causes", item)
	case strings.HasPrefix(old, "ARRAY::"):
		a.v.set("originate_causes", old+"|:"+item)
	default:
		a.v.set("originate_causes", "ARRAY::"+old+"|:"+item)
	}
}

// stopsSequence applies fail_on_single_reject to a failed dial string of a
// sequential bridge.
func stopsSequence(reject, cause string) bool {
	if reject == "" {
		return false
	}
	if isTrue(reject) {
		return true
	}
	found := strings.Contains(strings.ToUpper(reject), strings.ToUpper(cause))
	if reject[0] == '!' {
		return !found
	}
	return found
}

// runBridgeOne bridges a to one dial string.
func (s *Server) runBridgeOne(a *channel, data string) (bool, string) {
	ep, err := parseEndpoint(strings.TrimSpace(data))
	s.mu.Lock()
	if err != nil {
		s.mu.Unlock()
		return false, "INVALID_URL"
	}
	// Variables exported from A reach the B leg.
	for _, k := range strings.Split(a.v.get("export_vars"), ",") {
		if k = strings.TrimSpace(k); k != "" && a.v.get(k) != "" {
			ep.vars.setIfAbsent(k, a.v.get(k))
		}
	}
	if t := a.v.get("call_timeout"); t != "" {
		ep.vars.setIfAbsent("originate_timeout", t)
	}
	b, out := s.newOutboundLocked(ep, a)
	if b == nil {
		s.mu.Unlock()
		return false, strings.TrimSuffix(strings.TrimPrefix(out, "-ERR "), "\n")
	}
	a.other, a.role = b, "originator"
	s.mu.Unlock()

	result := make(chan string, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runOutbound(b, ep, nil, func(out string) { result <- out })
	}()
	var res string
	select {
	case res = <-result:
	case <-a.killCh:
		s.mu.Lock()
		s.requestHangupLocked(b, "ORIGINATOR_CANCEL", "send_cancel")
		pushOriginateCauseLocked(a, b.uuid, "ORIGINATOR_CANCEL")
		s.mu.Unlock()
		return false, "ORIGINATOR_CANCEL"
	case <-s.ctx.Done():
		return false, "SYSTEM_SHUTDOWN"
	}
	if !strings.HasPrefix(res, "+OK") {
		cause := strings.TrimSpace(strings.TrimPrefix(res, "-ERR"))
		s.mu.Lock()
		a.other, a.role = nil, ""
		pushOriginateCauseLocked(a, b.uuid, cause)
		s.mu.Unlock()
		return false, cause
	}
	// Wait for B's answer (originate returns already on early media).
	select {
	case <-b.answerCh:
	case <-b.done:
		s.mu.Lock()
		a.other, a.role = nil, ""
		cause := b.hangupCause
		pushOriginateCauseLocked(a, b.uuid, cause)
		s.mu.Unlock()
		return false, cause
	case <-a.killCh:
		s.mu.Lock()
		s.requestHangupLocked(b, "ORIGINATOR_CANCEL", "send_cancel")
		pushOriginateCauseLocked(a, b.uuid, "ORIGINATOR_CANCEL")
		s.mu.Unlock()
		return false, "ORIGINATOR_CANCEL"
	case <-s.ctx.Done():
		return false, "SYSTEM_SHUTDOWN"
	}
	s.mu.Lock()
	if a.killed || b.killed {
		s.mu.Unlock()
		select {
		case <-a.killCh:
		case <-b.done:
		case <-s.ctx.Done():
		}
		return false, "NORMAL_CLEARING"
	}
	pushOriginateCauseLocked(a, b.uuid, "NONE")
	a.prof.calleeName, a.prof.calleeNumber = b.prof.calleeName, b.prof.destination
	if a.progress.IsZero() && a.direction == "inbound" {
		a.progress = s.clk.now()
		s.emitLocked(a, "CHANNEL_PROGRESS", "switch_channel.c", "switch_channel_perform_mark_ring_ready_value", 3505, nil, nil)
	}
	if a.answered.IsZero() {
		a.answered = s.clk.now()
		a.answerState = "answered"
		s.emitLocked(a, "CHANNEL_ANSWER", "switch_channel.c", "switch_channel_perform_mark_answered", 3846, nil, nil)
		s.callStateLocked(a, "ACTIVE")
		s.executeOnAnswerLocked(a)
	}
	s.bridgeLocked(a, b)
	s.mu.Unlock()
	// Bridged: wait for either side to end it.
	select {
	case <-a.killCh:
	case <-b.done:
	case <-s.ctx.Done():
	}
	return true, ""
}

// refusalStatus is the SIP final response a far end refuses a call with,
// for each cause the simulator's far ends refuse with.
func refusalStatus(cause string) (code, phrase string, ok bool) {
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
