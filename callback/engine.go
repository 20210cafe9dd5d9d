// Package callback is callbridge's click-to-call capability: the engine
// that claims queued callbacks from the database and drives them over the
// ESL pool (originate A, then B, bridge, cap, save), the pacing of
// placements, and the adoption of calls another controller left. It
// serves no HTTP: the controller package exposes it through its routes.
//
// Its decisions are a pure state machine, flow.Next (package flow), which
// reads no clock and performs no I/O: given what happened (an Event) and
// the time, it answers the callback's new State and the Actions that
// carry the decision out. A worker (run.go) executes the actions and
// feeds their results back as events; the engine's time is its Clock.
package callback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"callbridge"
	"callbridge/callback/flow"
	"callbridge/esl"
	"callbridge/esl/freeswitch"
)

// Store is what the callback engine needs of the database
// (implemented by *postgres.CallbackService).
type Store interface {
	// ClaimCallbacks claims up to n of the oldest due queued callbacks
	// with a lease and moves them to calling_a; none when none is due.
	// Two workers never claim the same callback.
	ClaimCallbacks(ctx context.Context, owner, node string, lease time.Duration, n int) ([]*callbridge.Callback, error)
	// DueQueue returns how many queued callbacks are due, and since when
	// the oldest of them (zero when none).
	DueQueue(ctx context.Context) (int, time.Time, error)
	// AdoptCallbacks takes over live callbacks whose lease ran out, and
	// with own those owner holds (left by a restart under the same name),
	// never those in held, with their current legs and the history
	// entries of their current attempt that name a carrier attempt
	// (gateway_attempt > 0), in order.
	AdoptCallbacks(ctx context.Context, owner string, lease time.Duration, n int, own bool, held []string) ([]*callbridge.Callback, error)
	// RenewLeases extends leases and reports cancellations and losses.
	RenewLeases(ctx context.Context, owner string, ids []string, lease time.Duration) (cancel, lost []string, err error)
	// UpdateCallback persists one step; ECONFLICT when the lease is lost.
	UpdateCallback(ctx context.Context, u *callbridge.CallbackUpdate) error
	// CancelRequested reports whether a DELETE asked the callback to end.
	CancelRequested(ctx context.Context, id string) (bool, error)
}

// Config configures a Engine.
type Config struct {
	// Owner names this controller in leases. It must differ between
	// controllers sharing a database and should stay the same across
	// restarts (a restarted controller adopts its own calls at once).
	Owner string
	// Gateway is the sofia gateway both legs are placed through when no
	// route plan routes them (Routes nil, or it answers no plan).
	Gateway string
	// Routes, when set, resolves each leg's carrier gateways just before
	// the leg is first placed (PlanRouter; B's when A has answered, at
	// that moment's time band, prices and gateway health): the leg is
	// placed through the first, and through the next after a carrier
	// failure (the plan's failover policy, attempts and post-dial
	// budget). An adopted leg's plan is resolved again at adoption and
	// the leg goes on from the attempt its history records.
	Routes Router
	// Gateways, when set, claims every attempt through a route's gateway
	// before it is placed and ends it after (caps, counts, breakers).
	Gateways GatewayTracker
	// OnFailover, when set, is told of every failover (metrics).
	OnFailover func(from, to string)
	// Lease is how long a claim holds without renewal; a controller that
	// dies loses its calls to another after this long (default 15 s).
	Lease time.Duration
	// PollInterval is how often an idle engine looks for due callbacks
	// queued by other controllers (default 200 ms); Wake skips the wait.
	PollInterval time.Duration
	// NodeGrace is how long a callback waits for its node to reconnect
	// before failing with node_unavailable (default 5 s).
	NodeGrace time.Duration
	// RefusedRetry is how long after its claim a callback whose leg A the
	// nodes refuse (no session: max-sessions, sessions-per-second,
	// min-idle-cpu, congestion) is placed again before it fails with
	// node_unavailable (default 60 s). A refused leg B is placed again
	// for as long as B may ring, since A is waiting on the line.
	RefusedRetry time.Duration
	// QueueWait bounds the work accepted: while the due queue is deeper
	// than what the nodes place in QueueWait (at least minQueueBound
	// callbacks), or its oldest callback has waited longer than
	// QueueWait, new callbacks are refused with 503 and Retry-After
	// (default 30 s).
	QueueWait time.Duration
	// Prompts is the allow-list of sounds a request may name as prompt:
	// name to absolute file path on the FreeSWITCH node. "ringback" must
	// be listed for the ringback prompt to be played.
	Prompts map[string]string
	// FailurePrompts are played to A when B fails (by reason; the ""
	// entry for reasons not listed), before A is hung up. No entry: A is
	// hung up at once.
	FailurePrompts map[callbridge.FailReason]string
	// FailurePromptTime bounds how long A is held for a failure prompt
	// (default 30 s): FreeSWITCH hangs A up when the prompt has played,
	// or after this (sched_hangup) if it has not, as a tone never ends.
	FailurePromptTime time.Duration
	// RecordDir is the absolute directory on the node where recordings of
	// callbacks with record=true are written as <callback id>.wav.
	RecordDir string
	// LegWait bounds how long an ended callback waits for its remaining
	// legs' hangup events, to record them (default 30 s).
	LegWait time.Duration
	// CallAuthorizer, when set, returns an authorizer whose grants last at
	// most max (0: its own limit), such as a billing.Authorizer with
	// MaxCall set to max. Both legs are authorised on their own channels
	// before A is called: the leg's origination uuid is the call id and its
	// dialled number is priced. A is asked for max_duration plus B's ring
	// time, B for max_duration; when the balance cannot pay for both, the
	// duration is halved until it can, down to MinMaxDuration (tried last), so
	// that A cannot hold the whole balance and leave nothing for B. A
	// prepaid leg holds a reservation that its CDR settles; a leg that
	// never got a channel, or was never answered, releases it. Each leg is
	// capped in FreeSWITCH (sched_hangup ALLOTTED_TIMEOUT) at its grant
	// from its own answer, as well as at max_duration from the bridge.
	// ENOFUNDS fails the callback with insufficient_funds before anyone
	// is called. Without it every callback may be placed for its
	// requested max_duration.
	CallAuthorizer func(max time.Duration) callbridge.CallAuthorizer
	// Clock is the time the engine reads and waits on (default: the
	// system's); tests move it on instead of waiting.
	Clock Clock
	// Logger receives one line per callback outcome and every failure.
	Logger *slog.Logger
	// OnStatus, when set, is told of every status change the engine
	// persists (reason is set with failed).
	OnStatus func(status callbridge.CallbackStatus, reason callbridge.FailReason)
}

