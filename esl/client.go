package esl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"callbridge/esl/freeswitch"
	"callbridge/esl/internal/wire"

	"github.com/fiorix/go-eventsocket/eventsocket"
	"github.com/google/uuid"
)

// Config configures a Client for one FreeSWITCH node.
type Config struct {
	// Name identifies the node in events, stats, logs and Pool.Lookup;
	// Addr when empty.
	Name string
	// Addr is the event socket's host:port, e.g. "10.0.0.5:8021".
	Addr string
	// Password is the event socket password (printable ASCII).
	Password string
	// MaxCPS is how many calls per second Pool starts on this node;
	// 0 means no limit.
	MaxCPS int
	// MaxCalls is how many calls Pool lets run at once on this node;
	// 0 means no limit.
	MaxCalls int
	// Events replaces freeswitch.DefaultEvents as the event connection's subscription.
	// BACKGROUND_JOB is always added: jobs complete through it.
	Events []freeswitch.EventName
	// Subclasses are CUSTOM event subclasses to receive too, such as
	// freeswitch.GatewayStateSubclass. FreeSWITCH sends a CUSTOM event with a
	// subclass only to connections that named it: CUSTOM alone does not
	// get it. They are written after CUSTOM, last on the subscription
	// line ([a-z0-9_:] each).
	Subclasses []string
	// DialTimeout bounds connecting and authenticating each connection;
	// 5 s when zero.
	DialTimeout time.Duration
	// CommandTimeout bounds the wait for a command's reply ("+OK
	// Job-UUID", normally immediate). A connection that exceeds it is
	// stuck: it is closed and redialled. 10 s when zero; at most 50 s, so
	// go-eventsocket's own 60 s timeout never fires.
	CommandTimeout time.Duration
	// BackoffMin and BackoffMax bound the delay between dial attempts,
	// which doubles after each failure and is jittered; 100 ms and 30 s
	// when zero.
	BackoffMin, BackoffMax time.Duration
	// MaxFrameBytes caps one frame's body; larger frames are skipped and
	// counted as dropped. 16 MiB when zero.
	MaxFrameBytes int
	// SubscriptionBuffer is the queue limit of Subscribe(0); 65536 when
	// zero.
	SubscriptionBuffer int
	// ProbeInterval is how often a connected client checks that its
	// commands complete: it runs "bgapi fsctl ready_check" with its own
	// Job-UUID and waits for the BACKGROUND_JOB (the readiness probe). 10 s
	// when zero; negative turns the periodic probe off. The probe at
	// connect always runs: a connection counts as connected only once it
	// passed. A node that answers "false" (paused: draining) stays
	// connected but is not Ready.
	ProbeInterval time.Duration
	// JobTimeout bounds the wait for a job's BACKGROUND_JOB: the probe's,
	// and every other job's on top of the ring time an originate asks for
	// (FreeSWITCH's default 60 s when it asks for none). A job past it
	// fails with ErrJobTimeout and the node is not Ready until a probe
	// passes again. 15 s when zero.
	JobTimeout time.Duration
	// OnProbe, when set, is told of every readiness probe: its latency
	// and its error (nil when it passed). It must not block.
	OnProbe func(took time.Duration, err error)
	// OnJobDone, when set, is told of every finished bgapi job: the
	// command's first word ("originate", "uuid_bridge"), the time from
	// sending it to its result (for originate: until answer or early
	// media, as FreeSWITCH reports), and its error (nil, a *ReplyError,
	// ErrClosed). It runs on the event reader: it must not block.
	OnJobDone func(command string, took time.Duration, err error)
	// Logger receives connection state changes and dropped frames, each
	// line naming the node ("node": Name), so the logger must not carry a
	// "node" attribute of its own; nothing is logged when nil.
	Logger *slog.Logger
}

