package esltest

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

const versionText = "FreeSWITCH Version 1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit (git a88d069 2024-08-02 21:02:27Z 64bit)\n"

// apiEventLocked emits the API event FreeSWITCH fires for each executed
// api or bgapi command.
func (s *Server) apiEventLocked(name, arg string) {
	e := s.newEventLocked("API", "switch_loadable_module.c", "switch_api_execute", 2954)
	e.add("API-Command", name)
	if arg != "" {
		e.add("API-Command-Argument", arg)
	}
	s.dispatchLocked(e)
}

// runJob executes a bgapi command and emits its BACKGROUND_JOB event.
// originate emits its own (at answer or early media, or at failure), so the
// event lands where real FreeSWITCH puts it in the event stream.
func (s *Server) runJob(job, name, arg string) {
	// done is called with s.mu held.
	done := func(out string) {
		s.apiEventLocked(name, arg)
		e := s.newEventLocked("BACKGROUND_JOB", "mod_event_socket.c", "api_exec", 1572)
		e.add("Job-UUID", job)
		e.add("Job-Command", name)
		if arg != "" {
			e.add("Job-Command-Arg", arg)
		}
		e.body = out
		if s.jobEvents != JobEventsSwallowed {
			s.dispatchLocked(e)
		}
	}
	if name == "originate" {
		s.originateAPI(arg, done)
		return
	}
	out := s.execAPI(nil, name, arg)
	s.mu.Lock()
	done(out)
	s.mu.Unlock()
}

// execAPI runs an api command and returns its output. c is the connection
// it came from (nil for bgapi).
func (s *Server) execAPI(c *conn, name, arg string) string {
	switch name {
	case "version":
		return versionText
	case "fsctl":
		return s.fsctl(arg)
	case "hash":
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.hashLocked(arg)
	case "hash_dump":
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.hashDumpLocked(arg)
	case "status":
		return s.status()
	case "originate":
		result := make(chan string, 1)
		s.originateAPI(arg, func(out string) { result <- out })
		var done <-chan struct{}
		if c != nil {
			done = c.done
		}
		select {
		case out := <-result:
			return out
		case <-s.ctx.Done():
			return "-ERR SYSTEM_SHUTDOWN\n"
		case <-done:
			return "-ERR ORIGINATOR_CANCEL\n"
		}
	case "uuid_kill":
		f := strings.Fields(arg)
		if len(f) == 0 {
			return "-USAGE: <uuid> [cause]\n"
		}
		cause := "NORMAL_CLEARING"
		if len(f) > 1 {
			cause = normalizeCause(f[1])
		}
		return s.withChannel(f[0], func(ch *channel) string {
			disp := "send_bye"
			if ch.answered.IsZero() {
				disp = "send_cancel"
				if ch.direction == "inbound" {
					disp = "send_refuse"
				}
			}
			s.requestHangupLocked(ch, cause, disp)
			return "+OK\n"
		})
	case "uuid_exists":
		s.mu.Lock()
		defer s.mu.Unlock()
		if ch := s.chans[strings.TrimSpace(arg)]; ch != nil && !ch.shadow {
			return "true"
		}
		return "false"
	case "uuid_setvar":
		f := strings.SplitN(arg, " ", 3)
		if len(f) < 2 || f[0] == "" || f[1] == "" {
			return "-USAGE: <uuid> <var> [value]\n"
		}
		return s.withChannel(f[0], func(ch *channel) string {
			if len(f) == 3 && f[2] != "" {
				ch.v.set(f[1], f[2])
			} else {
				ch.v.del(f[1])
			}
			return "+OK\n"
		})
	case "uuid_getvar":
		f := strings.Fields(arg)
		if len(f) < 2 {
			return "-USAGE: <uuid> <var>\n"
		}
		return s.withChannel(f[0], func(ch *channel) string {
			if v, ok := ch.v.m[f[1]]; ok {
				return v
			}
			return "_undef_"
		})
	case "uuid_bridge":
		// mod_commands splits on spaces only and accepts a third uuid to
		// try when the second fails.
		f := separate(arg)
		if len(f) < 2 {
			return "-USAGE: <uuid> <other_uuid>\n"
		}
		out := s.uuidBridge(f[0], f[1])
		if strings.HasPrefix(out, "-") && len(f) > 2 {
			out = s.uuidBridge(f[0], f[2])
		}
		return out
	case "uuid_broadcast":
		f := strings.Fields(arg)
		if len(f) < 2 {
			return "-USAGE: <uuid> <path> [aleg|bleg|both]\n"
		}
		return s.withChannel(f[0], func(ch *channel) string {
			legs := "aleg"
			if len(f) > 2 {
				legs = f[2]
			}
			targets := []*channel{ch}
			if legs == "bleg" || legs == "both" {
				if ch.other != nil && !ch.bridgedAt.IsZero() {
					if legs == "bleg" {
						targets = []*channel{ch.other}
					} else {
						targets = append(targets, ch.other)
					}
				} else if legs == "bleg" {
					targets = nil
				}
			}
			for _, t := range targets {
				s.playbackEventsLocked(t, f[1])
			}
			return "+OK Message sent successfully\n"
		})
	case "uuid_record":
		f := strings.Fields(arg)
		if len(f) < 3 {
			return "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n"
		}
		return s.withChannel(f[0], func(ch *channel) string {
			switch f[1] {
			case "start":
				ch.recs = append(ch.recs, f[2])
				e := s.newEventLocked("RECORD_START", "switch_ivr_async.c", "record_callback", 1278)
				ch.appendChannelData(e)
				e.add("Record-File-Path", f[2])
				s.dispatchLocked(e)
			case "stop":
				found := false
				kept := ch.recs[:0]
				for _, p := range ch.recs {
					if p == f[2] || f[2] == "all" {
						found = true
						continue
					}
					kept = append(kept, p)
				}
				ch.recs = kept
				if !found {
					return "-ERR Cannot stop record session!\n"
				}
				e := s.newEventLocked("RECORD_STOP", "switch_ivr_async.c", "record_callback", 1333)
				ch.appendChannelData(e)
				e.add("Record-File-Path", f[2])
				s.dispatchLocked(e)
			default:
				return "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n"
			}
			return "+OK Success\n"
		})
	case "sched_hangup":
		return s.schedHangup(arg)
	case "hupall":
		f := strings.Fields(arg)
		cause := "MANAGER_REQUEST"
		if len(f) > 0 {
			cause = normalizeCause(f[0])
		}
		s.mu.Lock()
		for _, ch := range s.chans {
			if len(f) >= 3 && ch.v.get(f[1]) != f[2] {
				continue
			}
			disp := "send_bye"
			if ch.answered.IsZero() {
				disp = "send_cancel"
			}
			s.requestHangupLocked(ch, cause, disp)
		}
		s.mu.Unlock()
		if len(f) >= 3 {
			return fmt.Sprintf("+OK hangup all channels matching [%s]=[%s] with cause %s\n", f[1], f[2], cause)
		}
		return "+OK hangup all channels with cause " + cause + "\n"
	case "sofia":
		return s.sofiaAPI(arg)
	case "show":
		return s.show(arg)
	case "sim_inbound":
		f := strings.Fields(arg)
		if len(f) != 2 {
			return "-USAGE: <caller> <destination>\n"
		}
		id, err := s.startInbound(f[0], f[1])
		if err != nil {
			return "-ERR " + err.Error() + "\n"
		}
		return "+OK " + id + "\n"
	}
	return "-ERR " + name + " Command not found!\n"
}

