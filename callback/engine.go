// Package callback is callbridge's click-to-call capability: the engine
// that claims queued callbacks from the database and drives them over the
// ESL pool (originate A, then B, bridge, cap, save), the pacing of
// placements, and the adoption of calls another controller left. It
// serves no HTTP: the controller package exposes it through its routes.
package callback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"callbridge"
	"callbridge/esl"

	"github.com/google/uuid"
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
	// never those in held, with their current legs.
	AdoptCallbacks(ctx context.Context, owner string, lease time.Duration, n int, own bool, held []string) ([]*callbridge.Callback, error)
	// RenewLeases extends leases and reports cancellations and losses.
	RenewLeases(ctx context.Context, owner string, ids []string, lease time.Duration) (cancel, lost []string, err error)
	// UpdateCallback persists one step; ECONFLICT when the lease is lost.
	UpdateCallback(ctx context.Context, u *callbridge.CallbackUpdate) error
	// CancelRequested reports whether a DELETE asked the callback to end.
	CancelRequested(ctx context.Context, id string) (bool, error)
}

// Authorizer decides whether a callback may be placed and for how long,
// for the callback as a whole. It cannot tie money to the legs' channels;
// Config.CallAuthorizer, which can, is preferred.
type Authorizer interface {
	// Authorize returns the longest the call may last (0: no limit of its
	// own). ENOFUNDS fails the callback with insufficient_funds; any other
	// error fails it with internal.
	Authorize(ctx context.Context, accountID string, a, b callbridge.Number) (maxDuration time.Duration, err error)
}

// Config configures a Engine.
type Config struct {
	// Owner names this controller in leases. It must differ between
	// controllers sharing a database and should stay the same across
	// restarts (a restarted controller adopts its own calls at once).
	Owner string
	// Gateway is the sofia gateway both legs are placed through.
	Gateway string
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
	// FailurePromptTime is how long A hears a failure prompt (default 4 s);
	// FreeSWITCH hangs A up after it (sched_hangup).
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
	// is called.
	CallAuthorizer func(max time.Duration) callbridge.CallAuthorizer
	// Authorizer, when set and CallAuthorizer is not, is asked once before
	// A is called; nil (and no CallAuthorizer) means every callback may be
	// placed for its requested max_duration.
	Authorizer Authorizer
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
		cfg.FailurePromptTime = 4 * time.Second
	}
	if cfg.LegWait <= 0 {
		cfg.LegWait = 30 * time.Second
	}
	if cfg.RecordDir == "" {
		cfg.RecordDir = "/var/lib/freeswitch/recordings/callbridge"
	}
	for name, p := range cfg.Prompts {
		if err := callbridge.ValidatePromptName(name); err != nil || !path.IsAbs(p) && p != esl.ToneRingbackUS && p != esl.ToneRingbackUK && p != esl.ToneRingbackEU {
			return nil, fmt.Errorf("callback: prompt %q: want a name of [a-z0-9_-] and an absolute path", name)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Engine{
		store: store, pool: pool, cfg: cfg, log: cfg.Logger,
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
		r.post(msg{kind: msgCancel})
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
		if cmd, err := esl.UUIDKill(l.UUID, "NORMAL_CLEARING"); err == nil {
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
		if ev.Name == esl.SocketConnected {
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
				if cmd, err := esl.UUIDKill(id, "NORMAL_CLEARING"); err == nil {
					if _, err := c.BgAPI(ctx, cmd); err != nil {
						e.log.Warn("callback engine: kill orphan leg", "node", c.Name(), "uuid", id, "error", err)
					}
				}
			}
			for _, r := range runs {
				r.post(msg{kind: msgNodeUp})
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
			r.post(msg{kind: msgEvent, ev: ev})
		}
	}
}

// watch tells a node's workers when its connection is lost.
func (e *Engine) watch(ctx context.Context, c *esl.Client) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	was := c.State() == esl.StateConnected
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
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
				r.post(msg{kind: msgNodeDown})
			}
		}
		was = now
	}
}