// Engine places callbacks: it claims queued callbacks from the
// database, paces them through the ESL pool, drives each through its legs
// by FreeSWITCH events, and persists every transition. Several engines (in
// several controllers) may share one database and one set of nodes.
//
// Pacing counts one pool call per callback (both legs run on the node that
// placed A, as uuid_bridge requires). Callbacks adopted after a restart are
// not counted against the pool.
type Engine struct {
	store Store
	pool  *esl.Pool
	cfg   Config
	log   *slog.Logger
	clock Clock

	wake     chan struct{}
	mu       sync.Mutex
	runs     map[string]*run // by callback id
	routes   map[string]*run // by leg uuid
	orphans  map[string][]string
	draining bool
	idle     chan struct{} // closed and replaced when runs becomes empty
	// restarted is closed once the first adoption pass, which takes the
	// callbacks this owner held before a restart, has succeeded; claiming
	// waits for it, so no later pass needs to look at this owner's claims.
	restarted chan struct{}
	wg        sync.WaitGroup

	pacer   *pacer
	refused atomic.Int64 // originates the nodes refused
	waiting atomic.Int64 // refused legs waiting to be placed again
	shed    atomic.Int64 // callbacks refused by the admission bound
	queueMu sync.Mutex
	queue   queueStat
}

// queueStat is the due queue as last read.
type queueStat struct {
	at     time.Time
	due    int
	oldest time.Time
}