// separate splits an api argument at spaces, as switch_separate_string
// does for mod_commands: runs of spaces count as one, and CR or LF are
// ordinary bytes.
func separate(arg string) []string {
	var out []string
	for _, w := range strings.Split(arg, " ") {
		if w != "" {
			out = append(out, w)
		}
	}
	return out
}

// withChannel runs f on a live channel under the lock, or reports
// "-ERR No such channel!" like mod_commands.
func (s *Server) withChannel(id string, f func(*channel) string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.chans[id]
	if ch == nil || ch.shadow || ch.killed {
		return "-ERR No such channel!\n"
	}
	return f(ch)
}

// schedHangup implements "sched_hangup [+]<time> <uuid> [<cause>]": a time
// with '+' is seconds from now, otherwise an absolute epoch.
func (s *Server) schedHangup(arg string) string {
	f := strings.Fields(arg)
	if len(f) < 2 {
		return "-USAGE: [+]<time> <uuid> [<cause>]\n"
	}
	cause := "ALLOTTED_TIMEOUT"
	if len(f) > 2 {
		cause = normalizeCause(f[2])
	}
	var d time.Duration
	if rel, ok := strings.CutPrefix(f[0], "+"); ok {
		n, err := strconv.ParseInt(rel, 10, 64)
		if err != nil {
			return "-USAGE: [+]<time> <uuid> [<cause>]\n"
		}
		d = time.Duration(n) * time.Second
	} else {
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return "-USAGE: [+]<time> <uuid> [<cause>]\n"
		}
		d = time.Unix(n, 0).Sub(s.clk.now())
	}
	return s.withChannel(f[1], func(ch *channel) string {
		s.scheduleHangupLocked(ch, d, cause)
		return "+OK\n"
	})
}

// scheduleHangupLocked hangs ch up after d of simulated time.
func (s *Server) scheduleHangupLocked(ch *channel, d time.Duration, cause string) {
	ch.schedAt, ch.schedCause = s.clk.now().Add(d), cause
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if !s.clk.sleep(s.ctx, d, ch.done) {
			return
		}
		s.mu.Lock()
		disp := "send_bye"
		if ch.answered.IsZero() {
			disp = "send_cancel"
		}
		s.requestHangupLocked(ch, cause, disp)
		s.mu.Unlock()
	}()
}