// leases renews the leases of live callbacks, delivers cancellations
// requested through other controllers, and adopts orphaned callbacks.
func (e *Engine) leases(ctx context.Context) {
	t := time.NewTicker(e.cfg.Lease / 3)
	defer t.Stop()
	for !e.adopt(ctx, true) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	close(e.restarted)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
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
				r.post(msg{kind: msgCancel})
			}
		}
		for _, id := range lost {
			if r := e.runs[id]; r != nil {
				r.post(msg{kind: msgLost})
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
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-e.wake:
		case <-t.C:
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
		n := e.pacer.take(time.Now(), claimBatch)
		if n == 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(e.pacer.wait(time.Now())):
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
	now := time.Now()
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

// start runs a worker for cb.
func (e *Engine) start(ctx context.Context, cb *callbridge.Callback, adopted bool) *run {
	r := &run{
		e: e, cb: cb, adopted: adopted,
		signal: make(chan struct{}, 1),
		placed: make(chan struct{}),
		log:    e.log.With("callback", cb.ID, "account", cb.AccountID),
	}
	r.claimed.Store(true)
	e.mu.Lock()
	e.runs[cb.ID] = r
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		r.loop(ctx)
		e.mu.Lock()
		// A callback queued again may already run under a newer worker,
		// which keeps its place.
		if e.runs[cb.ID] == r {
			delete(e.runs, cb.ID)
		}
		for _, l := range []*leg{&r.a, &r.b} {
			if l.uuid != "" && e.routes[l.uuid] == r {
				delete(e.routes, l.uuid)
			}
		}
		if len(e.runs) == 0 {
			close(e.idle)
			e.idle = make(chan struct{})
		}
		e.mu.Unlock()
		if r.release != nil {
			r.release()
		}
		r.releaseGrants(ctx)
	}()
	return r
}

func (e *Engine) route(uuid string, r *run) {
	e.mu.Lock()
	e.routes[uuid] = r
	e.mu.Unlock()
}

// unroute stops routing uuid's events to r.
func (e *Engine) unroute(uuid string, r *run) {
	e.mu.Lock()
	if e.routes[uuid] == r {
		delete(e.routes, uuid)
	}
	e.mu.Unlock()
}

type msgKind int

const (
	msgEvent msgKind = iota
	msgJob
	msgCancel
	msgNodeDown
	msgNodeUp
	msgGrace
	msgLost
)

// msg is what a worker is told: an event of one of its legs, the result
// of an originate, a cancellation, or a change of its node's connection.
type msg struct {
	kind msgKind
	ev   esl.Event
	leg  string
	err  error
}

// leg is what a worker knows about one leg.
type leg struct {
	name       string // "a" or "b"
	uuid       string
	number     callbridge.Number
	callerID   callbridge.Number
	originated bool
	ringing    bool
	answered   bool
	hungup     bool
	lost       bool // vanished while no event could reach us
	cause      string
	killSent   bool
	// grant is the longest the leg may last from its answer when a
	// CallAuthorizer authorised it (0: not authorised per leg); reserved
	// says it holds a prepaid reservation under uuid.
	grant    time.Duration
	reserved bool
	capSent  bool
	// session says the node created a channel for this placement (an
	// event of it arrived). firstPlaced is when the leg was first placed,
	// refusals how often the node refused it before a session existed,
	// retryAt when it is placed again.
	session     bool
	firstPlaced time.Time
	refusals    int
	retryAt     time.Time
	waiting     bool // counted in the engine's waiting
}

func (l *leg) live() bool { return l.originated && !l.hungup }

// run drives one callback. All its fields are used only by its own
// goroutine, except the mailbox.
type run struct {
	e       *Engine
	cb      *callbridge.Callback
	log     *slog.Logger
	adopted bool
	claimed atomic.Bool // holds a lease to renew

	client  *esl.Client
	release func()
	placed  chan struct{} // closed once a pool slot is held or the run ended
	placedX bool

	mu     sync.Mutex
	mail   []msg
	signal chan struct{}

	a, b        leg
	status      callbridge.CallbackStatus
	maxDuration time.Duration
	cancelled   bool
	ended       bool // terminal or requeued: only waiting for legs
	endBy       time.Time
	abandoned   bool
	nodeDown    bool
	grace       *time.Timer
	started     time.Time   // when the worker took the callback
	retryTimer  *time.Timer // wakes the worker to place a refused leg again
}

// setClient sets the node the worker uses; dispatchers read it under e.mu.
func (r *run) setClient(c *esl.Client) {
	r.e.mu.Lock()
	r.client = c
	r.e.mu.Unlock()
}

func (r *run) post(m msg) {
	r.mu.Lock()
	r.mail = append(r.mail, m)
	r.mu.Unlock()
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

func (r *run) markPlaced() {
	if !r.placedX {
		r.placedX = true
		close(r.placed)
	}
}

// loop is the worker's life: take a pool slot (or reconcile an adopted
// call), then react to messages until the callback has ended and its legs
// are down.
func (r *run) loop(ctx context.Context) {
	defer r.markPlaced()
	defer func() {
		if r.grace != nil {
			r.grace.Stop()
		}
		if r.retryTimer != nil {
			r.retryTimer.Stop()
		}
		r.setWaiting(&r.a, false)
		r.setWaiting(&r.b, false)
	}()
	r.started = time.Now()
	r.status = r.cb.Status
	r.a = leg{name: callbridge.LegA, number: r.cb.A, callerID: r.cb.CallerIDA}
	r.b = leg{name: callbridge.LegB, number: r.cb.B, callerID: r.cb.CallerIDB}
	r.maxDuration = time.Duration(r.cb.MaxDuration) * time.Second
	if r.adopted {
		if !r.resume(ctx) {
			return
		}
	} else if !r.acquire(ctx) {
		return
	}
	r.markPlaced()
	r.step(ctx)
	var linger *time.Timer
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	for !r.abandoned && !(r.ended && r.legsDown()) {
		var timeout <-chan time.Time
		if r.ended {
			if linger == nil {
				linger = time.NewTimer(time.Until(r.endBy))
			}
			timeout = linger.C
		}
		select {
		case <-ctx.Done():
			return
		case <-timeout:
			r.log.Warn("callback legs did not report hangup in time", "a", r.a.uuid, "b", r.b.uuid)
			return
		case <-r.signal:
		}
		r.mu.Lock()
		mail := r.mail
		r.mail = nil
		r.mu.Unlock()
		for _, m := range mail {
			r.handle(ctx, m)
			if r.abandoned {
				return
			}
		}
		r.step(ctx)
	}
}

func (r *run) legsDown() bool { return !r.a.live() && !r.b.live() }

// acquire takes a pool slot for a freshly claimed callback, waiting for
// pacing; it fails the callback if no node is connected.
func (r *run) acquire(ctx context.Context) bool {
	deadline := time.Now().Add(r.e.cfg.NodeGrace)
	for {
		c, release, err := r.e.pool.Acquire(ctx)
		if err == nil {
			r.setClient(c)
			r.release = release
			r.markPlaced() // the claim loop may claim the next one now
			return r.save(ctx, &callbridge.CallbackUpdate{Node: c.Name()})
		}
		if ctx.Err() != nil {
			return false
		}
		if callbridge.ErrorCode(err) == callbridge.EUNAVAILABLE && time.Now().After(deadline) {
			r.finish(ctx, callbridge.ReasonNodeUnavailable, "no FreeSWITCH node connected")
			return false
		}
		r.mu.Lock()
		cancelled := false
		for _, m := range r.mail {
			cancelled = cancelled || m.kind == msgCancel
		}
		r.mu.Unlock()
		if cancelled {
			r.finish(ctx, callbridge.ReasonCancelled, "cancelled while waiting for a node")
			return false
		}
		t := time.NewTimer(5 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// resume reconciles an adopted callback against its node: legs that
// still exist are tracked again, legs that vanished count as lost.
func (r *run) resume(ctx context.Context) bool {
	if len(r.cb.Legs) == 0 && r.status == callbridge.CallbackCallingA {
		// Claimed but never dialled (its controller stopped before the
		// leg was recorded, which precedes the originate): A was never
		// called, so it is placed like a fresh claim, on any node.
		r.log.Info("adopted callback was never dialled; placing it", "node", r.cb.Node)
		return r.acquire(ctx)
	}
	r.setClient(r.e.pool.Lookup(r.cb.Node))
	for _, l := range r.cb.Legs {
		leg := &r.a
		if l.Leg == callbridge.LegB {
			leg = &r.b
		}
		leg.uuid, leg.originated = l.UUID, true
		leg.ringing = l.RingingAt != nil
		leg.answered = l.AnsweredAt != nil
		if l.HangupAt != nil {
			leg.hungup, leg.cause = true, l.HangupCause
		}
		r.e.route(l.UUID, r)
	}
	if r.client == nil {
		r.finish(ctx, callbridge.ReasonNodeUnavailable, "node "+r.cb.Node+" is not configured")
		return false
	}
	deadline := time.Now().Add(r.e.cfg.NodeGrace)
	for r.client.State() != esl.StateConnected {
		if time.Now().After(deadline) {
			r.finish(ctx, callbridge.ReasonNodeUnavailable, "node "+r.cb.Node+" unreachable after restart")
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	if !r.reconcile(ctx, "adopted by "+r.e.cfg.Owner) {
		r.nodeLost(ctx, "cannot list the channels of "+r.client.Name())
	}
	return !r.abandoned
}

// reconcile compares the legs believed live with the node's channels. It
// returns false when the channels could not be listed; the caller leaves
// the decision to the grace timer or the next reconnection.
func (r *run) reconcile(ctx context.Context, why string) bool {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	chans, err := r.client.Channels(cctx)
	if err != nil {
		r.log.Warn("reconcile: show channels", "error", err)
		return false
	}
	present := make(map[string]esl.Channel, len(chans))
	for _, ch := range chans {
		present[ch.UUID] = ch
	}
	detail := why
	for _, l := range []*leg{&r.a, &r.b} {
		if !l.live() {
			continue
		}
		ch, ok := present[l.uuid]
		now := time.Now().UTC()
		switch {
		case !ok:
			l.hungup, l.lost = true, true
			detail += "; leg " + l.name + " gone"
			r.save(ctx, &callbridge.CallbackUpdate{Leg: r.legUpdate(l, func(u *callbridge.LegUpdate) { u.Hangup = now })})
		case ch.CallState == "ACTIVE" && !l.answered:
			l.answered = true
			detail += "; leg " + l.name + " answered"
			r.save(ctx, &callbridge.CallbackUpdate{Leg: r.legUpdate(l, func(u *callbridge.LegUpdate) { u.Answered = now })})
		default:
			detail += "; leg " + l.name + " present"
		}
	}
	r.save(ctx, &callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventReconciled, Detail: detail}}})
	return true
}

// nodeLost stops the worker from acting until its node is back and
// reconciled (msgNodeUp), or NodeGrace has passed (msgGrace).
func (r *run) nodeLost(ctx context.Context, detail string) {
	if r.nodeDown {
		return
	}
	r.nodeDown = true
	r.save(ctx, &callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventNodeLost, Detail: detail}}})
	if r.grace != nil {
		r.grace.Stop()
	}
	r.grace = time.AfterFunc(r.e.cfg.NodeGrace, func() { r.post(msg{kind: msgGrace}) })
}

func (r *run) legUpdate(l *leg, f func(*callbridge.LegUpdate)) *callbridge.LegUpdate {
	u := &callbridge.LegUpdate{Leg: l.name, Attempt: r.cb.Attempt, UUID: l.uuid, Node: r.client.Name(), Number: l.number, CallerID: l.callerID}
	if f != nil {
		f(u)
	}
	return u
}

// save persists u for this callback, retrying briefly; a lost lease or a
// database that stays away abandons the call to whoever takes it over.
func (r *run) save(ctx context.Context, u *callbridge.CallbackUpdate) bool {
	if r.abandoned {
		return false
	}
	u.ID, u.Owner = r.cb.ID, r.e.cfg.Owner
	var err error
	for i := 0; i < 5; i++ {
		err = r.e.store.UpdateCallback(ctx, u)
		if err == nil {
			if u.Status != "" {
				r.status = u.Status
				r.e.onStatus(u.Status, u.Reason)
			}
			return true
		}
		if callbridge.ErrorCode(err) == callbridge.ECONFLICT || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(50<<i) * time.Millisecond):
		}
	}
	if u.Status == "" && r.ended {
		return false // late leg facts are best effort
	}
	r.log.Warn("callback abandoned: cannot persist", "error", err)
	r.abandoned = true
	return false
}