func (cfg Config) withDefaults() Config {
	if cfg.Name == "" {
		cfg.Name = cfg.Addr
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 10 * time.Second
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 100 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 30 * time.Second
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = cfg.BackoffMin
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = 10 * time.Second
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = 15 * time.Second
	}
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = 16 << 20
	}
	if cfg.SubscriptionBuffer <= 0 {
		cfg.SubscriptionBuffer = 65536
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// Validate reports whether the configuration can be used.
func (cfg Config) Validate() error {
	if cfg.Addr == "" {
		return errors.New("esl: config: Addr is required")
	}
	if cfg.Password == "" {
		return errors.New("esl: config: Password is required")
	}
	for i := 0; i < len(cfg.Password); i++ {
		if c := cfg.Password[i]; c < 0x20 || c > 0x7e {
			return errors.New("esl: config: Password must be printable ASCII")
		}
	}
	if cfg.MaxCPS < 0 || cfg.MaxCalls < 0 {
		return errors.New("esl: config: MaxCPS and MaxCalls must not be negative")
	}
	if cfg.CommandTimeout > 50*time.Second {
		return errors.New("esl: config: CommandTimeout must be at most 50s")
	}
	for _, e := range cfg.Events {
		if err := e.Validate(); err != nil {
			return fmt.Errorf("esl: config: %w", err)
		}
	}
	for _, sub := range cfg.Subclasses {
		if !isSubclass(sub) {
			return fmt.Errorf("esl: config: subclass %q: want 1 to 64 of [a-z0-9_:]", sub)
		}
	}
	return nil
}

// isSubclass reports whether s is a CUSTOM event subclass this client
// subscribes to: 1 to 64 of [a-z0-9_:].
func isSubclass(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == ':') {
			return false
		}
	}
	return true
}

// State is the connection state of a Client.
type State int32

// States of a Client.
const (
	StateConnecting   State = iota // dialling; also the state before Run
	StateConnected                 // both connections up and subscribed, and the connect probe passed
	StateDisconnected              // a connection was lost or a dial failed; waiting to redial
	StateClosed                    // Run has returned
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateDisconnected:
		return "disconnected"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("state(%d)", int32(s))
}

// Client is the ESL client of one FreeSWITCH node. Its methods are safe for
// concurrent use; Run must be called once for it to connect.
type Client struct {
	cfg Config
	log *slog.Logger

	running atomic.Bool
	state   atomic.Int32

	mu      sync.Mutex
	sess    *session
	jobs    map[string]*Job
	lastErr string

	subsMu sync.RWMutex
	subs   []*Subscription

	health health

	lim limiter

	eventsReceived  atomic.Uint64
	framesDropped   atomic.Uint64
	framesRewritten atomic.Uint64
	redials         atomic.Uint64
	commandsSent    atomic.Uint64
	jobsCompleted   atomic.Uint64
	jobTimeouts     atomic.Uint64
	probes          atomic.Uint64
	probeFailures   atomic.Uint64
}

// NewClient returns a client for one node. It does not connect: Run does,
// and Run reports an invalid configuration.
func NewClient(cfg Config) *Client {
	cfg = cfg.withDefaults()
	return &Client{cfg: cfg, log: cfg.Logger, jobs: make(map[string]*Job)}
}

// Name returns the node's name.
func (c *Client) Name() string { return c.cfg.Name }

// State returns the connection state.
func (c *Client) State() State { return State(c.state.Load()) }

func (c *Client) setState(s State) {
	if State(c.state.Swap(int32(s))) != s {
		c.log.Info("esl: state", "node", c.cfg.Name, "state", s.String())
	}
}