func (s *Server) status() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	up := s.clk.now().Sub(s.startSim)
	return fmt.Sprintf("UP %s\nFreeSWITCH (Version 1.10.12-release git a88d069 2024-08-02 21:02:27Z 64bit) is ready\n"+
		"%d session(s) since startup\n%d session(s) - peak %d, last 5min %d \n"+
		"0 session(s) per Sec out of max 30, peak 0, last 5min 0 \n1000 session(s) max\n"+
		"min idle cpu 0.00/100.00\nCurrent Stack Size/Max 240K/8192K\n",
		upTime(up), s.sessions, s.liveCountLocked(), s.peak, s.peak)
}

// channelColumns are the columns of "show channels" in FreeSWITCH 1.10.
var channelColumns = []string{"uuid", "direction", "created", "created_epoch", "name", "state",
	"cid_name", "cid_num", "ip_addr", "dest", "application", "application_data", "dialplan",
	"context", "read_codec", "read_rate", "read_bit_rate", "write_codec", "write_rate",
	"write_bit_rate", "secure", "hostname", "presence_id", "presence_data", "accountcode",
	"callstate", "callee_name", "callee_num", "callee_direction", "call_uuid", "sent_callee_name",
	"sent_callee_num", "initial_cid_name", "initial_cid_num", "initial_ip_addr", "initial_dest",
	"initial_dialplan", "initial_context"}

func (s *Server) show(arg string) string {
	f := separate(arg)
	if len(f) == 0 || (f[0] != "channels" && f[0] != "calls") {
		return "-USAGE: codec|endpoint|application|api|dialplan|file|timer|calls [count]|channels [count|like <match string>]|calls|detailed_calls|bridged_calls|detailed_bridged_calls|aliases|complete|chat|management|modules|nat_map|say|interfaces|interface_types|tasks|limits|status\n"
	}
	asJSON := false
	if i := slices.Index(f, "as"); i > 0 && i+1 < len(f) {
		if f[i+1] != "json" {
			return "-ERR Cannot find format " + f[i+1] + "\n"
		}
		asJSON = true
	}
	s.mu.Lock()
	var rows [][]string
	for _, ch := range s.sortedChannelsLocked() {
		if ch.running == "CS_DESTROY" {
			continue
		}
		rc, rr, rb := "", "", ""
		if ch.codec {
			rc, rr, rb = "PCMU", "8000", "64000"
		}
		callUUID := ""
		if ch.other != nil && !ch.bridgedAt.IsZero() {
			callUUID = ch.uuid
		}
		rows = append(rows, []string{ch.uuid, ch.direction, ch.created.Format("2006-01-02 15:04:05"),
			strconv.FormatInt(ch.created.Unix(), 10), ch.name, ch.running, ch.prof.cidName, ch.prof.cidNumber,
			ch.prof.networkAddr, ch.prof.destination, ch.app, ch.appArg, ch.prof.dialplan, ch.prof.context,
			rc, rr, rb, rc, rr, rb, "", s.Hostname, "", "", "", ch.callState, ch.prof.calleeName,
			ch.prof.calleeNumber, "", callUUID, "", "", ch.prof.cidName, ch.prof.cidNumber,
			ch.prof.networkAddr, ch.prof.destination, ch.prof.dialplan, ch.prof.context})
	}
	s.mu.Unlock()
	if asJSON {
		var b bytes.Buffer
		fmt.Fprintf(&b, `{"row_count":%d`, len(rows))
		if len(rows) > 0 {
			b.WriteString(`,"rows":[`)
			for i, r := range rows {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteByte('{')
				for j, col := range channelColumns {
					if j > 0 {
						b.WriteByte(',')
					}
					jsonString(&b, col)
					b.WriteByte(':')
					jsonString(&b, r[j])
				}
				b.WriteByte('}')
			}
			b.WriteByte(']')
		}
		b.WriteString("}\n")
		return b.String()
	}
	var b strings.Builder
	b.WriteString(strings.Join(channelColumns, ","))
	b.WriteByte('\n')
	for _, r := range rows {
		b.WriteString(strings.Join(r, ","))
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "\n%d total.\n", len(rows))
	return b.String()
}

// sendmsg implements the hangup and execute call-commands of sendmsg.
func (s *Server) sendmsg(id string, p *packet, body []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.chans[id]
	if ch == nil || ch.shadow || ch.killed {
		return "-ERR invalid session id [" + id + "]"
	}
	get := func(name string) string {
		v, _ := p.header(name)
		return v
	}
	switch get("call-command") {
	case "hangup":
		disp := "send_bye"
		if ch.answered.IsZero() {
			disp = "send_cancel"
		}
		s.requestHangupLocked(ch, normalizeCause(get("hangup-cause")), disp)
		return "+OK"
	case "execute":
		app := get("execute-app-name")
		arg := get("execute-app-arg")
		if len(body) > 0 {
			arg = string(body)
		}
		if app == "playback" {
			s.playbackEventsLocked(ch, arg)
			return "+OK"
		}
		if app == "set" || app == "export" {
			if k, v, ok := strings.Cut(arg, "="); ok {
				ch.v.set(k, v)
			}
			return "+OK"
		}
		return "-ERR application " + app + " is not simulated over sendmsg"
	}
	return "-ERR unknown call-command"
}