// handle applies one message to the worker's knowledge.
func (r *run) handle(ctx context.Context, m msg) {
	switch m.kind {
	case msgCancel:
		if !r.cancelled && !r.ended {
			r.cancelled = true
			r.save(ctx, &callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventCancel, Detail: "hanging up"}}})
		}
	case msgLost:
		r.log.Warn("callback lease lost; another controller drives it")
		r.abandoned = true
	case msgNodeDown:
		r.nodeLost(ctx, "lost connection to "+r.client.Name())
	case msgNodeUp:
		// Always reconcile: the connection may have been lost and back
		// before the watcher noticed, and events may be missing.
		if r.ended {
			return
		}
		if !r.reconcile(ctx, "reconnected to "+r.client.Name()) {
			r.nodeLost(ctx, "cannot list the channels of "+r.client.Name())
			return
		}
		r.nodeDown = false
		if r.grace != nil {
			r.grace.Stop()
		}
	case msgGrace:
		if !r.nodeDown {
			return
		}
		if r.client.State() == esl.StateConnected && r.reconcile(ctx, "connected to "+r.client.Name()+" at the end of the grace period") {
			r.nodeDown = false
			return
		}
		var orphans []string
		for _, l := range []*leg{&r.a, &r.b} {
			if l.live() {
				orphans = append(orphans, l.uuid)
				l.hungup, l.lost = true, true
			}
		}
		r.e.mu.Lock()
		r.e.orphans[r.client.Name()] = append(r.e.orphans[r.client.Name()], orphans...)
		r.e.mu.Unlock()
		if !r.ended {
			r.finish(ctx, callbridge.ReasonNodeUnavailable, "node "+r.client.Name()+" did not come back")
		}
	case msgJob:
		l := r.leg(m.leg)
		var re *esl.ReplyError
		if errors.As(m.err, &re) && !l.hungup && !l.answered {
			r.legDown(ctx, l, re.Cause(), time.Now().UTC(), "originate: "+re.Text)
		}
	case msgEvent:
		r.event(ctx, m.ev)
	}
}

