package esltest

import (
	"callbridge/esl/esltest/internal/clock"

	"callbridge/esl/esltest/internal/call"

	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Server is a simulated FreeSWITCH 1.10 node speaking the inbound
// event-socket protocol on TCP. Set the exported fields before Start or
// Listen; they must not change afterwards.
type Server struct {
	// Password is the event-socket password (default "ClueCon").
	Password string
	// Hostname is reported as FreeSWITCH-Hostname (default "esltest").
	Hostname string
	// Script overrides the far-end behaviour of dialled numbers (nil: defaults).
	Script *call.Script
	// DialplanURL is where inbound calls are POSTed as mod_xml_curl dialplan
	// requests; empty means every inbound call finds no route.
	DialplanURL string
	// DialplanUser and DialplanPassword, if set, are sent as HTTP basic auth.
	DialplanUser, DialplanPassword string
	// DialplanTimeout bounds each dialplan request in real time (default 5 s).
	DialplanTimeout time.Duration
	// Speed makes the simulated clock run Speed× real time (default 1).
	Speed float64
	// QueueSize is how many frames may wait for a slow connection before it is
	// dropped, as FreeSWITCH drops a listener that stops reading (default 20000).
	QueueSize int
	// MaxSessions, when positive, refuses a new outbound leg while that
	// many channels are up, as FreeSWITCH's max-sessions does: the
	// originate answers -ERR DESTINATION_OUT_OF_ORDER and no channel event
	// is sent (checked against FreeSWITCH 1.10.12).
	MaxSessions int
	// Logger receives one line per call outcome and per connection problem
	// (default: discard).
	Logger *slog.Logger
	// Gateways are the node's sofia gateways (gateway.go); none by
	// default, and then "sofia xmlstatus gateway" lists none and every
	// sofia/gateway/NAME dial string is accepted.
	Gateways []Gateway

	mu         sync.Mutex
	listeners  []net.Listener
	conns      map[*conn]struct{}
	gws        map[string]*gateway // Gateways by name
	gwOrder    []string            // Gateways' names in order
	chans      map[string]*call.Channel
	hash       map[string]string // mod_hash's store (cdrhook.go)
	seq        uint64
	sessions   int
	peak       int
	commands   []string
	replyDelay time.Duration
	refuseAuth bool
	jobEvents  JobEvents
	maxSess    int
	paused     bool // fsctl pause
	clk        *clock.Clock
	coreUUID   string
	started    bool
	closed     bool
	startSim   time.Time
	httpClient *http.Client

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewServer returns a Server listening on 127.0.0.1 on a free port.
func NewServer() *Server {
	s := NewUnstartedServer()
	s.Start()
	return s
}

// NewUnstartedServer returns a Server that is not yet listening; set its
// fields, then call Start or Listen.
func NewUnstartedServer() *Server {
	return &Server{}
}

// Start listens on 127.0.0.1:0 and panics if it cannot, like httptest.
func (s *Server) Start() {
	if err := s.Listen("127.0.0.1:0"); err != nil {
		panic(fmt.Sprintf("esltest: failed to listen: %v", err))
	}
}

func (s *Server) init() {
	if s.started {
		return
	}
	s.started = true
	if s.Password == "" {
		s.Password = "ClueCon"
	}
	if s.Hostname == "" {
		s.Hostname = "esltest"
	}
	if s.DialplanTimeout <= 0 {
		s.DialplanTimeout = 5 * time.Second
	}
	if s.QueueSize <= 0 {
		s.QueueSize = 20000
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	s.clk = clock.New(s.Speed)
	s.startSim = s.clk.Now()
	s.coreUUID = uuid.NewString()
	s.conns = map[*conn]struct{}{}
	s.chans = map[string]*call.Channel{}
	s.httpClient = &http.Client{Timeout: s.DialplanTimeout}
	s.initGatewaysLocked()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.heartbeat()
}

// Listen starts accepting event-socket connections on addr. It may be called
// more than once to listen on several addresses.
func (s *Server) Listen(addr string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("esltest: server closed")
	}
	s.init()
	s.mu.Unlock()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("esltest: listen: %w", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return errors.New("esltest: server closed")
	}
	s.listeners = append(s.listeners, ln)
	s.wg.Add(1)
	s.mu.Unlock()
	go s.accept(ln)
	return nil
}

// Addr returns the address of the first listener ("" before Start).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.listeners) == 0 {
		return ""
	}
	return s.listeners[0].Addr().String()
}

// Close sends every connection the shutdown disconnect notice, closes
// listeners and connections, ends all channels and waits for every
// goroutine. It is safe to call more than once.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed || !s.started {
		s.closed = true
		s.mu.Unlock()
		return
	}
	s.closed = true
	for _, ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.enqueueLocked(bodyFrame("text/disconnect-notice", shutdownNotice))
		c.closeAfterFlushLocked()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

func (s *Server) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		c := newConn(s, nc)
		s.conns[c] = struct{}{}
		s.wg.Add(2)
		s.mu.Unlock()
		go c.writeLoop()
		go c.readLoop()
	}
}

// Now returns the simulated time.
func (s *Server) Now() time.Time {
	s.mu.Lock()
	s.init()
	s.mu.Unlock()
	return s.clk.Now()
}

// Jump moves the simulated clock forward by d; timers due in that span fire
// at once (a call scripted to talk 3 s ends when the clock is jumped 3 s).
func (s *Server) Jump(d time.Duration) {
	s.mu.Lock()
	s.init()
	s.mu.Unlock()
	s.clk.Jump(d)
}