// NewEngine returns an engine; Run starts it.
func NewEngine(store Store, pool *esl.Pool, cfg Config) (*Engine, error) {
	if store == nil || pool == nil {
		return nil, errors.New("callback: callback engine needs a store and a pool")
	}
	if cfg.Owner == "" {
		return nil, errors.New("callback: callback engine needs an owner name")
	}
	if cfg.Gateway == "" {
		return nil, errors.New("callback: callback engine needs a gateway")
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 15 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 200 * time.Millisecond
	}
	if cfg.NodeGrace <= 0 {
		cfg.NodeGrace = 5 * time.Second
	}
	if cfg.RefusedRetry <= 0 {
		cfg.RefusedRetry = 60 * time.Second
	}
	if cfg.QueueWait <= 0 {
		cfg.QueueWait = 30 * time.Second
	}
	if cfg.FailurePromptTime <= 0 {
		cfg.FailurePromptTime = 30 * time.Second
	}
	if cfg.LegWait <= 0 {
		cfg.LegWait = 30 * time.Second
	}
	if cfg.RecordDir == "" {
		cfg.RecordDir = "/var/lib/freeswitch/recordings/callbridge"
	}
	for name, p := range cfg.Prompts {
		if err := callbridge.ValidatePromptName(name); err != nil || !path.IsAbs(p) && p != freeswitch.ToneRingbackUS && p != freeswitch.ToneRingbackUK && p != freeswitch.ToneRingbackEU {
			return nil, fmt.Errorf("callback: prompt %q: want a name of [a-z0-9_-] and an absolute path", name)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	return &Engine{
		store: store, pool: pool, cfg: cfg, log: cfg.Logger, clock: cfg.Clock,
		pacer:     newPacer(func() float64 { return float64(pool.MaxCPS()) }),
		wake:      make(chan struct{}, 1),
		runs:      map[string]*run{},
		routes:    map[string]*run{},
		orphans:   map[string][]string{},
		idle:      make(chan struct{}),
		restarted: make(chan struct{}),
	}, nil
}

// PromptAllowed reports whether a request may name prompt.
func (e *Engine) PromptAllowed(name string) bool {
	if name == callbridge.PromptNone || name == callbridge.PromptRingback {
		return true
	}
	_, ok := e.cfg.Prompts[name]
	return ok
}

// Wake makes the engine look for queued callbacks now.
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Live returns the number of callbacks this engine drives.
func (e *Engine) Live() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.runs)
}

// Cancel hangs up a live callback after its cancellation was recorded. If
// this engine drives it, its worker does; otherwise the legs are killed
// through the pool and the owning controller records the outcome.
func (e *Engine) Cancel(ctx context.Context, cb *callbridge.Callback) {
	e.mu.Lock()
	r := e.runs[cb.ID]
	e.mu.Unlock()
	if r != nil {
		r.post(flow.EventCancel{})
		return
	}
	for _, l := range cb.Legs {
		if l.HangupAt != nil || l.Attempt != cb.Attempt {
			continue
		}
		c := e.pool.Lookup(l.Node)
		if c == nil {
			continue
		}
		if cmd, err := freeswitch.UUIDKill(l.UUID, "NORMAL_CLEARING"); err == nil {
			if _, err := c.API(ctx, cmd); err != nil {
				e.log.Debug("cancel: uuid_kill", "callback", cb.ID, "uuid", l.UUID, "error", err)
			}
		}
	}
}

// Drain stops claiming new callbacks and waits until the live ones have
// ended or ctx is done. Calls still live afterwards keep their leases and
// are adopted by another controller (or this one after a restart).
func (e *Engine) Drain(ctx context.Context) {
	e.mu.Lock()
	e.draining = true
	e.mu.Unlock()
	for {
		e.mu.Lock()
		n, idle := len(e.runs), e.idle
		e.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return
		}
	}
}

// Run drives callbacks until ctx is done. Workers still live then are
// abandoned without touching their calls; their leases run out and the
// calls are adopted and reconciled elsewhere.
func (e *Engine) Run(ctx context.Context) error {
	var bg sync.WaitGroup
	for _, c := range e.pool.Clients() {
		sub := c.Subscribe(0)
		bg.Add(2)
		go func() { defer bg.Done(); e.dispatch(ctx, c, sub) }()
		go func() { defer bg.Done(); e.watch(ctx, c) }()
	}
	bg.Add(1)
	go func() { defer bg.Done(); e.leases(ctx) }()
	e.claimLoop(ctx)
	bg.Wait()
	e.wg.Wait()
	return nil
}