func (r *run) leg(name string) *leg {
	if name == callbridge.LegB {
		return &r.b
	}
	return &r.a
}

// event applies a channel event of one of the legs.
func (r *run) event(ctx context.Context, ev esl.Event) {
	var l *leg
	switch ev.UUID {
	case r.a.uuid:
		l = &r.a
	case r.b.uuid:
		l = &r.b
	default:
		return
	}
	if !l.session {
		l.session = true
		r.e.pacer.onAccepted(time.Now())
	}
	at := ev.Time()
	if at.IsZero() {
		at = ev.Received
	}
	switch ev.Name {
	case esl.ChannelProgress, esl.ChannelProgressMedia:
		if !l.ringing && !l.answered && !l.hungup {
			l.ringing = true
			r.save(ctx, &callbridge.CallbackUpdate{
				Leg:    r.legUpdate(l, func(u *callbridge.LegUpdate) { u.Ringing = at }),
				Events: []callbridge.CallbackEvent{{Type: callbridge.EventLegRinging, Leg: l.name, At: at, Detail: string(ev.Name)}},
			})
		}
	case esl.ChannelAnswer:
		if !l.answered && !l.hungup {
			l.answered = true
			r.save(ctx, &callbridge.CallbackUpdate{
				Leg:    r.legUpdate(l, func(u *callbridge.LegUpdate) { u.Answered = at }),
				Events: []callbridge.CallbackEvent{{Type: callbridge.EventLegAnswered, Leg: l.name, At: at}},
			})
		}
	case esl.ChannelHangup, esl.ChannelHangupComplete:
		if !l.hungup {
			cause := ev.Get("Hangup-Cause")
			if cause == "" {
				cause = ev.Var("hangup_cause")
			}
			r.legDown(ctx, l, cause, at, "")
		}
	case esl.ChannelDestroy:
		// A leg to a bad profile produces only CHANNEL_DESTROY; its cause
		// comes with the originate's -ERR. Any other leg was already down.
	}
	if r.cancelled && l.live() && !l.killSent {
		r.kill(ctx, l)
	}
}

// legDown records a leg's hangup.
func (r *run) legDown(ctx context.Context, l *leg, cause string, at time.Time, detail string) {
	l.hungup, l.cause = true, cause
	if detail == "" {
		detail = cause
	}
	r.save(ctx, &callbridge.CallbackUpdate{
		Leg:    r.legUpdate(l, func(u *callbridge.LegUpdate) { u.Hangup, u.Cause = at, cause }),
		Events: []callbridge.CallbackEvent{{Type: callbridge.EventLegHangup, Leg: l.name, At: at, Detail: detail}},
	})
}

// kill hangs a leg up (uuid_kill), once.
func (r *run) kill(ctx context.Context, l *leg) {
	if !l.live() || l.killSent || r.nodeDown {
		return
	}
	cause := "NORMAL_CLEARING"
	if !l.answered {
		cause = "ORIGINATOR_CANCEL"
	}
	cmd, err := esl.UUIDKill(l.uuid, cause)
	if err != nil {
		return
	}
	if _, err := r.client.API(ctx, cmd); err != nil {
		var re *esl.ReplyError
		if errors.As(err, &re) {
			// No such channel yet (the originate is still being set up):
			// the next event of the leg kills it.
			return
		}
		r.log.Warn("uuid_kill", "uuid", l.uuid, "error", err)
		return
	}
	l.killSent = true
}

// api runs a command, recording a failure in the history.
func (r *run) api(ctx context.Context, what string, cmd esl.Command, err error) error {
	if err == nil {
		_, err = r.client.API(ctx, cmd)
	}
	if err != nil {
		r.save(ctx, &callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventCommandError, Detail: what + ": " + err.Error()}}})
	}
	return err
}

// step advances the callback as far as what is known allows.
func (r *run) step(ctx context.Context) {
	for i := 0; i < 8 && !r.abandoned && !r.ended; i++ {
		before := r.status
		r.advance(ctx)
		if r.status == before {
			return
		}
	}
}

func (r *run) advance(ctx context.Context) {
	if r.nodeDown {
		return
	}
	if r.cancelled {
		r.kill(ctx, &r.a)
		r.kill(ctx, &r.b)
		if !r.a.live() && !r.b.live() || r.status == callbridge.CallbackCallingA && !r.a.originated {
			r.finish(ctx, callbridge.ReasonCancelled, "cancelled during "+string(r.status))
			return
		}
		if r.status != callbridge.CallbackBridged {
			r.finish(ctx, callbridge.ReasonCancelled, "cancelled during "+string(r.status))
		}
		return
	}
	switch r.status {
	case callbridge.CallbackCallingA:
		switch {
		case !r.a.originated:
			r.originateA(ctx)
		case r.a.hungup && !r.a.answered:
			if r.refused(&r.a) && r.retryRefused(ctx, &r.a) {
				return
			}
			reason := callbridge.HangupReason(callbridge.LegA, r.a.cause)
			if r.a.lost {
				reason = callbridge.ReasonNodeUnavailable
			}
			r.failA(ctx, reason)
		case r.a.answered:
			r.capLeg(ctx, &r.a)
			r.save(ctx, &callbridge.CallbackUpdate{Status: callbridge.CallbackAAnswered, Detail: "A answered"})
		}
	case callbridge.CallbackAAnswered:
		if r.a.hungup {
			r.finish(ctx, callbridge.ReasonAHangup, "A hung up before B was called")
			return
		}
		r.originateB(ctx)
	case callbridge.CallbackCallingB:
		switch {
		case r.a.hungup:
			r.kill(ctx, &r.b)
			r.finish(ctx, callbridge.ReasonAHangup, "A hung up while B was called")
		case r.b.hungup && !r.b.answered:
			if r.refused(&r.b) && r.retryRefused(ctx, &r.b) {
				return
			}
			reason := callbridge.HangupReason(callbridge.LegB, r.b.cause)
			if r.b.lost || !r.b.originated {
				reason = callbridge.ReasonNodeUnavailable
			}
			r.failB(ctx, reason)
		case r.b.hungup:
			// B answered and hung up before it could be bridged.
			r.failB(ctx, callbridge.HangupReason(callbridge.LegB, r.b.cause))
		case r.b.answered:
			r.bridge(ctx)
		}
	case callbridge.CallbackBridged:
		if !r.a.hungup && !r.b.hungup {
			return
		}
		first, other := &r.a, &r.b
		if !r.a.hungup {
			first, other = &r.b, &r.a
		}
		r.kill(ctx, other)
		reason, detail := callbridge.ReasonNone, "leg "+first.name+" hung up: "+first.cause
		switch {
		case first.cause == "ALLOTTED_TIMEOUT" || other.cause == "ALLOTTED_TIMEOUT":
			reason = callbridge.ReasonMaxDuration
		case first.lost:
			detail = "leg " + first.name + " ended while untracked"
		case first.cause == "NORMAL_CLEARING" || first.cause == "":
			if c, err := r.e.store.CancelRequested(ctx, r.cb.ID); err == nil && c {
				reason = callbridge.ReasonCancelled
			}
		}
		r.finish(ctx, reason, detail)
	}
}