// Run connects to the node and keeps both connections up until ctx is
// done, redialling with exponential backoff and jitter after any failure.
// When ctx is done it closes the connections, fails pending jobs with
// ErrClosed, ends every subscription with ErrClosed and returns nil. It
// returns an error at once for an invalid Config or a second call.
func (c *Client) Run(ctx context.Context) error {
	if err := c.cfg.Validate(); err != nil {
		return err
	}
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("esl: Run called twice")
	}
	defer c.endSubscriptions(ErrClosed)
	defer c.setState(StateClosed)
	backoff := c.cfg.BackoffMin
	for ctx.Err() == nil {
		c.setState(StateConnecting)
		s, err := c.connect(ctx)
		if err == nil {
			if err = c.probe(s); err != nil {
				s.kill(err)
				c.teardown(s)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			c.noteError(err)
			c.setState(StateDisconnected)
			c.log.Warn("esl: dial failed", "node", c.cfg.Name, "err", err, "retry_in", backoff)
			if !sleep(ctx, jitter(backoff)) {
				break
			}
			c.redials.Add(1)
			backoff = min(2*backoff, c.cfg.BackoffMax)
			continue
		}
		backoff = c.cfg.BackoffMin
		c.mu.Lock()
		c.sess = s
		c.mu.Unlock()
		c.setState(StateConnected)
		c.dispatch(freeswitch.ReceivedEvent(c.cfg.Name, wire.NewHeaders([]wire.Header{{Name: "Event-Name", Value: string(freeswitch.SocketConnected)}}), "", time.Now().UTC()))
		// Only now are the session's events dispatched (those held during
		// the probe first): every event of this session comes after its
		// SocketConnected.
		s.release()
		if c.cfg.ProbeInterval > 0 {
			s.loops.Add(1)
			go s.probeLoop()
		}
		select {
		case <-s.dead:
		case <-ctx.Done():
			s.kill(ErrClosed)
		}
		c.teardown(s)
		if ctx.Err() != nil {
			break
		}
		c.noteError(s.err)
		c.setState(StateDisconnected)
		c.log.Warn("esl: connection lost", "node", c.cfg.Name, "err", s.err)
		if !sleep(ctx, jitter(c.cfg.BackoffMin)) {
			break
		}
		c.redials.Add(1)
	}
	return nil
}

func (c *Client) noteError(err error) {
	c.mu.Lock()
	c.lastErr = err.Error()
	c.mu.Unlock()
}

// teardown forgets the session and fails every pending job.
func (c *Client) teardown(s *session) {
	s.wait()
	c.mu.Lock()
	if c.sess == s {
		c.sess = nil
	}
	jobs := c.jobs
	c.jobs = make(map[string]*Job)
	c.mu.Unlock()
	for _, j := range jobs {
		j.finish("", ErrClosed)
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// session is one pair of live connections.
type session struct {
	c     *Client
	reqs  chan *request
	dead  chan struct{}
	once  sync.Once
	err   error
	loops sync.WaitGroup

	// mu guards the connections while connect publishes them; the loops
	// start after that and read them freely.
	mu       sync.Mutex
	cmdGuard *guard
	cmdLib   *eventsocket.Connection
	evt      *eventConn

	// holdMu guards held and released: until Run publishes the session
	// (after the connect probe) its events complete jobs but are held
	// back, then dispatched in order.
	holdMu   sync.Mutex
	held     []freeswitch.Event
	released bool
}

type request struct {
	line  string
	reply chan result
}

type result struct {
	text string
	err  error
}

// kill ends the session once, recording why. The command connection is
// closed at once. The event connection is closed at once only when the
// client is closing (ErrClosed); otherwise its reader drains it, for at
// most drainTimeout, so that events FreeSWITCH sent before the failure
// are still delivered.
func (s *session) kill(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.dead)
		s.mu.Lock()
		cmd, evt := s.cmdGuard, s.evt
		s.mu.Unlock()
		if cmd != nil {
			cmd.close()
		}
		if evt != nil {
			if errors.Is(err, ErrClosed) {
				evt.conn.Close()
			} else {
				evt.conn.SetReadDeadline(time.Now().Add(drainTimeout))
			}
		}
	})
}

// publish stores a connection in the session with set, under s.mu, and
// reports false if the session was killed meanwhile: kill may run at any
// time (ctx, the command guard), and each connection is then closed either
// by kill, which finds it, or by connect.
func (s *session) publish(set func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	set()
	select {
	case <-s.dead:
		return false
	default:
		return true
	}
}

// wait returns when the session's loops have stopped.
func (s *session) wait() { s.loops.Wait() }