// dispatch routes one node's channel events to the workers of the legs
// they concern, and reconciles after each reconnection.
func (e *Engine) dispatch(ctx context.Context, c *esl.Client, sub *esl.Subscription) {
	defer sub.Close()
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error("callback engine: event subscription ended", "node", c.Name(), "error", err)
			}
			return
		}
		if ev.Name == freeswitch.SocketConnected {
			e.mu.Lock()
			orphans := e.orphans[c.Name()]
			delete(e.orphans, c.Name())
			var runs []*run
			for _, r := range e.runs {
				if r.client == c {
					runs = append(runs, r)
				}
			}
			e.mu.Unlock()
			for _, id := range orphans {
				if cmd, err := freeswitch.UUIDKill(id, "NORMAL_CLEARING"); err == nil {
					if _, err := c.BgAPI(ctx, cmd); err != nil {
						e.log.Warn("callback engine: kill orphan leg", "node", c.Name(), "uuid", id, "error", err)
					}
				}
			}
			for _, r := range runs {
				r.post(flow.EventNodeUp{})
			}
			continue
		}
		if ev.Name == freeswitch.BackgroundJob {
			// An originate's job is named by its leg's uuid. Its result
			// comes after the channel's events on the same connection;
			// taken from here, it reaches the worker after them too (a
			// carrier's 503 is known from CHANNEL_HANGUP before the job
			// says -ERR NORMAL_TEMPORARY_FAILURE).
			e.mu.Lock()
			r := e.routes[ev.Get("Job-UUID")]
			e.mu.Unlock()
			if body := strings.TrimRight(ev.Body, "\n"); r != nil && strings.HasPrefix(body, "-") {
				re := &esl.ReplyError{Text: body}
				r.post(flow.EventJobFailed{UUID: ev.Get("Job-UUID"), Cause: re.Cause(), Detail: re.Text})
			}
			continue
		}
		if ev.UUID == "" {
			continue
		}
		e.mu.Lock()
		r := e.routes[ev.UUID]
		e.mu.Unlock()
		if r != nil {
			r.post(channelEvent(ev))
		}
	}
}

// watch tells a node's workers when its connection is lost.
func (e *Engine) watch(ctx context.Context, c *esl.Client) {
	was := c.State() == esl.StateConnected
	for e.sleep(ctx, 50*time.Millisecond) {
		now := c.State() == esl.StateConnected
		if was && !now {
			e.mu.Lock()
			var runs []*run
			for _, r := range e.runs {
				if r.client == c {
					runs = append(runs, r)
				}
			}
			e.mu.Unlock()
			for _, r := range runs {
				r.post(flow.EventNodeDown{})
			}
		}
		was = now
	}
}

// leases renews the leases of live callbacks, delivers cancellations
// requested through other controllers, and adopts orphaned callbacks.
func (e *Engine) leases(ctx context.Context) {
	every := e.cfg.Lease / 3
	for !e.adopt(ctx, true) {
		if !e.sleep(ctx, every) {
			return
		}
	}
	close(e.restarted)
	for e.sleep(ctx, every) {
		e.mu.Lock()
		ids := make([]string, 0, len(e.runs))
		for id, r := range e.runs {
			if r.claimed.Load() {
				ids = append(ids, id)
			}
		}
		e.mu.Unlock()
		cancel, lost, err := e.store.RenewLeases(ctx, e.cfg.Owner, ids, e.cfg.Lease)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("callback engine: renew leases", "error", err)
			}
			continue
		}
		e.mu.Lock()
		for _, id := range cancel {
			if r := e.runs[id]; r != nil {
				r.post(flow.EventCancel{})
			}
		}
		for _, id := range lost {
			if r := e.runs[id]; r != nil {
				r.log.Warn("callback lease lost; another controller drives it")
				r.post(flow.EventAbandon{})
			}
		}
		e.mu.Unlock()
		e.adopt(ctx, false)
	}
}

// adopt takes over live callbacks whose controller went away, and with
// own (the first pass) those this owner held before a restart. Later
// passes leave this owner's claims alone: a claim is registered as a run
// only after its transaction, so a pass that looked at them would take a
// callback being started here for an orphan. It reports whether the pass
// ran.
func (e *Engine) adopt(ctx context.Context, own bool) bool {
	e.mu.Lock()
	draining := e.draining
	held := make([]string, 0, len(e.runs))
	for id := range e.runs {
		held = append(held, id)
	}
	e.mu.Unlock()
	if draining {
		return true
	}
	cbs, err := e.store.AdoptCallbacks(ctx, e.cfg.Owner, e.cfg.Lease, 100, own, held)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("callback engine: adopt", "error", err)
		}
		return false
	}
	for _, cb := range cbs {
		e.mu.Lock()
		_, running := e.runs[cb.ID]
		e.mu.Unlock()
		if running {
			continue
		}
		e.log.Info("callback adopted", "callback", cb.ID, "status", cb.Status, "node", cb.Node)
		e.start(ctx, cb, true)
	}
	return true
}

func (e *Engine) anyConnected() bool {
	for _, c := range e.pool.Clients() {
		if c.State() == esl.StateConnected {
			return true
		}
	}
	return false
}