func (r *run) vars(l *leg) []esl.Var {
	return []esl.Var{
		{Name: callbridge.VarCallbackID, Value: r.cb.ID},
		{Name: callbridge.VarLeg, Value: l.name},
		{Name: callbridge.VarAccount, Value: r.cb.AccountID},
		{Name: callbridge.VarMaxMS, Value: fmt.Sprint(r.legLimit(l).Milliseconds())},
	}
}

// legLimit is the longest leg l may last: max_duration, or its grant when
// that is shorter.
func (r *run) legLimit(l *leg) time.Duration {
	if l.grant > 0 && l.grant < r.maxDuration {
		return l.grant
	}
	return r.maxDuration
}

// authorizeLeg asks the CallAuthorizer for leg l for at most limit,
// choosing the leg's origination uuid now so that its CDR settles the
// reservation.
func (r *run) authorizeLeg(ctx context.Context, l *leg, limit time.Duration) (*callbridge.Grant, error) {
	if l.uuid == "" {
		l.uuid = uuid.NewString()
	}
	g, err := r.e.cfg.CallAuthorizer(limit).AuthorizeCall(ctx, r.cb.AccountID, l.uuid, l.number)
	if err != nil {
		return nil, err
	}
	l.reserved = g.Prepaid
	l.grant = max(time.Duration(g.MaxMS)*time.Millisecond, time.Millisecond)
	return g, nil
}

// authorizeLegs authorises A and B before A is called, halving the
// duration asked for while the balance cannot pay for both legs (or pays
// A for no longer than B may ring). It returns the failure reason when
// the callback may not be placed.
func (r *run) authorizeLegs(ctx context.Context) (callbridge.FailReason, string) {
	ringB := time.Duration(r.cb.RingTimeoutB) * time.Second
	for want := r.maxDuration; ; want = max(want/2, callbridge.MinMaxDuration) {
		ga, err := r.authorizeLeg(ctx, &r.a, want+ringB)
		if err != nil {
			return authFailure(callbridge.LegA, err)
		}
		gb, err := r.authorizeLeg(ctx, &r.b, want)
		if err == nil && ga.Prepaid && r.a.grant <= ringB {
			// A could not even wait for B to answer: not worth a call.
			r.releaseLeg(ctx, &r.b)
			err = callbridge.Errorf(callbridge.ENOFUNDS, "insufficient_funds: the balance pays A for %s, not for B's ring time", r.a.grant)
		}
		if err == nil {
			if ga.Prepaid || gb.Prepaid {
				r.save(ctx, &callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventAuthorized,
					Detail: fmt.Sprintf("prepaid: leg a %s (%d reserved), leg b %s (%d reserved)", r.a.grant, ga.Reserved, r.b.grant, gb.Reserved)}}})
			}
			return callbridge.ReasonNone, ""
		}
		r.releaseLeg(ctx, &r.a)
		// The last try asks for exactly MinMaxDuration, so a balance that
		// pays for it is never refused because halving jumped past it.
		if callbridge.ErrorCode(err) != callbridge.ENOFUNDS || want <= callbridge.MinMaxDuration {
			return authFailure(callbridge.LegB, err)
		}
	}
}

func authFailure(leg string, err error) (callbridge.FailReason, string) {
	reason := callbridge.ReasonInternal
	if callbridge.ErrorCode(err) == callbridge.ENOFUNDS {
		reason = callbridge.ReasonInsufficientFunds
	}
	return reason, "leg " + leg + " not authorised: " + callbridge.ErrorMessage(err)
}

// releaseLeg drops the reservation leg l holds.
func (r *run) releaseLeg(ctx context.Context, l *leg) {
	if !l.reserved {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.e.cfg.CallAuthorizer(0).ReleaseCall(rctx, l.uuid); err != nil {
		r.log.Warn("release reservation", "leg", l.name, "uuid", l.uuid, "error", err)
		return
	}
	l.reserved = false
}

// capLeg has FreeSWITCH hang a prepaid leg up when its grant runs out,
// counted from now (its answer), for a leg whose originate did not carry
// the cap (place puts it there when the grant is known). Whole seconds,
// rounded down, so the leg is not billed past what was reserved for it.
func (r *run) capLeg(ctx context.Context, l *leg) {
	if !l.reserved || l.capSent || !l.live() {
		return
	}
	l.capSent = true
	secs := capSeconds(l.grant)
	cmd, err := esl.SchedHangup(secs, l.uuid, "ALLOTTED_TIMEOUT")
	if r.api(ctx, "sched_hangup", cmd, err) == nil {
		r.save(ctx, &callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventMaxDuration, Leg: l.name,
			Detail: "prepaid cap " + secs.String()}}})
	}
}