func (c *Client) connect(ctx context.Context) (*session, error) {
	s := &session{c: c, reqs: make(chan *request), dead: make(chan struct{})}
	stop := context.AfterFunc(ctx, func() { s.kill(ErrClosed) })
	defer stop()
	fail := func(err error) (*session, error) {
		s.kill(err)
		s.mu.Lock()
		cmd, evt := s.cmdGuard, s.evt
		s.mu.Unlock()
		if cmd != nil {
			cmd.close()
		}
		if evt != nil {
			evt.conn.Close()
		}
		return nil, err
	}
	deadline := time.Now().Add(c.cfg.DialTimeout)
	g, lib, err := c.dialCommand(deadline, s.kill)
	if err != nil {
		return fail(err)
	}
	if !s.publish(func() { s.cmdGuard, s.cmdLib = g, lib }) {
		return fail(s.err)
	}
	deadline = time.Now().Add(c.cfg.DialTimeout)
	evt, err := c.dialEvents(deadline, c.subscription(), c.cfg.CommandTimeout)
	if err != nil {
		return fail(err)
	}
	if !s.publish(func() { s.evt = evt }) {
		return fail(s.err)
	}
	if ctx.Err() != nil {
		return fail(ErrClosed)
	}
	s.loops.Add(2)
	go s.commandLoop()
	go s.eventLoop()
	return s, nil
}

// subscription returns the event connection's subscription command.
func (c *Client) subscription() string {
	names := c.cfg.Events
	if len(names) == 0 {
		names = freeswitch.DefaultEvents()
	}
	parts := []string{"event plain"}
	hasJob, custom := false, len(c.cfg.Subclasses) > 0
	for _, n := range names {
		// mod_event_socket reads every word after CUSTOM as a subclass:
		// CUSTOM goes last.
		if n == freeswitch.Custom {
			custom = true
			continue
		}
		parts = append(parts, string(n))
		hasJob = hasJob || n == freeswitch.BackgroundJob
	}
	if !hasJob {
		parts = append(parts, string(freeswitch.BackgroundJob))
	}
	if custom {
		parts = append(parts, string(freeswitch.Custom))
		parts = append(parts, c.cfg.Subclasses...)
	}
	return strings.Join(parts, " ")
}

// commandLoop runs commands one at a time on the command connection.
func (s *session) commandLoop() {
	defer s.loops.Done()
	for {
		select {
		case <-s.dead:
			return
		case req := <-s.reqs:
			req.reply <- s.run(req.line)
		}
	}
}

func (s *session) run(line string) result {
	t := time.AfterFunc(s.c.cfg.CommandTimeout, func() { s.kill(ErrStuck) })
	ev, err := s.cmdLib.Send(line)
	t.Stop()
	s.c.commandsSent.Add(1)
	if err != nil {
		select {
		case <-s.dead:
			if errors.Is(s.err, ErrStuck) {
				return result{err: fmt.Errorf("%w (%w)", ErrClosed, ErrStuck)}
			}
			return result{err: ErrClosed}
		default:
			// go-eventsocket turns "-ERR x" into errors.New("x").
			return result{err: &ReplyError{Text: "-ERR " + err.Error()}}
		}
	}
	return result{text: wire.HeaderString(ev.Header["Reply-Text"])}
}

// eventLoop is the event connection's single reader: it parses,
// completes jobs and enqueues; it never blocks on a subscriber. Every
// event read before the connection fails is delivered before the session
// ends, so before the loss can be observed.
func (s *session) eventLoop() {
	defer s.loops.Done()
	evt := s.evt
	defer evt.conn.Close()
	for _, e := range evt.early {
		s.deliver(e)
	}
	evt.early = nil
	for {
		f, err := evt.fr.Next()
		if err != nil {
			s.kill(fmt.Errorf("esl: event connection: %w", err))
			return
		}
		if e, ok := evt.handle(f); ok {
			s.deliver(e)
		}
	}
}

func (s *session) deliver(e freeswitch.Event) {
	s.c.eventsReceived.Add(1)
	if e.Name == freeswitch.BackgroundJob && s.c.complete(e.Get("Job-UUID"), e.Body) {
		return // a readiness probe's result concerns no subscriber
	}
	s.holdMu.Lock()
	if !s.released {
		s.held = append(s.held, e)
		s.holdMu.Unlock()
		return
	}
	s.holdMu.Unlock()
	s.c.dispatch(e)
}

// release dispatches the events held so far and lets the event reader
// dispatch from now on.
func (s *session) release() {
	s.holdMu.Lock()
	defer s.holdMu.Unlock()
	for _, e := range s.held {
		s.c.dispatch(e)
	}
	s.held, s.released = nil, true
}

