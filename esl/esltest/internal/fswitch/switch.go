package fswitch

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"callbridge/esl/esltest/internal/call"
	"callbridge/esl/esltest/internal/clock"

	"github.com/google/uuid"
)

// Config is what a Switch is made of. Speed and Gateways are read once,
// by New; the Settings are asked for each time they are used, so that they
// may still change once the switch runs (as esltest.Server's exported
// fields always could).
type Config struct {
	// Speed makes the simulated clock run Speed× real time (0: 1).
	Speed float64
	// Gateways are the node's sofia gateways.
	Gateways []Gateway
	// Settings returns the node's settings as they are now (nil: the
	// zero Settings, logging nowhere).
	Settings func() Settings
	// Emit receives every event the switch fires, in Event-Sequence
	// order. It is called with the switch's lock held, so that the order
	// holds across connections: it must not call the Switch.
	Emit func(*call.Event)
}

// Settings are the node's settings that the switch reads where it uses
// them.
type Settings struct {
	// Hostname is reported as FreeSWITCH-Hostname.
	Hostname string
	// Script overrides the far-end behaviour of dialled numbers (nil: defaults).
	Script *call.Script
	// DialplanURL is where inbound calls are POSTed as mod_xml_curl dialplan
	// requests; empty means every inbound call finds no route.
	DialplanURL string
	// DialplanUser and DialplanPassword, if set, are sent as HTTP basic auth.
	DialplanUser, DialplanPassword string
	// DialplanTimeout bounds each dialplan request in real time.
	DialplanTimeout time.Duration
	// MaxSessions, when positive, refuses a new outbound leg while that
	// many channels are up, as FreeSWITCH's max-sessions does.
	MaxSessions int
	// Logger receives one line per call outcome; it must not be nil.
	Logger *slog.Logger
}

// Switch is the simulated FreeSWITCH core and the modules the simulator
// reproduces: its channels and their calls, and every api command. One
// lock guards its state and every channel; its goroutines (one per leg,
// one per scheduled hangup, the heartbeat) end with Close.
type Switch struct {
	Config

	mu         sync.Mutex
	gws        map[string]*gateway // Gateways by name
	gwOrder    []string            // Gateways' names in order
	chans      map[string]*call.Channel
	hash       map[string]string // mod_hash's store (cdrhook.go)
	seq        uint64
	sessions   int
	peak       int
	maxSess    int
	paused     bool // fsctl pause
	closed     bool
	clk        *clock.Clock
	coreUUID   string
	startSim   time.Time
	httpClient *http.Client

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New starts a switch: its clock runs from now, and it fires HEARTBEAT
// every 20 s of simulated time until Close.
func New(cfg Config) *Switch {
	if cfg.Settings == nil {
		quiet := Settings{Logger: slog.New(slog.DiscardHandler)}
		cfg.Settings = func() Settings { return quiet }
	}
	s := &Switch{Config: cfg, clk: clock.New(cfg.Speed), coreUUID: uuid.NewString(),
		chans: map[string]*call.Channel{}, httpClient: &http.Client{Timeout: cfg.Settings().DialplanTimeout}}
	s.startSim = s.clk.Now()
	s.initGateways()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.heartbeat()
	return s
}

// Close ends every call where it is, without its hangup events, and waits
// for the switch's goroutines. It is safe to call more than once.
func (s *Switch) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// goLocked runs f on a goroutine Close waits for, unless the switch is
// closed (then Close may already be waiting, and f is not run).
func (s *Switch) goLocked(f func()) {
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Exists reports whether a live channel has this uuid.
func (s *Switch) Exists(uuid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.chans[uuid]
	return ch != nil && !ch.Shadow
}

// header is one of the headers a channel event carries besides the
// channel's data, in the order it is sent.
type header struct {
	name, value string
}

// Now returns the simulated time.
func (s *Switch) Now() time.Time { return s.clk.Now() }

// Jump moves the simulated clock forward by d; timers due in that span
// fire at once.
func (s *Switch) Jump(d time.Duration) { s.clk.Jump(d) }

// Channels returns the live channels, oldest first.
func (s *Switch) Channels() []call.ChannelInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]call.ChannelInfo, 0, len(s.chans))
	for _, ch := range s.sortedChannelsLocked() {
		out = append(out, ch.Info())
	}
	return out
}

func (s *Switch) sortedChannelsLocked() []*call.Channel {
	list := make([]*call.Channel, 0, len(s.chans))
	for _, ch := range s.chans {
		if !ch.Shadow {
			list = append(list, ch)
		}
	}
	sort.Slice(list, func(i, j int) bool {
		if !list[i].Created.Equal(list[j].Created) {
			return list[i].Created.Before(list[j].Created)
		}
		return list[i].SessionID < list[j].SessionID
	})
	return list
}

// Hangup makes the far end of a channel hang up with cause (see
// esltest.Server.Hangup).
func (s *Switch) Hangup(uuid, cause string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.chans[uuid]
	if ch == nil || ch.Shadow {
		return fmt.Errorf("esltest: no such channel %q", uuid)
	}
	disp := "recv_bye"
	if ch.Answered.IsZero() {
		disp = "recv_cancel"
		if ch.Direction == "outbound" {
			disp = "recv_refuse"
		}
	}
	s.requestHangupLocked(ch, call.NormalizeCause(cause), disp)
	return nil
}