// claimLoop claims queued callbacks as fast as the pacer allows, in
// batches when the queue is deep: the next batch is claimed once every
// callback of the previous one has its pool slot, so at most one batch
// per engine waits for pacing.
func (e *Engine) claimLoop(ctx context.Context) {
	wait := func(d time.Duration) bool {
		c, stop := e.after(d)
		defer stop()
		select {
		case <-ctx.Done():
			return false
		case <-e.wake:
		case <-c:
		}
		return true
	}
	select {
	case <-e.restarted:
	case <-ctx.Done():
		return
	}
	for ctx.Err() == nil {
		e.mu.Lock()
		draining := e.draining
		e.mu.Unlock()
		if draining || !e.anyConnected() {
			if !wait(e.cfg.PollInterval) {
				return
			}
			continue
		}
		if e.waiting.Load() > 0 {
			// Refused legs are placed again first.
			if !wait(e.cfg.PollInterval) {
				return
			}
			continue
		}
		n := e.pacer.take(e.clock.Now(), claimBatch)
		if n == 0 {
			if !e.sleep(ctx, e.pacer.wait(e.clock.Now())) {
				return
			}
			continue
		}
		cbs, err := e.store.ClaimCallbacks(ctx, e.cfg.Owner, "", e.cfg.Lease, n)
		e.pacer.giveBack(n - len(cbs))
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("callback engine: claim", "error", err)
			}
			if !wait(e.cfg.PollInterval) {
				return
			}
			continue
		}
		if len(cbs) == 0 {
			if !wait(e.cfg.PollInterval) {
				return
			}
			continue
		}
		runs := make([]*run, 0, len(cbs))
		for _, cb := range cbs {
			e.onStatus(cb.Status, "") // the claim moved it to calling_a
			runs = append(runs, e.start(ctx, cb, false))
		}
		for _, r := range runs {
			select {
			case <-r.placed:
			case <-ctx.Done():
				return
			}
		}
	}
}

// minQueueBound is the due queue always accepted, whatever the nodes
// place: a burst into an idle system, or probes while nodes refuse.
const minQueueBound = 10

// queueStatTTL is how long a read of the due queue serves admissions.
const queueStatTTL = 250 * time.Millisecond

// Admit reports whether a new callback may be queued: nil, or an
// EUNAVAILABLE error wrapped in *callbridge.RetryAfter once the queue is past its
// bound. The bound compares the due queue, shared by every controller,
// with the rate at which the nodes take this engine's placements (the
// pacer's ceiling while none was refused over the last 10 s, otherwise
// what they accepted over those 10 s): more due callbacks than that rate
// places in QueueWait (and at least minQueueBound), or a due callback
// older than QueueWait, and the work would wait longer than QueueWait to
// be placed. A failed read of the queue admits (the database then
// answers the creation itself).
func (e *Engine) Admit(ctx context.Context) error {
	now := e.clock.Now()
	e.queueMu.Lock()
	q := e.queue
	e.queueMu.Unlock()
	if now.Sub(q.at) > queueStatTTL {
		due, oldest, err := e.store.DueQueue(ctx)
		if err != nil {
			return nil
		}
		q = queueStat{at: now, due: due, oldest: oldest}
		e.queueMu.Lock()
		e.queue = q
		e.queueMu.Unlock()
	}
	rate := e.pacer.placing(now)
	wait := e.cfg.QueueWait
	bound := max(rate*wait.Seconds(), minQueueBound)
	var age time.Duration
	if !q.oldest.IsZero() {
		age = now.Sub(q.oldest)
	}
	if float64(q.due) < bound && age <= wait {
		e.queueMu.Lock()
		e.queue.due++ // a burst counts itself before the next read
		e.queueMu.Unlock()
		return nil
	}
	e.shed.Add(1)
	// Come back when the excess has been placed, 1 s to 60 s.
	after := wait / 3
	if rate > 0 {
		after = time.Duration((float64(q.due) + 1 - bound) / rate * float64(time.Second))
	}
	after = max(after, age-wait)
	secs := int(min(max(after, time.Second), time.Minute).Round(time.Second) / time.Second)
	return &callbridge.RetryAfter{Seconds: secs, Err: callbridge.Errorf(callbridge.EUNAVAILABLE,
		"overloaded: %d callbacks wait to be placed (the oldest for %s) and the nodes take %.1f per second; retry in %d s",
		q.due, age.Round(time.Second), rate, secs)}
}

// Pacing returns the placements per second the engine allows now, how
// many originates the nodes refused, and how many callbacks the admission
// bound refused.
func (e *Engine) Pacing() (rate float64, refused, shed int64) {
	return e.pacer.Rate(), e.refused.Load(), e.shed.Load()
}

// onStatus reports a status change the engine persisted to OnStatus.
func (e *Engine) onStatus(status callbridge.CallbackStatus, reason callbridge.FailReason) {
	if e.cfg.OnStatus != nil {
		e.cfg.OnStatus(status, reason)
	}
}