// send runs one command line on the command connection.
func (s *session) send(ctx context.Context, line string) (string, error) {
	req := &request{line: line, reply: make(chan result, 1)}
	select {
	case s.reqs <- req:
	case <-s.dead:
		return "", ErrClosed
	case <-ctx.Done():
		return "", ctx.Err()
	}
	select {
	case r := <-req.reply:
		return r.text, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// complete finishes the job whose BACKGROUND_JOB arrived, and reports
// whether it was a readiness probe.
func (c *Client) complete(id, body string) (probe bool) {
	c.mu.Lock()
	j := c.jobs[id]
	delete(c.jobs, id)
	c.mu.Unlock()
	if j == nil {
		return false
	}
	if !j.probe {
		c.jobsCompleted.Add(1)
	}
	j.finish(body, nil)
	return j.probe
}

// forget stops tracking a job (its caller gave up, or it was never
// accepted).
func (c *Client) forget(j *Job) {
	c.mu.Lock()
	if c.jobs[j.ID] == j {
		delete(c.jobs, j.ID)
	}
	c.mu.Unlock()
	j.timer.Stop()
}

// BgAPI runs cmd as "bgapi" with a Job-UUID chosen and registered before
// the command is written. It returns once FreeSWITCH accepted the job;
// the result arrives later (Job.Done, Job.Wait). Errors: a
// *freeswitch.ValidationError for a zero or malformed command, ErrClosed when the node
// is not connected or the connection is lost, a *ReplyError when
// FreeSWITCH refuses the command, ctx.Err() when ctx ends first (the job
// may still run: the connection is only closed if the reply is later than
// Config.CommandTimeout).
func (c *Client) BgAPI(ctx context.Context, cmd freeswitch.Command) (*Job, error) {
	if cmd.IsZero() {
		return nil, errZeroCommand
	}
	return c.bgapi(ctx, cmd.String(), "", 0)
}

// errZeroCommand refuses a Command no builder made.
var errZeroCommand = &freeswitch.ValidationError{Field: "command", Reason: "is empty; build it with package freeswitch's builders"}

// bgapi writes line, a builder's command, as a bgapi job. It takes the
// line rather than the Command so that the write path's own check is
// tested with lines no builder would make.
func (c *Client) bgapi(ctx context.Context, line string, callUUID string, ring time.Duration) (*Job, error) {
	if err := checkLine(line); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		return nil, ErrClosed
	}
	return c.startJob(ctx, s, line, callUUID, c.cfg.JobTimeout+ring, false)
}

// checkLine is the last line of defence on the write path: no command may
// carry a byte that ends it or is not printable ASCII, whatever a builder
// let through.
func checkLine(s string) error {
	if s == "" {
		return &freeswitch.ValidationError{Field: "command", Reason: "is empty"}
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return &freeswitch.ValidationError{Field: "command", Reason: "contains a control or non-ASCII byte"}
		}
	}
	return nil
}

// startJob registers a job, writes it as "bgapi <cmd>" with its Job-UUID
// on session s, and arms its timeout: bound after now, a job whose
// BACKGROUND_JOB has not come fails with ErrJobTimeout. A probe job is not
// reported to Config.OnJobDone.
//
// An originate's job (callUUID set) is named by the leg's uuid: its
// BACKGROUND_JOB then says which leg it ends to whoever follows the
// events, in order with the channel's own.
func (c *Client) startJob(ctx context.Context, s *session, line string, callUUID string, bound time.Duration, probe bool) (*Job, error) {
	id := callUUID
	c.mu.Lock()
	if _, taken := c.jobs[id]; id == "" || taken {
		id = uuid.NewString()
	}
	c.mu.Unlock()
	j := newJob(c, id, line)
	j.UUID = callUUID
	j.probe = probe
	j.timer = time.AfterFunc(bound, func() { c.expire(j, bound) })
	c.mu.Lock()
	c.jobs[j.ID] = j
	c.mu.Unlock()
	reply, err := s.send(ctx, "bgapi "+line+"\nJob-UUID: "+j.ID)
	if err != nil {
		c.forget(j)
		return nil, err
	}
	if !strings.HasPrefix(reply, "+OK") {
		c.forget(j)
		if !strings.HasPrefix(reply, "-") {
			reply = wire.MalformedReply
		}
		return nil, &ReplyError{Text: reply}
	}
	return j, nil
}