// capSeconds is a grant as FreeSWITCH can time it: whole seconds,
// rounded down so that the leg is not billed past its reservation, at
// least one.
func capSeconds(grant time.Duration) time.Duration {
	return max(grant/time.Second, 1) * time.Second
}

// releaseGrants drops the reservations of legs that will produce no
// billable CDR: never placed, or down without being answered (their CDR,
// if any, costs nothing). Answered legs keep theirs until their CDR
// settles it; legs lost with their node keep theirs until it lapses.
func (r *run) releaseGrants(ctx context.Context) {
	if r.e.cfg.CallAuthorizer == nil {
		return
	}
	for _, l := range []*leg{&r.a, &r.b} {
		if l.originated && (!l.hungup || l.answered || l.lost) {
			continue
		}
		r.releaseLeg(ctx, l)
	}
}

// originateA authorises the callback and places leg A.
func (r *run) originateA(ctx context.Context) {
	if r.e.cfg.CallAuthorizer != nil {
		// Both legs before anyone is called: B must not ring A only to
		// find the balance cannot pay for B.
		if reason, detail := r.authorizeLegs(ctx); reason != callbridge.ReasonNone {
			r.finish(ctx, reason, detail)
			return
		}
	} else if az := r.e.cfg.Authorizer; az != nil {
		max, err := az.Authorize(ctx, r.cb.AccountID, r.cb.A, r.cb.B)
		if err != nil {
			reason := callbridge.ReasonInternal
			if callbridge.ErrorCode(err) == callbridge.ENOFUNDS {
				reason = callbridge.ReasonInsufficientFunds
			}
			r.finish(ctx, reason, "not authorised: "+callbridge.ErrorMessage(err))
			return
		}
		if max > 0 && max < r.maxDuration {
			r.maxDuration = max
			r.save(ctx, &callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventAuthorized, Detail: "max duration " + max.String()}}})
		}
	}
	r.place(ctx, &r.a, time.Duration(r.cb.RingTimeoutA)*time.Second, "", false)
}

// place originates one leg with a uuid of ours, recorded before the
// command is sent so a restart can find the leg. again says the leg
// replaces a placement the node refused.
func (r *run) place(ctx context.Context, l *leg, timeout time.Duration, status callbridge.CallbackStatus, again bool) {
	if l.uuid == "" {
		l.uuid = uuid.NewString()
	}
	if l.firstPlaced.IsZero() {
		l.firstPlaced = time.Now()
	}
	r.e.route(l.uuid, r)
	o := esl.Originate{
		UUID:           l.uuid,
		Endpoint:       esl.Gateway(r.e.cfg.Gateway, l.number),
		Vars:           r.vars(l),
		CallerIDNumber: l.callerID,
		Timeout:        timeout,
	}
	events := []callbridge.CallbackEvent{{Type: callbridge.EventLegCreated, Leg: l.name, Detail: l.uuid}}
	if l.reserved && !l.capSent {
		// FreeSWITCH times a prepaid leg's grant from the answer itself:
		// the controller may learn of the answer (and bridge) seconds
		// later under load, and a cap counted from then overruns it.
		o.HangupAfterAnswer, l.capSent = capSeconds(l.grant), true
		events = append(events, callbridge.CallbackEvent{Type: callbridge.EventMaxDuration, Leg: l.name,
			Detail: "prepaid cap " + o.HangupAfterAnswer.String() + " from answer"})
	}
	if !r.save(ctx, &callbridge.CallbackUpdate{
		Status: status, Detail: "calling B",
		Leg:    r.legUpdate(l, func(u *callbridge.LegUpdate) { u.Replaces = again }),
		Events: events,
	}) {
		return
	}
	l.originated = true
	job, err := r.client.Originate(ctx, o)
	if err != nil {
		var re *esl.ReplyError
		switch {
		case errors.As(err, &re):
			r.legDown(ctx, l, re.Cause(), time.Now().UTC(), "originate: "+err.Error())
			r.wakeSelf() // the next step acts on the refusal
		case errors.Is(err, esl.ErrClosed):
			// The connection died around the command: it may have been
			// written and run (FreeSWITCH starts the originate before
			// its reply, which can be lost with the socket). The outcome
			// is unknown; the leg is never originated again under this
			// attempt. Once the node is back, the reconciliation finds
			// the channel (and the leg is followed) or not (the leg is
			// lost); if it stays away, the grace period ends the call.
			r.save(ctx, &callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventCommandError, Leg: l.name,
				Detail: "originate: " + err.Error() + "; outcome unknown until the node is reconciled"}}})
			r.nodeLost(ctx, "connection to "+r.client.Name()+" lost while originating leg "+l.name)
		default:
			l.lost = true
			r.legDown(ctx, l, "NORMAL_TEMPORARY_FAILURE", time.Now().UTC(), "originate: "+err.Error())
		}
		return
	}
	name := l.name
	go func() {
		_, err := job.Wait(ctx)
		if err != nil && ctx.Err() == nil && !errors.Is(err, esl.ErrClosed) {
			r.post(msg{kind: msgJob, leg: name, err: err})
		}
	}()
}

// refusalCauses are the originate causes with which a node refuses a
// session it will not create: mod_sofia answers DESTINATION_OUT_OF_ORDER
// when the core refuses (max-sessions, sessions-per-second, min-idle-cpu);
// the others are congestion.
func refusalCause(cause string) bool {
	switch cause {
	case "DESTINATION_OUT_OF_ORDER", "NORMAL_TEMPORARY_FAILURE", "SWITCH_CONGESTION",
		"NORMAL_CIRCUIT_CONGESTION", "REQUESTED_CHAN_UNAVAIL":
		return true
	}
	return false
}

// refused reports whether the node refused leg l's placement before
// anything rang: the originate failed with a refusal cause and no event
// of the channel ever arrived (no session was created).
func (r *run) refused(l *leg) bool {
	return l.hungup && !l.session && !l.ringing && !l.answered && !l.lost && !r.cancelled && refusalCause(l.cause)
}