// SetPaused pauses or resumes the node as fsctl does (see
// esltest.Server.SetPaused).
func (s *Switch) SetPaused(paused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paused = paused
}

// fsctl runs the "fsctl" subcommands a drain uses: ready_check, pause
// and resume (of both directions, as without an argument).
func (s *Switch) fsctl(arg string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, _, _ := strings.Cut(strings.TrimSpace(arg), " ")
	switch sub {
	case "ready_check":
		if s.paused {
			return "false"
		}
		return "true"
	case "pause":
		s.paused = true
		return "+OK\n"
	case "resume":
		s.paused = false
		return "+OK\n"
	}
	return "-USAGE: fsctl [ready_check|pause|resume]\n"
}

// SetMaxSessions limits the channels the node holds, as switch.conf's
// max-sessions does (see esltest.Server.SetMaxSessions).
func (s *Switch) SetMaxSessions(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxSess = n
}

// Flood fires n events, alternately HEARTBEAT and CUSTOM (subclass
// esltest::flood).
func (s *Switch) Flood(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			s.Emit(s.heartbeatEventLocked())
			continue
		}
		e := s.newEventLocked("CUSTOM", "esltest.go", "flood", 1)
		e.Add("Event-Subclass", "esltest::flood")
		e.Add("Flood-Index", fmt.Sprint(i))
		s.Emit(e)
	}
}

// heartbeat emits HEARTBEAT every 20 s of simulated time, like FreeSWITCH.
func (s *Switch) heartbeat() {
	defer s.wg.Done()
	for s.clk.Sleep(s.ctx, 20*time.Second, nil) {
		s.mu.Lock()
		s.Emit(s.heartbeatEventLocked())
		s.mu.Unlock()
	}
}

func (s *Switch) heartbeatEventLocked() *call.Event {
	e := s.newEventLocked("HEARTBEAT", "switch_core.c", "send_heartbeat", 95)
	up := s.clk.Now().Sub(s.startSim)
	e.Add("Event-Info", "System Ready")
	e.Add("Up-Time", upTime(up))
	e.Add("FreeSWITCH-Version", "1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit")
	e.Add("Uptime-msec", fmt.Sprint(up.Milliseconds()))
	e.Add("Session-Count", fmt.Sprint(s.liveCountLocked()))
	e.Add("Max-Sessions", "1000")
	e.Add("Session-Per-Sec", "30")
	e.Add("Session-Per-Sec-Last", "0")
	e.Add("Session-Per-Sec-Max", "0")
	e.Add("Session-Per-Sec-FiveMin", "0")
	e.Add("Session-Since-Startup", fmt.Sprint(s.sessions))
	e.Add("Session-Peak-Max", fmt.Sprint(s.peak))
	e.Add("Session-Peak-FiveMin", fmt.Sprint(s.peak))
	e.Add("Idle-CPU", "100.000000")
	return e
}

func (s *Switch) liveCountLocked() int {
	n := 0
	for _, ch := range s.chans {
		if !ch.Shadow {
			n++
		}
	}
	return n
}

// upTime formats an uptime as FreeSWITCH's status and HEARTBEAT do.
func upTime(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return fmt.Sprintf("%d %s", n, unit)
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	us := d.Microseconds()
	years := us / (365 * 86400 * 1e6)
	us -= years * 365 * 86400 * 1e6
	days := us / (86400 * 1e6)
	us -= days * 86400 * 1e6
	hours := us / (3600 * 1e6)
	us -= hours * 3600 * 1e6
	mins := us / (60 * 1e6)
	us -= mins * 60 * 1e6
	secs := us / 1e6
	us -= secs * 1e6
	msec := us / 1000
	us -= msec * 1000
	return strings.Join([]string{plural(years, "year"), plural(days, "day"), plural(hours, "hour"),
		plural(mins, "minute"), plural(secs, "second"), plural(msec, "millisecond"), plural(us, "microsecond")}, ", ")
}

// newEventLocked starts an event with the 13 headers every FreeSWITCH event
// begins with, taking the next Event-Sequence.
func (s *Switch) newEventLocked(name, file, function string, line int) *call.Event {
	s.seq++
	now := s.clk.Now()
	e := &call.Event{Name: name}
	e.Add("Event-Name", name)
	e.Add("Core-UUID", s.coreUUID)
	host := s.Settings().Hostname
	e.Add("FreeSWITCH-Hostname", host)
	e.Add("FreeSWITCH-Switchname", host)
	e.Add("FreeSWITCH-IPv4", "127.0.0.1")
	e.Add("FreeSWITCH-IPv6", "::1")
	e.Add("Event-Date-Local", now.Format("2006-01-02 15:04:05"))
	e.Add("Event-Date-GMT", now.Format("Mon, 02 Jan 2006 15:04:05 GMT"))
	e.Add("Event-Date-Timestamp", call.Usec(now))
	e.Add("Event-Calling-File", file)
	e.Add("Event-Calling-Function", function)
	e.Add("Event-Calling-Line-Number", fmt.Sprint(line))
	e.Add("Event-Sequence", fmt.Sprint(s.seq))
	return e
}

func (s *Switch) logf(msg string, args ...any) {
	s.Settings().Logger.Info(msg, args...)
}
