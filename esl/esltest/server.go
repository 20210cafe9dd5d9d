package esltest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"callbridge/esl/esltest/internal/call"
	"callbridge/esl/esltest/internal/fswitch"
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
	Script *Script
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
	// Gateways are the node's sofia gateways; none by
	// default, and then "sofia xmlstatus gateway" lists none and every
	// sofia/gateway/NAME dial string is accepted.
	Gateways []Gateway

	// sw is the switch behind the socket: the channels, their calls and
	// the api commands. Its lock is taken before mu, never after.
	sw *fswitch.Switch

	mu         sync.Mutex
	listeners  []net.Listener
	conns      map[*conn]struct{}
	commands   []string
	replyDelay time.Duration
	refuseAuth bool
	jobEvents  JobEvents
	started    bool
	closed     bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Gateway is a sofia gateway of the simulated node: "sofia xmlstatus
// gateway" reports it as FreeSWITCH 1.10.12 does (the replies captured in
// ../testdata/sofia/), an originate through a DOWN gateway fails with
// GATEWAY_DOWN before any channel exists, and SetGatewayStatus changes its
// status as a ping would, firing sofia::gateway_state. Its fields are
// Name, Proxy (host:port, default NAME.invalid), Status ("UP", the
// default, or "DOWN") and Refuse (every leg through it fails as a carrier
// answering 503 does).
type Gateway = fswitch.Gateway

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
	s.conns = map[*conn]struct{}{}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.sw = fswitch.New(fswitch.Config{Speed: s.Speed, Gateways: s.Gateways, Settings: s.settings, Emit: s.dispatch})
}

// settings are the fields the switch reads where it uses them, as they
// are now.
func (s *Server) settings() fswitch.Settings {
	return fswitch.Settings{Hostname: s.Hostname, Script: s.Script, DialplanURL: s.DialplanURL,
		DialplanUser: s.DialplanUser, DialplanPassword: s.DialplanPassword,
		DialplanTimeout: s.DialplanTimeout, MaxSessions: s.MaxSessions, Logger: s.Logger}
}

// node returns the switch, starting it with the fields as they are if
// the server has not started yet.
func (s *Server) node() *fswitch.Switch {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	return s.sw
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
	s.sw.Close()
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
func (s *Server) Now() time.Time { return s.node().Now() }

// Jump moves the simulated clock forward by d; timers due in that span fire
// at once (a call scripted to talk 3 s ends when the clock is jumped 3 s).
func (s *Server) Jump(d time.Duration) { s.node().Jump(d) }

// Channels returns the live channels, oldest first.
func (s *Server) Channels() []ChannelInfo { return s.node().Channels() }

// ChannelInfo describes a live channel for tests: its UUID, Name,
// Direction, State (Channel-State), CallState, CallerID, Destination,
// Application, BridgedTo (the bridged leg's UUID, "" if none), Created and
// Answered (zero if not answered) times and Variables.
type ChannelInfo = call.ChannelInfo

// Hangup makes the far end of a channel hang up with cause (a BYE, or a
// CANCEL before answer, from the remote side).
func (s *Server) Hangup(uuid, cause string) error { return s.node().Hangup(uuid, cause) }

// Inbound simulates a call from caller to destination arriving on the
// "internal" sofia profile (context "public"): the leg is created, the
// dialplan is fetched from DialplanURL as mod_xml_curl would, and executed.
// It returns the new leg's UUID once the leg exists.
func (s *Server) Inbound(ctx context.Context, caller, destination string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return "", errors.New("SYSTEM_SHUTDOWN")
	}
	return s.node().Inbound(caller, destination)
}

// SetGatewayStatus sets gateway name "UP" or "DOWN" as the answer to an
// OPTIONS ping would (200 OK, or 503 Service Unavailable when nothing
// answered), and fires sofia::gateway_state when the status changed.
func (s *Server) SetGatewayStatus(name, status string) error {
	return s.node().SetGatewayStatus(name, status)
}

// SetPaused pauses the node as "fsctl pause" does (true) or resumes it as
// "fsctl resume" does (false): while paused, "fsctl ready_check" answers
// "false" and every originate is refused before a session exists
// ("-ERR DESTINATION_OUT_OF_ORDER"); channels in progress go on.
func (s *Server) SetPaused(paused bool) { s.node().SetPaused(paused) }

// SetMaxSessions limits the channels the node holds, as switch.conf's
// max-sessions does (0: no limit). An originate while n channels exist is
// refused before a session is created: no event, and the originate
// answers "-ERR DESTINATION_OUT_OF_ORDER" (mod_sofia's cause when the core
// will not create a session; the min-idle-cpu and sessions-per-second
// guards refuse the same way). A negative n refuses every originate, as a
// node whose CPU is saturated does under min-idle-cpu. Lowering it hangs
// nothing up.
func (s *Server) SetMaxSessions(n int) { s.node().SetMaxSessions(n) }

// Flood emits n events, alternately HEARTBEAT and CUSTOM (subclass
// esltest::flood), to the subscribed connections.
func (s *Server) Flood(n int) { s.node().Flood(n) }

// Commands returns every command block received on any connection, in
// order: the command line and any header lines, joined by "\n".
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
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

// dispatch queues e to every connection subscribed to it. The switch
// calls it, with its lock held, for every event it fires.
func (s *Server) dispatch(e *call.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
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