// refusalDeadline is when a refused leg stops being placed again: A
// RefusedRetry after the worker took the callback, B once B would have
// stopped ringing (A waits on the line meanwhile).
func (r *run) refusalDeadline(l *leg) time.Time {
	if l == &r.b {
		return l.firstPlaced.Add(time.Duration(r.cb.RingTimeoutB) * time.Second)
	}
	return r.started.Add(r.e.cfg.RefusedRetry)
}

// retryRefused places a refused leg again, once the pacer allows, until
// its deadline; it reports false when the deadline has passed (the leg's
// refusal then fails the callback). Each refusal is in the history; it is
// not an attempt of the account's retry policy.
func (r *run) retryRefused(ctx context.Context, l *leg) bool {
	now := time.Now()
	deadline := r.refusalDeadline(l)
	if l.retryAt.IsZero() {
		l.refusals++
		r.e.refused.Add(1)
		r.e.pacer.onRefused(now)
		detail := fmt.Sprintf("node %s refused leg %s (%s) before it rang, %d time(s)", r.client.Name(), l.name, l.cause, l.refusals)
		if now.After(deadline) {
			r.save(ctx, &callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventRefused, Leg: l.name,
				Detail: detail + "; not placed again: past the deadline " + deadline.UTC().Format(time.RFC3339)}}})
			return false
		}
		l.retryAt = now.Add(max(r.e.pacer.wait(now), refusalBackoff(l.refusals)))
		r.setWaiting(l, true)
		r.save(ctx, &callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventRefused, Leg: l.name,
			Detail: fmt.Sprintf("%s; placing it again in %s", detail, l.retryAt.Sub(now).Round(time.Millisecond))}}})
	}
	if now.After(deadline) {
		r.setWaiting(l, false)
		return false
	}
	if now.Before(l.retryAt) || r.e.pacer.take(now, 1) == 0 {
		if !now.Before(l.retryAt) {
			l.retryAt = now.Add(r.e.pacer.wait(now))
		}
		r.wakeAt(l.retryAt)
		return true
	}
	r.placeAgain(ctx, l)
	return true
}

// refusalBackoff is the least wait before a leg refused n times is placed
// again: 100 ms, doubling, at most 2 s.
func refusalBackoff(n int) time.Duration {
	return min(100*time.Millisecond<<min(max(n-1, 0), 5), 2*time.Second)
}

// setWaiting counts leg l among the refused legs waiting to be placed
// again (or not); the claim loop claims nothing while any waits, so
// those legs come before new callbacks (a waiting B has A on the line).
func (r *run) setWaiting(l *leg, on bool) {
	if l.waiting == on {
		return
	}
	l.waiting = on
	if on {
		r.e.waiting.Add(1)
	} else {
		r.e.waiting.Add(-1)
	}
}

// wakeAt makes the worker take a step at t.
func (r *run) wakeAt(t time.Time) {
	if r.retryTimer != nil {
		r.retryTimer.Stop()
	}
	r.retryTimer = time.AfterFunc(time.Until(t), r.wakeSelf)
}

// placeAgain places a refused leg anew: a new channel uuid (its refused
// one keeps its own CDR), new reservations for a prepaid account, and for
// A a new pool slot, so another node may take it.
func (r *run) placeAgain(ctx context.Context, l *leg) {
	r.setWaiting(l, false)
	r.e.unroute(l.uuid, r)
	r.releaseLeg(ctx, l)
	*l = leg{name: l.name, number: l.number, callerID: l.callerID, firstPlaced: l.firstPlaced, refusals: l.refusals}
	if l == &r.b {
		if r.e.cfg.CallAuthorizer != nil {
			if _, err := r.authorizeLeg(ctx, &r.b, r.maxDuration); err != nil {
				reason, _ := authFailure(callbridge.LegB, err)
				r.failB(ctx, reason)
				return
			}
		}
		r.place(ctx, l, time.Duration(r.cb.RingTimeoutB)*time.Second, "", true)
		return
	}
	if r.release != nil {
		r.release()
		r.release = nil
	}
	if !r.acquire(ctx) {
		return
	}
	if r.e.cfg.CallAuthorizer != nil {
		r.releaseLeg(ctx, &r.b)
		r.b.uuid = ""
		if reason, detail := r.authorizeLegs(ctx); reason != callbridge.ReasonNone {
			r.finish(ctx, reason, detail)
			return
		}
	}
	r.place(ctx, l, time.Duration(r.cb.RingTimeoutA)*time.Second, "", true)
}

// failA ends the attempt on an A failure, or queues the callback again
// under the account's retry policy.
func (r *run) failA(ctx context.Context, reason callbridge.FailReason) {
	if reason.Retries() && r.cb.Attempt <= r.cb.Retry.Attempts {
		runAt := time.Now().Add(r.cb.Retry.Delay)
		r.ended, r.endBy = true, time.Now().Add(r.e.cfg.LegWait)
		r.save(ctx, &callbridge.CallbackUpdate{
			Status: callbridge.CallbackQueued, RunAt: runAt,
			Detail: fmt.Sprintf("retry %d of %d after %s in %s", r.cb.Attempt, r.cb.Retry.Attempts, reason, r.cb.Retry.Delay),
			Events: []callbridge.CallbackEvent{{Type: callbridge.EventRetry, Leg: callbridge.LegA, Detail: string(reason)}},
		})
		r.claimed.Store(false)
		r.log.Info("callback queued again", "reason", reason, "attempt", r.cb.Attempt)
		r.e.Wake()
		return
	}
	r.finish(ctx, reason, "A: "+r.a.cause)
}

// originateB plays the prompt to A and places leg B.
func (r *run) originateB(ctx context.Context) {
	if r.e.cfg.CallAuthorizer != nil && r.b.grant == 0 {
		// Adopted after A was answered elsewhere: B was not authorised
		// by this controller.
		if _, err := r.authorizeLeg(ctx, &r.b, r.maxDuration); err != nil {
			reason, _ := authFailure(callbridge.LegB, err)
			r.failB(ctx, reason)
			return
		}
	}
	if p := r.promptPath(); p != "" {
		cmd, err := esl.UUIDBroadcast(r.a.uuid, p, "aleg")
		if r.api(ctx, "prompt", cmd, err) == nil {
			r.save(ctx, &callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventPrompt, Leg: callbridge.LegA, Detail: r.cb.Prompt}}})
		}
	}
	r.place(ctx, &r.b, time.Duration(r.cb.RingTimeoutB)*time.Second, callbridge.CallbackCallingB, false)
}