// Commands returns every command block received on any connection, in
// order: the command line and any header lines, joined by "\n".
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

// ChannelInfo describes a live channel for tests: its UUID, Name,
// Direction, State, CallState, CallerID, Destination, Application,
// BridgedTo (the bridged leg's UUID), Created and Answered times and
// Variables.
type ChannelInfo = call.ChannelInfo

// Channels returns the live channels, oldest first.
func (s *Server) Channels() []ChannelInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ChannelInfo, 0, len(s.chans))
	for _, ch := range s.sortedChannelsLocked() {
		out = append(out, ch.Info())
	}
	return out
}

func (s *Server) sortedChannelsLocked() []*call.Channel {
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

// Hangup makes the far end of a channel hang up with cause (a BYE, or a
// CANCEL before answer, from the remote side).
func (s *Server) Hangup(uuid, cause string) error {
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

// DropConnections closes every connection abruptly, without a disconnect
// notice, as a network failure would.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.abortLocked()
	}
}

// DropEventConnections closes, abruptly, only the connections subscribed to
// events.
func (s *Server) DropEventConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.listening && (c.all || len(c.events) > 0) {
			c.abortLocked()
		}
	}
}

// SetReplyDelay delays every command reply by d of real time, to test
// client timeouts.
func (s *Server) SetReplyDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replyDelay = d
}

// JobEvents is what the server does with the results of bgapi jobs, to
// test clients against a node whose commands do not complete.
type JobEvents int

const (
	// JobEventsNormal sends each job's BACKGROUND_JOB with the client's
	// Job-UUID (FreeSWITCH's own when the client gave none).
	JobEventsNormal JobEvents = iota
	// JobEventsSwallowed runs jobs and answers "+OK Job-UUID" but never
	// sends their BACKGROUND_JOB.
	JobEventsSwallowed
	// JobEventsOwnUUID ignores the client's Job-UUID and uses its own, as
	// a real switch does when the Job-UUID line is framed with mixed line
	// endings: the client's jobs never see their result.
	JobEventsOwnUUID
)

// SetJobEvents changes what happens to the results of bgapi jobs from now
// on.
func (s *Server) SetJobEvents(m JobEvents) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobEvents = m
}

// SetPaused pauses the node as "fsctl pause" does (true) or resumes it as
// "fsctl resume" does (false): while paused, "fsctl ready_check" answers
// "false" and every originate is refused before a session exists
// ("-ERR DESTINATION_OUT_OF_ORDER"); channels in progress go on.
func (s *Server) SetPaused(paused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paused = paused
}

// fsctl runs the "fsctl" subcommands a drain uses: ready_check, pause
// and resume (of both directions, as without an argument).
func (s *Server) fsctl(arg string) string {
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
// max-sessions does (0: no limit). An originate while n channels exist is
// refused before a session is created: no event, and the originate
// answers "-ERR DESTINATION_OUT_OF_ORDER" (mod_sofia's cause when the core
// will not create a session; the min-idle-cpu and sessions-per-second
// guards refuse the same way). A negative n refuses every originate, as a
// node whose CPU is saturated does under min-idle-cpu. Lowering it hangs
// nothing up.
func (s *Server) SetMaxSessions(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxSess = n
}

// SetRefuseAuth makes every auth attempt fail as a wrong password does.
func (s *Server) SetRefuseAuth(refuse bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuseAuth = refuse
}

// InjectFrame writes raw bytes, unchanged, to every authenticated
// connection, in order with the frames already queued.
func (s *Server) InjectFrame(raw []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.authed {
			c.enqueueLocked(append([]byte(nil), raw...))
		}
	}
}

// Flood emits n events, alternately HEARTBEAT and CUSTOM (subclass
// esltest::flood), to the subscribed connections.
func (s *Server) Flood(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			s.dispatchLocked(s.heartbeatEventLocked())
			continue
		}
		e := s.newEventLocked("CUSTOM", "esltest.go", "flood", 1)
		e.Add("Event-Subclass", "esltest::flood")
		e.Add("Flood-Index", fmt.Sprint(i))
		s.dispatchLocked(e)
	}
}

// heartbeat emits HEARTBEAT every 20 s of simulated time, like FreeSWITCH.
func (s *Server) heartbeat() {
	defer s.wg.Done()
	for s.clk.Sleep(s.ctx, 20*time.Second, nil) {
		s.mu.Lock()
		s.dispatchLocked(s.heartbeatEventLocked())
		s.mu.Unlock()
	}
}

func (s *Server) heartbeatEventLocked() *call.Event {
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

func (s *Server) liveCountLocked() int {
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
func (s *Server) newEventLocked(name, file, function string, line int) *call.Event {
	s.seq++
	now := s.clk.Now()
	e := &call.Event{Name: name}
	e.Add("Event-Name", name)
	e.Add("Core-UUID", s.coreUUID)
	e.Add("FreeSWITCH-Hostname", s.Hostname)
	e.Add("FreeSWITCH-Switchname", s.Hostname)
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

// dispatchLocked queues e to every connection subscribed to it.
func (s *Server) dispatchLocked(e *call.Event) {
	var plain, js []byte
	for c := range s.conns {
		if !c.wants(e) {
			continue
		}
		switch c.format {
		case "json":
			if js == nil {
				js = eventFrame("text/event-json", e.JSON())
			}
			c.enqueueLocked(js)
		default:
			if plain == nil {
				plain = eventFrame("text/event-plain", e.Plain())
			}
			c.enqueueLocked(plain)
		}
	}
}

func (s *Server) logf(msg string, args ...any) {
	s.Logger.Info(msg, args...)
}