// API runs cmd as a bgapi job and waits for its result. A result "+OK x"
// gives "x" ("" for a bare "+OK"); "-ERR ..." or "-USAGE ..." a
// *ReplyError; any other result (JSON, "true", status text) is returned
// without its trailing newline. Errors are those of BgAPI, plus ctx.Err()
// when ctx ends while the job runs.
func (c *Client) API(ctx context.Context, cmd freeswitch.Command) (string, error) {
	j, err := c.BgAPI(ctx, cmd)
	if err != nil {
		return "", err
	}
	return j.Wait(ctx)
}

// Originate starts a call leg as a bgapi job. The leg's uuid is ours:
// o.UUID, or a random one when empty; it is Job.UUID. The job's result is
// FreeSWITCH's originate outcome ("+OK <uuid>" gives the uuid, "-ERR
// USER_BUSY" a *ReplyError); note that FreeSWITCH reports +OK on early
// media, before CHANNEL_ANSWER. Errors are those of BgAPI.
func (c *Client) Originate(ctx context.Context, o freeswitch.Originate) (*Job, error) {
	if o.UUID == "" {
		o.UUID = uuid.NewString()
	}
	cmd, err := o.Command()
	if err != nil {
		return nil, err
	}
	ring := o.Timeout
	if ring == 0 {
		ring = defaultOriginateTimeout
	}
	return c.bgapi(ctx, cmd.String(), o.UUID, ring)
}

// Stats is a snapshot of a Client's counters.
type Stats struct {
	Node  string
	State State
	// EventsReceived counts events read on the event connection.
	EventsReceived uint64
	// FramesDropped counts frames neither the command connection's guard
	// nor the event connection's reader passed on (unknown Content-Type,
	// malformed bodies, oversize, unsolicited replies).
	FramesDropped uint64
	// FramesRewritten counts frames the guard replaced with safe ones.
	FramesRewritten uint64
	// Redials counts dial attempts after the first.
	Redials uint64
	// CommandsSent counts commands written to the command connection.
	CommandsSent uint64
	// JobsCompleted counts jobs completed by BACKGROUND_JOB events,
	// readiness probes aside.
	JobsCompleted uint64
	// JobTimeouts counts jobs whose BACKGROUND_JOB did not come within
	// their bound (Config.JobTimeout), probes included.
	JobTimeouts uint64
	// Probes and ProbeFailures count readiness probes run and failed.
	Probes, ProbeFailures uint64
	// Ready is Client.Ready; NotReady says why not ("" when ready).
	Ready    bool
	NotReady string
	// ProbeLatency is the last passed probe's time from sending it to its
	// BACKGROUND_JOB (0 before the first).
	ProbeLatency time.Duration
	// PendingJobs is the number of jobs waiting for BACKGROUND_JOB.
	PendingJobs int
	// QueueDepths holds each subscription's queue length, in
	// subscription order.
	QueueDepths []int
	// ActiveCalls is the number of Pool acquisitions not yet released.
	ActiveCalls int
	// LastError is the last connection error, "" if none.
	LastError string
}

// Stats returns a snapshot of the client's counters.
func (c *Client) Stats() Stats {
	st := Stats{
		Node:            c.cfg.Name,
		State:           c.State(),
		EventsReceived:  c.eventsReceived.Load(),
		FramesDropped:   c.framesDropped.Load(),
		FramesRewritten: c.framesRewritten.Load(),
		Redials:         c.redials.Load(),
		CommandsSent:    c.commandsSent.Load(),
		JobsCompleted:   c.jobsCompleted.Load(),
		JobTimeouts:     c.jobTimeouts.Load(),
		Probes:          c.probes.Load(),
		ProbeFailures:   c.probeFailures.Load(),
		ActiveCalls:     c.lim.activeCalls(),
	}
	c.mu.Lock()
	st.PendingJobs = len(c.jobs)
	st.LastError = c.lastErr
	c.mu.Unlock()
	st.Ready, st.NotReady = c.readiness()
	st.ProbeLatency = c.health.latency()
	c.subsMu.RLock()
	for _, s := range c.subs {
		st.QueueDepths = append(st.QueueDepths, s.Len())
	}
	c.subsMu.RUnlock()
	return st
}
