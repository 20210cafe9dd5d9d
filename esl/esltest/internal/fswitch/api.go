package fswitch

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"callbridge/esl/esltest/internal/call"
)

const versionText = "FreeSWITCH Version 1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit (git a88d069 2024-08-02 21:02:27Z 64bit)\n"

// apiEventLocked emits the API event FreeSWITCH fires for each executed
// api or bgapi command.
func (s *Switch) apiEventLocked(name, arg string) {
	e := s.newEventLocked("API", "switch_loadable_module.c", "switch_api_execute", 2954)
	e.Add("API-Command", name)
	if arg != "" {
		e.Add("API-Command-Argument", arg)
	}
	s.Emit(e)
}

// API runs an api command and fires its API event. reply receives the
// command's output just before that event fires, with the switch's lock
// held, so that no event comes between the two; it must not call the
// Switch. cancel ends a waiting originate ("-ERR ORIGINATOR_CANCEL"), as
// the connection that asked going away does.
func (s *Switch) API(name, arg string, cancel <-chan struct{}, reply func(out string)) {
	out := s.execAPI(name, arg, cancel)
	s.mu.Lock()
	defer s.mu.Unlock()
	reply(out)
	s.apiEventLocked(name, arg)
}

// Job runs a bgapi command and fires its API and BACKGROUND_JOB events
// (the second only if deliver, asked then, says so), with the job's uuid.
// It returns once the command is done, or once an originate is under
// way: originate fires the events itself (at answer or early media, or at
// failure), so they land where real FreeSWITCH puts them in the event
// stream. deliver is called with the switch's lock held: it must not
// call the Switch.
func (s *Switch) Job(job, name, arg string, deliver func() bool) {
	// done is called with s.mu held.
	done := func(out string) {
		s.apiEventLocked(name, arg)
		e := s.newEventLocked("BACKGROUND_JOB", "mod_event_socket.c", "api_exec", 1572)
		e.Add("Job-UUID", job)
		e.Add("Job-Command", name)
		if arg != "" {
			e.Add("Job-Command-Arg", arg)
		}
		e.Body = out
		if deliver() {
			s.Emit(e)
		}
	}
	if name == "originate" {
		s.originateAPI(arg, done)
		return
	}
	out := s.execAPI(name, arg, nil)
	s.mu.Lock()
	done(out)
	s.mu.Unlock()
}