func (r *run) promptPath() string {
	if r.cb.Prompt == "" || r.cb.Prompt == callbridge.PromptNone {
		return ""
	}
	return r.e.cfg.Prompts[r.cb.Prompt]
}

// failB plays A the failure prompt, has FreeSWITCH hang A up after it, and
// fails the callback.
func (r *run) failB(ctx context.Context, reason callbridge.FailReason) {
	p, ok := r.e.cfg.FailurePrompts[reason]
	if !ok {
		p = r.e.cfg.FailurePrompts[""]
	}
	played := false
	if p != "" && r.a.live() {
		cmd, err := esl.UUIDBroadcast(r.a.uuid, p, "aleg")
		if r.api(ctx, "failure prompt", cmd, err) == nil {
			hc, err := esl.SchedHangup(r.e.cfg.FailurePromptTime, r.a.uuid, "NORMAL_CLEARING")
			played = r.api(ctx, "sched_hangup", hc, err) == nil
		}
	}
	if !played {
		r.kill(ctx, &r.a)
	}
	r.finish(ctx, reason, "B: "+r.b.cause)
}

// bridge connects A and B, limits the call in FreeSWITCH, and starts the
// recording.
func (r *run) bridge(ctx context.Context) {
	cmd, err := esl.UUIDBridge(r.a.uuid, r.b.uuid)
	if err := r.api(ctx, "uuid_bridge", cmd, err); err != nil {
		var re *esl.ReplyError
		if errors.As(err, &re) && r.bridgeRefused(ctx) {
			return // a leg is down: the next step ends the callback for it
		}
		if errors.Is(err, esl.ErrClosed) {
			// Bridged or not, the reconciliation after the reconnection
			// tells; B still answered then means bridging again.
			r.nodeLost(ctx, "connection to "+r.client.Name()+" lost during uuid_bridge")
			return
		}
		if r.abandoned || r.ended || r.nodeDown {
			return
		}
		r.kill(ctx, &r.a)
		r.kill(ctx, &r.b)
		r.finish(ctx, callbridge.ReasonInternal, "uuid_bridge failed")
		return
	}
	if !r.save(ctx, &callbridge.CallbackUpdate{Status: callbridge.CallbackBridged, Detail: "A and B bridged"}) {
		return
	}
	r.capLeg(ctx, &r.b)
	for _, l := range []*leg{&r.a, &r.b} {
		cmd, err := esl.SchedHangup(r.maxDuration, l.uuid, "ALLOTTED_TIMEOUT")
		r.api(ctx, "sched_hangup", cmd, err)
	}
	r.save(ctx, &callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventMaxDuration, Detail: r.maxDuration.String()}}})
	if r.cb.Record {
		p := path.Join(r.e.cfg.RecordDir, r.cb.ID+".wav")
		cmd, err := esl.UUIDRecord(r.a.uuid, "start", p)
		if r.api(ctx, "uuid_record", cmd, err) == nil {
			r.save(ctx, &callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventRecording, Leg: callbridge.LegA, Detail: p}}})
		}
	}
}

// bridgeWait bounds how long a refused uuid_bridge waits for the hangup
// event of the leg that caused it.
const bridgeWait = 2 * time.Second

// bridgeRefused finds out why FreeSWITCH refused uuid_bridge. Almost
// always a leg has just hung up ("-ERR no such channel") and its hangup
// event is on its way: the worker's messages are applied until a leg is
// down or bridgeWait has passed; a leg the node no longer has by then
// (uuid_exists) is taken as hung up. It reports whether a leg is down (or
// the worker must stop), leaving the step that follows to end the callback
// with that leg's reason.
func (r *run) bridgeRefused(ctx context.Context) bool {
	down := func() bool { return r.a.hungup || r.b.hungup || r.abandoned || r.ended || r.nodeDown }
	t := time.NewTimer(bridgeWait)
	defer t.Stop()
	for !down() {
		select {
		case <-ctx.Done():
			return true
		case <-t.C:
			for _, l := range []*leg{&r.a, &r.b} {
				if exists, known := r.legExists(ctx, l); known && !exists {
					l.lost = true
					r.legDown(ctx, l, "", time.Now().UTC(), "gone when uuid_bridge was refused")
				}
			}
			r.wakeSelf()
			return down()
		case <-r.signal:
		}
		r.mu.Lock()
		mail := r.mail
		r.mail = nil
		r.mu.Unlock()
		for _, m := range mail {
			r.handle(ctx, m)
		}
	}
	r.wakeSelf()
	return true
}

// legExists asks the node whether l's channel exists; known is false
// when the node could not tell.
func (r *run) legExists(ctx context.Context, l *leg) (exists, known bool) {
	if !l.live() {
		return false, false
	}
	cmd, err := esl.UUIDExists(l.uuid)
	if err != nil {
		return false, false
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := r.client.API(cctx, cmd)
	if err != nil {
		return false, false
	}
	return res == "true", true
}

// wakeSelf makes the worker's loop take another step even if no message
// arrives.
func (r *run) wakeSelf() {
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// finish ends the callback: completed when reason is empty, failed
// otherwise. The worker then waits for its legs to report hangup.
func (r *run) finish(ctx context.Context, reason callbridge.FailReason, detail string) {
	if r.ended {
		return
	}
	status := callbridge.CallbackCompleted
	if reason != callbridge.ReasonNone {
		status = callbridge.CallbackFailed
	}
	r.ended, r.endBy = true, time.Now().Add(r.e.cfg.LegWait+r.e.cfg.FailurePromptTime)
	if r.save(ctx, &callbridge.CallbackUpdate{Status: status, Reason: reason, Detail: detail}) {
		r.log.Info("callback ended", "status", status, "reason", reason, "detail", detail)
	}
	r.claimed.Store(false)
}