// execAPI runs an api command and returns its output. cancel, if not
// nil, ends a waiting originate.
func (s *Switch) execAPI(name, arg string, cancel <-chan struct{}) string {
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
		select {
		case out := <-result:
			return out
		case <-s.ctx.Done():
			return "-ERR SYSTEM_SHUTDOWN\n"
		case <-cancel:
			return "-ERR ORIGINATOR_CANCEL\n"
		}
	case "uuid_kill":
		f := strings.Fields(arg)
		if len(f) == 0 {
			return "-USAGE: <uuid> [cause]\n"
		}
		cause := "NORMAL_CLEARING"
		if len(f) > 1 {
			cause = call.NormalizeCause(f[1])
		}
		return s.withChannel(f[0], func(ch *call.Channel) string {
			disp := "send_bye"
			if ch.Answered.IsZero() {
				disp = "send_cancel"
				if ch.Direction == "inbound" {
					disp = "send_refuse"
				}
			}
			s.requestHangupLocked(ch, cause, disp)
			return "+OK\n"
		})
	case "uuid_exists":
		s.mu.Lock()
		defer s.mu.Unlock()
		if ch := s.chans[strings.TrimSpace(arg)]; ch != nil && !ch.Shadow {
			return "true"
		}
		return "false"
	case "uuid_setvar":
		f := strings.SplitN(arg, " ", 3)
		if len(f) < 2 || f[0] == "" || f[1] == "" {
			return "-USAGE: <uuid> <var> [value]\n"
		}
		return s.withChannel(f[0], func(ch *call.Channel) string {
			if len(f) == 3 && f[2] != "" {
				ch.Vars.Set(f[1], f[2])
			} else {
				ch.Vars.Del(f[1])
			}
			return "+OK\n"
		})
	case "uuid_getvar":
		f := strings.Fields(arg)
		if len(f) < 2 {
			return "-USAGE: <uuid> <var>\n"
		}
		return s.withChannel(f[0], func(ch *call.Channel) string {
			if v, ok := ch.Vars.Values[f[1]]; ok {
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
		return s.withChannel(f[0], func(ch *call.Channel) string {
			legs := "aleg"
			if len(f) > 2 {
				legs = f[2]
			}
			targets := []*call.Channel{ch}
			if legs == "bleg" || legs == "both" {
				if ch.Other != nil && !ch.BridgedAt.IsZero() {
					if legs == "bleg" {
						targets = []*call.Channel{ch.Other}
					} else {
						targets = append(targets, ch.Other)
					}
				} else if legs == "bleg" {
					targets = nil
				}
			}
			// "app[!cause]::arg" runs app instead of playback and, with a
			// cause, hangs the channel up after it (switch_ivr_broadcast);
			// the simulator plays at once, so the hangup follows at once.
			path, cause := f[1], ""
			if app, arg, ok := strings.Cut(f[1], "::"); ok {
				app, cause, _ = strings.Cut(app, "!")
				if app != "playback" {
					return "+OK Message sent successfully\n" // only playback is simulated
				}
				path = arg
			}
			for _, t := range targets {
				s.playbackEventsLocked(t, path)
			}
			if cause != "" {
				s.requestHangupLocked(ch, call.NormalizeCause(cause), "send_bye")
			}
			return "+OK Message sent successfully\n"
		})
	case "uuid_record":
		f := strings.Fields(arg)
		if len(f) < 3 {
			return "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n"
		}
		return s.withChannel(f[0], func(ch *call.Channel) string {
			switch f[1] {
			case "start":
				ch.Recs = append(ch.Recs, f[2])
				e := s.newEventLocked("RECORD_START", "switch_ivr_async.c", "record_callback", 1278)
				ch.AppendChannelData(e)
				e.Add("Record-File-Path", f[2])
				s.Emit(e)
			case "stop":
				found := false
				kept := ch.Recs[:0]
				for _, p := range ch.Recs {
					if p == f[2] || f[2] == "all" {
						found = true
						continue
					}
					kept = append(kept, p)
				}
				ch.Recs = kept
				if !found {
					return "-ERR Cannot stop record session!\n"
				}
				e := s.newEventLocked("RECORD_STOP", "switch_ivr_async.c", "record_callback", 1333)
				ch.AppendChannelData(e)
				e.Add("Record-File-Path", f[2])
				s.Emit(e)
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
			cause = call.NormalizeCause(f[0])
		}
		s.mu.Lock()
		for _, ch := range s.chans {
			if len(f) >= 3 && ch.Vars.Get(f[1]) != f[2] {
				continue
			}
			disp := "send_bye"
			if ch.Answered.IsZero() {
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
		id, err := s.Inbound(f[0], f[1])
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
func (s *Switch) withChannel(id string, f func(*call.Channel) string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.chans[id]
	if ch == nil || ch.Shadow || ch.Killed {
		return "-ERR No such channel!\n"
	}
	return f(ch)
}

// schedHangup implements "sched_hangup [+]<time> <uuid> [<cause>]": a time
// with '+' is seconds from now, otherwise an absolute epoch.
func (s *Switch) schedHangup(arg string) string {
	f := strings.Fields(arg)
	if len(f) < 2 {
		return "-USAGE: [+]<time> <uuid> [<cause>]\n"
	}
	cause := "ALLOTTED_TIMEOUT"
	if len(f) > 2 {
		cause = call.NormalizeCause(f[2])
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
		d = time.Unix(n, 0).Sub(s.clk.Now())
	}
	return s.withChannel(f[1], func(ch *call.Channel) string {
		s.scheduleHangupLocked(ch, d, cause)
		return "+OK\n"
	})
}

// scheduleHangupLocked hangs ch up after d of simulated time, unless the
// task group of ch's uuid is cancelled first (cancelSchedLocked).
func (s *Switch) scheduleHangupLocked(ch *call.Channel, d time.Duration, cause string) {
	ctx, cancel := context.WithCancel(s.ctx)
	h := &call.SchedHangup{At: s.clk.Now().Add(d), Cause: cause, Group: ch.UUID, Cancel: cancel}
	ch.Sched = append(ch.Sched, h)
	s.goLocked(func() {
		defer cancel()
		if !s.clk.Sleep(ctx, d, ch.Done) {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		ch.Sched = slices.DeleteFunc(ch.Sched, func(o *call.SchedHangup) bool { return o == h })
		disp := "send_bye"
		switch {
		case !ch.Answered.IsZero():
		case ch.Direction == "inbound":
			disp = "send_refuse"
		default:
			disp = "send_cancel"
		}
		s.requestHangupLocked(ch, cause, disp)
	})
}

// cancelSchedLocked deletes ch's scheduled hangups of task group group,
// as switch_scheduler_del_task_group does.
func (s *Switch) cancelSchedLocked(ch *call.Channel, group string) {
	ch.Sched = slices.DeleteFunc(ch.Sched, func(h *call.SchedHangup) bool {
		if h.Group != group {
			return false
		}
		h.Cancel()
		return true
	})
}

func (s *Switch) status() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	up := s.clk.Now().Sub(s.startSim)
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

func (s *Switch) show(arg string) string {
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
	host := s.Settings().Hostname
	s.mu.Lock()
	var rows [][]string
	for _, ch := range s.sortedChannelsLocked() {
		if ch.Running == "CS_DESTROY" {
			continue
		}
		rc, rr, rb := "", "", ""
		if ch.Codec {
			rc, rr, rb = "PCMU", "8000", "64000"
		}
		callUUID := ""
		if ch.Other != nil && !ch.BridgedAt.IsZero() {
			callUUID = ch.UUID
		}
		rows = append(rows, []string{ch.UUID, ch.Direction, ch.Created.Format("2006-01-02 15:04:05"),
			strconv.FormatInt(ch.Created.Unix(), 10), ch.Name, ch.Running, ch.Profile.CIDName, ch.Profile.CIDNumber,
			ch.Profile.NetworkAddr, ch.Profile.Destination, ch.App, ch.AppArg, ch.Profile.Dialplan, ch.Profile.Context,
			rc, rr, rb, rc, rr, rb, "", host, "", "", "", ch.CallState, ch.Profile.CalleeName,
			ch.Profile.CalleeNumber, "", callUUID, "", "", ch.Profile.CIDName, ch.Profile.CIDNumber,
			ch.Profile.NetworkAddr, ch.Profile.Destination, ch.Profile.Dialplan, ch.Profile.Context})
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
					call.JSONString(&b, col)
					b.WriteByte(':')
					call.JSONString(&b, r[j])
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

// Msg is the call command of a sendmsg, as its headers give it.
type Msg struct {
	// Command is call-command: "hangup" and "execute" are simulated.
	Command string
	// HangupCause is hangup-cause (hangup).
	HangupCause string
	// App and Arg are execute-app-name and execute-app-arg, or the
	// message's body when it has one (execute).
	App, Arg string
}

// SendMsg runs the hangup and execute call-commands of a sendmsg to the
// channel id and returns the reply text.
func (s *Switch) SendMsg(id string, m Msg) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.chans[id]
	if ch == nil || ch.Shadow || ch.Killed {
		return "-ERR invalid session id [" + id + "]"
	}
	switch m.Command {
	case "hangup":
		disp := "send_bye"
		if ch.Answered.IsZero() {
			disp = "send_cancel"
		}
		s.requestHangupLocked(ch, call.NormalizeCause(m.HangupCause), disp)
		return "+OK"
	case "execute":
		app, arg := m.App, m.Arg
		if app == "playback" {
			s.playbackEventsLocked(ch, arg)
			return "+OK"
		}
		if app == "set" || app == "export" {
			if k, v, ok := strings.Cut(arg, "="); ok {
				ch.Vars.Set(k, v)
			}
			return "+OK"
		}
		return "-ERR application " + app + " is not simulated over sendmsg"
	}
	return "-ERR unknown call-command"
}
