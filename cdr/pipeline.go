// Package cdr turns FreeSWITCH hangup events into priced CDRs in
// PostgreSQL, exactly once per channel: the pipeline (events -> records ->
// fsync'ed spool -> store), the pricer, the reconciliation of legs a node
// no longer has, the sweep of overdue legs and the collection of records
// FreeSWITCH kept while no controller listened. It serves no HTTP.
package cdr

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"callbridge"
	"callbridge/esl"
	"callbridge/esl/freeswitch"
)

// Store is what the CDR pipeline needs of the database
// (postgres.CDRStore).
type Store interface {
	// WriteBatch stores CDRs, each channel once ever, and live-channel
	// updates in one transaction and returns how many CDRs were new.
	// EUNAVAILABLE and other errors mean "retry later"; EINVALID means the
	// database refuses a value of the batch.
	WriteBatch(ctx context.Context, cdrs []*callbridge.CDR, live []*callbridge.LiveChannel) (int, error)
	// DeadLetter stores a record that could not be stored.
	DeadLetter(ctx context.Context, d *callbridge.CDRDeadLetter) error
	// LiveChannels returns the legs believed up on a node.
	LiveChannels(ctx context.Context, node string) ([]*callbridge.LiveChannel, error)
	// LiveChannelsByUUID returns those of the channels ids believed up.
	LiveChannelsByUUID(ctx context.Context, ids []string) ([]*callbridge.LiveChannel, error)
	// OverdueChannels returns live legs past their maximum duration plus
	// grace (defaultMax for legs without one), oldest first.
	OverdueChannels(ctx context.Context, now time.Time, defaultMax, grace time.Duration, limit int) ([]*callbridge.LiveChannel, error)
}

// Config configures a Pipeline.
type Config struct {
	// Store writes batches; required.
	Store Store
	// Pricer prices CDRs before they are written; required.
	Pricer *Pricer
	// SpoolDir holds batches not yet in the database; required. One
	// process per directory.
	SpoolDir string
	// BatchSize flushes a batch when it holds this many records (1000).
	BatchSize int
	// FlushInterval flushes a batch at the latest this long after its
	// first record (200 ms).
	FlushInterval time.Duration
	// MaxAttempts is how often a record the database refuses is tried
	// before it is dead-lettered (3).
	MaxAttempts int
	// RetryMin and RetryMax bound the backoff while the database is
	// unavailable (100 ms, 5 s).
	RetryMin, RetryMax time.Duration
	// DrainTimeout bounds how long Run, once its context is done, keeps
	// writing queued batches before leaving them in the spool (5 s when
	// zero; negative leaves them at once).
	DrainTimeout time.Duration
	// MaxBatch caps a batch that grew while the spool was busy (10 ×
	// BatchSize).
	MaxBatch int
	// MaxInMemory is how many queued batches keep their records in memory;
	// older ones are read back from the spool when their turn comes (64).
	MaxInMemory int
	// DefaultMaxDuration closes live legs without a maximum of their own
	// (4 h).
	DefaultMaxDuration time.Duration
	// SweepInterval is how often legs past their maximum are looked for
	// (1 min). Negative: the pipeline does not sweep on its own; a
	// scheduled job calls Sweep instead (serve runs it as the cluster-wide
	// "stale-calls" cron job, under an advisory lock).
	SweepInterval time.Duration
	// SweepGrace is how long past its maximum a leg is left for its own
	// hangup to arrive, and how long a reconciliation waits before closing
	// legs a node no longer has (10 s).
	SweepGrace time.Duration
	// Policies gives each account's missing-hangup policy for the legs
	// the sweep and reconciliations close; nil charges every account by
	// callbridge.HangupEstimate.
	Policies HangupPolicies
	// Logger receives alerts (dead letters, spooling) and warnings.
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// OnAttempt, when set, is told of every outbound leg a route plan's
	// gateway carried (Attempt above 0, Gateway set) as its hangup
	// arrives, before pricing, so the gateway's circuit breaker learns how
	// the carrier did and its metrics count the attempt (serve:
	// app.attemptOutcome, which tells the legs this controller routed by
	// CDR.Router). Every controller's pipeline reads every node, so each
	// is told of every attempt in the cluster once. It runs on the event
	// reader: it must be quick and must not keep c.
	OnAttempt func(c *callbridge.CDR)
}

// HangupPolicies is what the sweep needs to know of billing profiles
// (postgres.BillingStore).
type HangupPolicies interface {
	// MissingHangupPolicy returns how accountID's legs whose hangup never
	// arrives are charged: callbridge.HangupEstimate or
	// callbridge.HangupMaxDuration (also for an unknown account).
	MissingHangupPolicy(ctx context.Context, accountID string) (string, error)
}

// Stats is a snapshot of a pipeline's counters.
type Stats struct {
	// Hangups counts CHANNEL_HANGUP_COMPLETE events received.
	Hangups int64
	// Spooled counts records written to the spool (fsync'ed).
	Spooled int64
	// Inserted counts CDRs that were new in the database; Duplicates those
	// already there.
	Inserted, Duplicates int64
	// DeadLetters counts records dead-lettered (table or file).
	DeadLetters int64
	// Estimated counts CDRs made by the sweep or a reconciliation.
	Estimated int64
	// QueuedBatches is how many spooled batches wait for the database.
	QueuedBatches int
	// Unavailable reports whether the last write failed for want of the
	// database.
	Unavailable bool
	// Overflows counts event subscriptions lost to a full queue.
	Overflows int64
	// Reconciliations counts reconciliations that listed a node's
	// channels and closed the legs it no longer has.
	Reconciliations int64
	// Kept counts records FreeSWITCH kept that were collected into CDRs.
	Kept int64
	// Refused counts legs FreeSWITCH refused at originate.
	Refused int64
}

// Pipeline turns CHANNEL_HANGUP_COMPLETE events into priced CDRs in
// PostgreSQL, exactly once per channel, and loses none it has spooled.
//
// Events flow: one reader per node parses events into records (hangups into
// CDRs; CHANNEL_CREATE and CHANNEL_ANSWER into live-channel updates) → one
// batcher cuts batches by size or FlushInterval → one spooler writes each
// to a new spool file (write, fsync, rename, fsync of the directory)
// before anything else is done with it → one writer prices the batch's
// CDRs and writes it in one transaction, then deletes the file. The spool
// is written before the database is tried, so a record is acknowledged —
// safe from a crash or kill -9 — once its batch file is renamed into
// place, normally FlushInterval plus two fsyncs after its event was read
// (batches grow while a slow fsync runs). Events FreeSWITCH
// delivered that were still in memory at a kill are not redelivered by
// FreeSWITCH; the legs they ended stay in live_channels and are closed,
// flagged estimated, by the reconciliation that follows the next
// connection (see sweep.go).
//
// While the database is unavailable the writer retries the oldest batch
// with backoff and the spool grows; when it returns, batches are written in
// spool order. A batch the database refuses is retried record by record; a
// record refused MaxAttempts times is dead-lettered (table, or a file in
// SpoolDir/dead when the database cannot take it) with an error log and a
// counter. A restart replays the spool first. Duplicates (redelivery,
// replays, several controllers) are ignored by the store's unique key.
type Pipeline struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	in    chan record
	queue *batchQueue

	seq     atomic.Int64
	clients map[string]*esl.Client

	hangups, spooled, inserted, duplicates, dead, estimated, overflows, reconciles, kept, refused atomic.Int64
	unavailable                                                                                   atomic.Bool

	keptDel  chan keptDelete
	refusals chan *destroyEvent

	reconcileC chan reconcileReq
	running    atomic.Bool
}

// record is one unit of a batch, as spooled: exactly one field is set.
type record struct {
	CDR       *callbridge.CDR           `json:"cdr,omitempty"`
	Live      *callbridge.LiveChannel   `json:"live,omitempty"`
	Dead      *callbridge.CDRDeadLetter `json:"dead,omitempty"`
	Destroyed *destroyEvent             `json:"destroyed,omitempty"`
	// Kept is the CDR of a record FreeSWITCH kept (kept.go), before
	// live_channels completes it.
	Kept *callbridge.CDR `json:"kept,omitempty"`

	attempts int
	barrier  *reconcileReq
}

// batch is a spooled batch waiting for the database. recs is nil when the
// batch was evicted from memory and must be read back from path.
type batch struct {
	path    string
	recs    []record
	barrier *reconcileReq
}

// NewPipeline checks cfg, creates the spool directory and returns a
// pipeline; Run starts it.
func NewPipeline(cfg Config) (*Pipeline, error) {
	if cfg.Store == nil || cfg.Pricer == nil {
		return nil, errors.New("cdr: cdr pipeline needs a store and a pricer")
	}
	if cfg.SpoolDir == "" {
		return nil, errors.New("cdr: cdr pipeline needs a spool directory")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.MaxBatch < cfg.BatchSize {
		cfg.MaxBatch = 10 * cfg.BatchSize
	}
	if cfg.MaxInMemory <= 0 {
		cfg.MaxInMemory = 64
	}
	def(&cfg.FlushInterval, 200*time.Millisecond)
	def(&cfg.RetryMin, 100*time.Millisecond)
	def(&cfg.RetryMax, 5*time.Second)
	def(&cfg.DrainTimeout, 5*time.Second)
	def(&cfg.DefaultMaxDuration, 4*time.Hour)
	def(&cfg.SweepInterval, time.Minute)
	def(&cfg.SweepGrace, 10*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	for _, d := range []string{cfg.SpoolDir, filepath.Join(cfg.SpoolDir, "dead")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("cdr: cdr spool: %w", err)
		}
	}
	return &Pipeline{
		cfg: cfg, log: cfg.Logger, now: cfg.Now,
		in:         make(chan record, 8192),
		queue:      newBatchQueue(),
		clients:    map[string]*esl.Client{},
		reconcileC: make(chan reconcileReq, 64),
		keptDel:    make(chan keptDelete, 65536),
		refusals:   make(chan *destroyEvent, 8192),
	}, nil
}

// Stats returns the pipeline's counters.
func (p *Pipeline) Stats() Stats {
	return Stats{
		Hangups: p.hangups.Load(), Spooled: p.spooled.Load(), Inserted: p.inserted.Load(),
		Duplicates: p.duplicates.Load(), DeadLetters: p.dead.Load(), Estimated: p.estimated.Load(),
		QueuedBatches: p.queue.len(), Unavailable: p.unavailable.Load(), Overflows: p.overflows.Load(),
		Reconciliations: p.reconciles.Load(), Kept: p.kept.Load(), Refused: p.refused.Load(),
	}
}

// Run replays the spool, subscribes to the events of every client (whose
// own Run the caller starts) and processes them until ctx is done. Then it
// stops reading, spools the batch being built, keeps writing queued
// batches for up to DrainTimeout and returns; what is left stays in the
// spool for the next start. It returns an error only if the spool cannot
// be read.
func (p *Pipeline) Run(ctx context.Context, clients ...*esl.Client) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("cdr: cdr pipeline already running")
	}
	if err := p.loadSpool(); err != nil {
		return err
	}
	for _, c := range clients {
		p.clients[c.Name()] = c
	}
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()

	var readers sync.WaitGroup
	for _, c := range clients {
		readers.Add(1)
		go func() {
			defer readers.Done()
			p.read(readCtx, c)
		}()
	}
	var aux sync.WaitGroup
	aux.Add(3)
	go func() { defer aux.Done(); p.reconciler(readCtx) }()
	go func() { defer aux.Done(); p.keptDeleter(readCtx) }()
	go func() { defer aux.Done(); p.refuser(readCtx) }()
	if p.cfg.SweepInterval > 0 {
		aux.Add(1)
		go func() { defer aux.Done(); p.sweeper(readCtx) }()
	}

	spoolC := make(chan batch)
	go p.batcher(spoolC)
	batcherDone := make(chan struct{})
	go func() {
		defer close(batcherDone)
		p.spooler(spoolC)
	}()

	// The writer outlives ctx by up to DrainTimeout.
	writeCtx, stopWriting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWriting()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		p.writer(writeCtx)
	}()

	<-ctx.Done()
	readers.Wait()
	aux.Wait()
	close(p.in)
	<-batcherDone
	p.queue.close()
	if p.cfg.DrainTimeout < 0 {
		stopWriting()
	} else {
		t := time.AfterFunc(p.cfg.DrainTimeout, stopWriting)
		defer t.Stop()
	}
	<-writerDone
	if n := p.queue.len(); n > 0 {
		p.log.Warn("cdr pipeline stopped with batches in the spool", "batches", n, "dir", p.cfg.SpoolDir)
	}
	return nil
}

// read consumes one node's events until ctx is done, resubscribing after
// an overflow (and reconciling, since events were lost).
func (p *Pipeline) read(ctx context.Context, c *esl.Client) {
	for ctx.Err() == nil {
		sub := c.Subscribe(0)
		if c.State() == esl.StateConnected {
			p.requestReconcile(c.Name())
		}
		for {
			ev, err := sub.Next(ctx)
			if err != nil {
				if ctx.Err() != nil && sub.Err() == nil {
					p.drain(ctx, sub)
				}
				sub.Close()
				if errors.Is(err, esl.ErrOverflow) {
					p.overflows.Add(1)
					p.log.Error("ALERT: cdr event subscription overflowed; events lost, reconciling", "node", c.Name())
				}
				if errors.Is(err, esl.ErrClosed) && ctx.Err() == nil {
					// The client stopped: nothing more will come.
					<-ctx.Done()
				}
				break
			}
			p.handle(ctx, ev)
		}
	}
}

// drainIdle is how long the pipeline, stopping, waits for one more event
// before it takes its subscription as drained; drainFor bounds the drain.
const (
	drainIdle = 50 * time.Millisecond
	drainFor  = 2 * time.Second
)

// drain handles the events still coming on sub when reading stops. The
// controller's drain ends when the last callback run ends, on its leg's
// CHANNEL_HANGUP; the CHANNEL_HANGUP_COMPLETE FreeSWITCH sends right after
// may still be queued or on the wire, and its CDR belongs to this run,
// not to the next start's reconciliation. The records still reach p.in:
// it is closed only after every reader has returned.
func (p *Pipeline) drain(ctx context.Context, sub *esl.Subscription) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainFor)
	defer cancel()
	idle := time.NewTimer(drainIdle)
	defer idle.Stop()
	for {
		select {
		case ev, ok := <-sub.C():
			if !ok {
				return
			}
			p.handle(dctx, ev)
			idle.Reset(drainIdle)
		case <-idle.C:
			if sub.Len() == 0 {
				return
			}
			idle.Reset(drainIdle)
		case <-dctx.Done():
			return
		}
	}
}

// handle turns one event into records.
func (p *Pipeline) handle(ctx context.Context, ev freeswitch.Event) {
	var r record
	switch ev.Name {
	case freeswitch.ChannelHangupComplete:
		p.hangups.Add(1)
		c, err := parseHangup(ev)
		if err != nil {
			p.log.Error("ALERT: unparsable hangup event dead-lettered", "node", ev.Node, "uuid", ev.UUID, "error", err)
			payload, _ := json.Marshal(ev.Headers())
			r.Dead = &callbridge.CDRDeadLetter{UUID: sanitize(ev.UUID), Node: ev.Node, Reason: err.Error(), Attempts: 1, Payload: payload}
		} else {
			r.CDR = c
			if c.Attempt > 0 && c.Gateway != "" && p.cfg.OnAttempt != nil {
				p.cfg.OnAttempt(c)
			}
		}
	case freeswitch.ChannelCreate, freeswitch.ChannelAnswer:
		l, err := parseLive(ev)
		if err != nil {
			return
		}
		r.Live = l
	case freeswitch.ChannelDestroy:
		d, err := parseDestroy(ev)
		if err != nil {
			return
		}
		if d.Refused {
			select {
			case p.refusals <- d:
			case <-ctx.Done():
			}
			return
		}
		r.Destroyed = d
	case freeswitch.SocketConnected:
		p.requestReconcile(ev.Node)
		return
	case freeswitch.BackgroundJob:
		if d := parseRefusal(ev); d != nil {
			select {
			case p.refusals <- d:
			case <-ctx.Done():
			}
		}
		return
	default:
		return
	}
	select {
	case p.in <- r:
	case <-ctx.Done():
	}
}

// Add queues a CDR made outside the event stream (by the sweep) for
// pricing and writing; it goes through the spool like the others.
func (p *Pipeline) add(ctx context.Context, r record) bool {
	select {
	case p.in <- r:
		return true
	case <-ctx.Done():
		return false
	}
}

// batcher cuts batches and hands them to the spooler, until p.in is
// closed. A batch is due when it holds BatchSize records or FlushInterval
// after its first; while the spooler is busy (an fsync can take hundreds
// of milliseconds) the due batch keeps growing, up to MaxBatch records, so
// a slow disk makes batches larger instead of the pipeline slower.
func (p *Pipeline) batcher(spoolC chan<- batch) {
	defer close(spoolC)
	var cur []record
	due := false
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var out chan<- batch
		if due && len(cur) > 0 {
			out = spoolC
		}
		in := p.in
		if len(cur) >= p.cfg.MaxBatch {
			in = nil // back-pressure: the reader waits, events queue in the client
		}
		select {
		case r, ok := <-in:
			if !ok {
				if len(cur) > 0 {
					spoolC <- batch{recs: cur}
				}
				return
			}
			if r.barrier != nil {
				if len(cur) > 0 {
					spoolC <- batch{recs: cur}
				}
				spoolC <- batch{barrier: r.barrier}
				cur, due = nil, false
				timer.Stop()
				continue
			}
			cur = append(cur, r)
			if len(cur) == 1 {
				timer.Reset(p.cfg.FlushInterval)
			}
			if len(cur) >= p.cfg.BatchSize {
				due = true
			}
		case <-timer.C:
			due = true
		case out <- batch{recs: cur}:
			cur, due = nil, false
			timer.Stop()
		}
	}
}

// spooler writes the batches it receives to the spool, in order, and
// queues them for the writer, until spoolC is closed.
func (p *Pipeline) spooler(spoolC <-chan batch) {
	for b := range spoolC {
		if b.barrier != nil {
			p.queue.push(&b)
			continue
		}
		p.spool(b.recs)
	}
}

// spool writes recs to a new spool file and queues the batch. If the file
// cannot be written the batch is queued from memory only, with an alert:
// it is then not safe from a crash.
func (p *Pipeline) spool(recs []record) {
	name := fmt.Sprintf("%019d-%09d.cdrs", p.now().UnixNano(), p.seq.Add(1))
	path := filepath.Join(p.cfg.SpoolDir, name)
	if err := writeSpoolFile(path, recs); err != nil {
		p.log.Error("ALERT: cdr spool write failed; batch held in memory only", "error", err, "records", len(recs))
		path = ""
	} else {
		p.spooled.Add(int64(len(recs)))
	}
	b := &batch{path: path, recs: recs}
	if path != "" && p.queue.len() >= p.cfg.MaxInMemory {
		b.recs = nil
	}
	p.queue.push(b)
}

// writeSpoolFile writes recs as JSON lines to a temporary file, fsyncs
// it, renames it to path and fsyncs the directory, so path either does not
// exist or holds the whole batch.
func writeSpoolFile(path string, recs []record) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "batch-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	w := bufio.NewWriterSize(f, 1<<16)
	enc := json.NewEncoder(w)
	for i := range recs {
		if err := enc.Encode(&recs[i]); err != nil {
			return fail(err)
		}
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func readSpoolFile(path string) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []record
	dec := json.NewDecoder(bufio.NewReaderSize(f, 1<<16))
	for {
		var r record
		if err := dec.Decode(&r); err != nil {
			if errors.Is(err, io.EOF) {
				return recs, nil
			}
			return nil, fmt.Errorf("cdr: spool file %s: %w", filepath.Base(path), err)
		}
		if n := btoi(r.CDR != nil) + btoi(r.Live != nil) + btoi(r.Dead != nil) + btoi(r.Destroyed != nil) + btoi(r.Kept != nil); n != 1 {
			return nil, fmt.Errorf("cdr: spool file %s: record %d is not one cdr, live, dead, destroyed or kept record", filepath.Base(path), len(recs)+1)
		}
		recs = append(recs, r)
	}
}

// loadSpool queues the batches a previous run left, oldest first. Files
// that cannot be read are renamed *.bad and reported, never deleted.
func (p *Pipeline) loadSpool() error {
	entries, err := os.ReadDir(p.cfg.SpoolDir)
	if err != nil {
		return fmt.Errorf("cdr: cdr spool: %w", err)
	}
	var names []string
	for _, e := range entries {
		switch {
		case e.IsDir():
		case strings.HasSuffix(e.Name(), ".tmp"):
			// A batch whose write never completed was never acknowledged.
			os.Remove(filepath.Join(p.cfg.SpoolDir, e.Name()))
		case strings.HasSuffix(e.Name(), ".cdrs"):
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		p.queue.push(&batch{path: filepath.Join(p.cfg.SpoolDir, n)})
	}
	if len(names) > 0 {
		p.log.Info("replaying cdr spool", "batches", len(names), "dir", p.cfg.SpoolDir)
	}
	return nil
}

// writer writes queued batches in order until the queue is closed and
// empty, or ctx is done.
func (p *Pipeline) writer(ctx context.Context) {
	for {
		b, ok := p.queue.peek(ctx)
		if !ok {
			return
		}
		if b.barrier != nil {
			close(b.barrier.ready)
			p.queue.pop(1)
			continue
		}
		if b.recs == nil && b.path != "" {
			recs, err := readSpoolFile(b.path)
			if err != nil {
				p.log.Error("ALERT: unreadable cdr spool file set aside", "file", b.path, "error", err)
				os.Rename(b.path, b.path+".bad")
				p.queue.pop(1)
				continue
			}
			b.recs = recs
		}
		// While the database is slower than the events, batches queue up:
		// write the queued ones in memory together, one commit for all.
		group := p.queue.group(b, p.cfg.MaxBatch)
		recs := b.recs
		if len(group) > 1 {
			recs = nil
			for _, g := range group {
				recs = append(recs, g.recs...)
			}
		}
		if !p.writeBatch(ctx, recs) {
			return
		}
		p.forgetKept(recs)
		for _, g := range group {
			if g.path == "" {
				continue
			}
			if err := os.Remove(g.path); err != nil {
				p.log.Warn("cdr spool file not removed", "file", g.path, "error", err)
			}
		}
		p.queue.pop(len(group))
	}
}

// writeBatch writes recs, retrying while the database is unavailable and
// falling back to one record at a time when it refuses the batch. It
// returns false if ctx ended first.
func (p *Pipeline) writeBatch(ctx context.Context, recs []record) bool {
	backoff := p.cfg.RetryMin
	for {
		err := p.tryWrite(ctx, recs)
		if err == nil {
			p.available()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if callbridge.ErrorCode(err) == callbridge.EINVALID {
			return p.writeEach(ctx, recs)
		}
		p.unavailableFor(err)
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = min(backoff*2, p.cfg.RetryMax)
	}
}

// writeEach writes records one by one; a record refused MaxAttempts times
// is dead-lettered.
func (p *Pipeline) writeEach(ctx context.Context, recs []record) bool {
	for i := range recs {
		r := &recs[i]
		backoff := p.cfg.RetryMin
		for {
			err := p.tryWrite(ctx, recs[i:i+1])
			if err == nil {
				p.available()
				break
			}
			if ctx.Err() != nil {
				return false
			}
			if callbridge.ErrorCode(err) != callbridge.EINVALID {
				p.unavailableFor(err)
				if !sleep(ctx, backoff) {
					return false
				}
				backoff = min(backoff*2, p.cfg.RetryMax)
				continue
			}
			r.attempts++
			if r.attempts >= p.cfg.MaxAttempts {
				if !p.deadLetter(ctx, r, err) {
					return false
				}
				break
			}
			if !sleep(ctx, p.cfg.RetryMin) {
				return false
			}
		}
	}
	return true
}

// tryWrite prices the CDRs of recs and writes them with the live updates
// in one transaction, then stores the dead letters among recs.
func (p *Pipeline) tryWrite(ctx context.Context, recs []record) error {
	var cdrs []*callbridge.CDR
	var live []*callbridge.LiveChannel
	var dead []*callbridge.CDRDeadLetter
	var destroyed []*destroyEvent
	var kept []*callbridge.CDR
	for i := range recs {
		switch r := &recs[i]; {
		case r.CDR != nil:
			c := *r.CDR
			if err := p.cfg.Pricer.Price(ctx, &c); err != nil {
				return err
			}
			cdrs = append(cdrs, &c)
		case r.Live != nil:
			live = append(live, r.Live)
		case r.Dead != nil:
			dead = append(dead, r.Dead)
		case r.Destroyed != nil:
			destroyed = append(destroyed, r.Destroyed)
		case r.Kept != nil:
			c := *r.Kept
			kept = append(kept, &c)
		}
	}
	if len(kept) > 0 {
		if err := p.completeKept(ctx, kept); err != nil {
			return err
		}
		for _, c := range kept {
			if err := p.cfg.Pricer.Price(ctx, c); err != nil {
				return err
			}
		}
		cdrs = append(cdrs, kept...)
	}
	closed, err := p.closeDestroyed(ctx, destroyed, cdrs, live)
	if err != nil {
		return err
	}
	cdrs = append(cdrs, closed...)
	n, err := p.cfg.Store.WriteBatch(ctx, cdrs, live)
	if err != nil {
		return err
	}
	for _, d := range dead {
		if err := p.cfg.Store.DeadLetter(ctx, d); err != nil {
			return err
		}
	}
	p.dead.Add(int64(len(dead)))
	p.inserted.Add(int64(n))
	p.duplicates.Add(int64(len(cdrs) - n))
	return nil
}

// deadLetter stores r as a dead letter in the database, or in a file of
// SpoolDir/dead if that fails too. It returns false if ctx ended first.
func (p *Pipeline) deadLetter(ctx context.Context, r *record, cause error) bool {
	payload, _ := json.Marshal(r)
	d := &callbridge.CDRDeadLetter{Reason: cause.Error(), Attempts: r.attempts, Payload: payload}
	switch {
	case r.CDR != nil:
		d.UUID, d.Node = r.CDR.UUID, r.CDR.Node
	case r.Live != nil:
		d.UUID, d.Node = r.Live.UUID, r.Live.Node
	case r.Dead != nil:
		d.UUID, d.Node = r.Dead.UUID, r.Dead.Node
	case r.Kept != nil:
		d.UUID, d.Node = r.Kept.UUID, r.Kept.Node
	}
	p.dead.Add(1)
	p.log.Error("ALERT: cdr record dead-lettered", "uuid", d.UUID, "node", d.Node, "attempts", d.Attempts, "error", cause)
	if err := p.cfg.Store.DeadLetter(ctx, d); err == nil {
		return true
	} else if ctx.Err() != nil {
		return false
	} else {
		p.log.Error("ALERT: dead letter written to a file: the database refused it", "uuid", d.UUID, "error", err)
	}
	body, _ := json.Marshal(d)
	path := filepath.Join(p.cfg.SpoolDir, "dead", fmt.Sprintf("%019d-%s.json", p.now().UnixNano(), fileSafe(d.UUID)))
	if err := writeFileSync(path, body); err != nil {
		p.log.Error("ALERT: dead letter file not written", "uuid", d.UUID, "error", err)
		return false
	}
	return true
}

func writeFileSync(path string, body []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(body); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, s[:min(len(s), 64)])
}

func (p *Pipeline) available() {
	if p.unavailable.Swap(false) {
		p.log.Info("cdr database available again; replaying the spool", "batches", p.queue.len())
	}
}

func (p *Pipeline) unavailableFor(err error) {
	if !p.unavailable.Swap(true) {
		p.log.Error("ALERT: cdr database unavailable; spooling batches to disk", "error", err, "dir", p.cfg.SpoolDir)
	}
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

// batchQueue is the ordered list of batches between the batcher and the
// writer. It is unbounded: the batches are on disk, and all but the most
// recent MaxInMemory are only names.
type batchQueue struct {
	mu     sync.Mutex
	items  []*batch
	closed bool
	signal chan struct{}
}

func newBatchQueue() *batchQueue { return &batchQueue{signal: make(chan struct{}, 1)} }

func (q *batchQueue) push(b *batch) {
	q.mu.Lock()
	q.items = append(q.items, b)
	q.mu.Unlock()
	q.wake()
}

func (q *batchQueue) wake() {
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *batchQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.wake()
}

func (q *batchQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// peek returns the oldest batch without removing it, waiting for one; it
// returns false when the queue is closed and empty or ctx is done.
func (q *batchQueue) peek(ctx context.Context) (*batch, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			b := q.items[0]
			q.mu.Unlock()
			return b, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		select {
		case <-q.signal:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// group returns first, the oldest batch, followed by the batches queued
// right after it that are in memory, up to max records in all.
func (q *batchQueue) group(first *batch, max int) []*batch {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := []*batch{first}
	n := len(first.recs)
	for _, b := range q.items[1:] {
		if b.barrier != nil || b.recs == nil || n+len(b.recs) > max {
			break
		}
		out = append(out, b)
		n += len(b.recs)
	}
	return out
}

// pop removes the n oldest batches.
func (q *batchQueue) pop(n int) {
	q.mu.Lock()
	for i := range n {
		q.items[i] = nil
	}
	q.items = q.items[n:]
	q.mu.Unlock()
}

// parseHangup reads a CHANNEL_HANGUP_COMPLETE event into an unpriced CDR.
// Times come from the channel's start/answer/end_uepoch, durations from
// mduration and billmsec (never the whole-second billsec). Only a missing
// or malformed Unique-ID is an error; every other field degrades to a
// default, so a CDR is always made for a real channel.
func parseHangup(ev freeswitch.Event) (*callbridge.CDR, error) {
	id := strings.ToLower(ev.Get("Unique-ID"))
	if !callbridge.IsUUID(id) {
		return nil, errors.New("cdr: hangup event without a valid Unique-ID")
	}
	c := &callbridge.CDR{UUID: id, Node: nodeName(ev)}
	fillParties(ev, &c.Leg, &c.AccountID, &c.CallbackID, &c.BindingID, &c.OtherUUID, &c.Direction,
		&c.Caller, &c.Callee, &c.Presented, &c.Gateway)

	end := firstTime(ev.Var("end_uepoch"), ev.Get("Caller-Channel-Hangup-Time"))
	if end.IsZero() {
		end = ev.Time()
	}
	if end.IsZero() {
		end = ev.Received
	}
	start := firstTime(ev.Var("start_uepoch"), ev.Get("Caller-Channel-Created-Time"))
	if start.IsZero() || start.After(end) {
		start = end
	}
	answer := firstTime(ev.Var("answer_uepoch"), ev.Get("Caller-Channel-Answered-Time"))
	if !answer.IsZero() && (answer.Before(start) || answer.After(end)) {
		answer = start
	}
	c.StartAt, c.AnswerAt, c.EndAt = start.UTC(), answer.UTC(), end.UTC()
	if answer.IsZero() {
		c.AnswerAt = time.Time{}
	}
	c.DurationMS = msVar(ev, "mduration", end.Sub(start))
	if c.Answered() {
		c.BillMS = msVar(ev, "billmsec", end.Sub(answer))
	}
	c.HangupCause = sanitize(firstNonEmpty(ev.Get("Hangup-Cause"), ev.Var("hangup_cause"), "NONE"))
	if q, err := strconv.Atoi(ev.Var("hangup_cause_q850")); err == nil && q >= 0 && q < 1000 {
		c.Q850 = q
	}
	c.Disposition = callbridge.Disposition(c.HangupCause, c.Answered())
	if m, err := strconv.ParseInt(ev.Var(callbridge.VarMaxMS), 10, 64); err == nil && m > 0 {
		c.MaxMS = m
	}
	for _, name := range []string{"progressmsec", "progress_mediamsec", "answermsec"} {
		if v, err := strconv.ParseInt(ev.Var(name), 10, 64); err == nil && v > 0 && (c.PostDialMS == 0 || v < c.PostDialMS) {
			c.PostDialMS = v
		}
	}
	c.Attempt = attemptVar(ev.Var(callbridge.VarAttempt))
	if c.Gateway == "" && c.Attempt > 0 && callbridge.ValidateGateway(ev.Var(callbridge.VarGateway)) == nil {
		// A leg that never reached sofia has no sip_gateway_name; the
		// attempt's own variable still names the gateway it was for.
		c.Gateway = ev.Var(callbridge.VarGateway)
	}
	if r := ev.Var(callbridge.VarRouter); c.Attempt > 0 && callbridge.ValidateRouter(r) == nil {
		c.Router = r
	}
	if s, err := strconv.Atoi(ev.Var("sip_term_status")); err == nil && s >= 100 && s < 700 {
		c.SIPStatus = s
	}
	return c, nil
}

// attemptVar reads VarAttempt: 1 to 100, else 0.
func attemptVar(s string) int {
	if n, err := strconv.Atoi(s); err == nil && n >= 1 && n <= 100 {
		return n
	}
	return 0
}

// parseLive reads a CHANNEL_CREATE or CHANNEL_ANSWER event into a live
// channel update.
func parseLive(ev freeswitch.Event) (*callbridge.LiveChannel, error) {
	id := strings.ToLower(ev.Get("Unique-ID"))
	if !callbridge.IsUUID(id) {
		return nil, errors.New("cdr: channel event without a valid Unique-ID")
	}
	l := &callbridge.LiveChannel{UUID: id, Node: nodeName(ev), SeenAt: ev.Received.UTC()}
	fillParties(ev, &l.Leg, &l.AccountID, &l.CallbackID, &l.BindingID, &l.OtherUUID, &l.Direction,
		&l.Caller, &l.Callee, &l.Presented, &l.Gateway)
	l.StartAt = firstTime(ev.Get("Caller-Channel-Created-Time"), ev.Var("start_uepoch"))
	if l.StartAt.IsZero() {
		l.StartAt = ev.Time()
	}
	if l.StartAt.IsZero() {
		l.StartAt = ev.Received.UTC()
	}
	if ev.Name == freeswitch.ChannelAnswer {
		l.AnswerAt = firstTime(ev.Get("Caller-Channel-Answered-Time"), ev.Var("answer_uepoch"))
		if l.AnswerAt.IsZero() {
			l.AnswerAt = ev.Time()
		}
	}
	if l.SeenAt.IsZero() {
		l.SeenAt = l.StartAt
	}
	if m, err := strconv.ParseInt(ev.Var(callbridge.VarMaxMS), 10, 64); err == nil && m > 0 {
		l.MaxMS = m
	}
	return l, nil
}

// fillParties reads the attribution and the numbers of a channel event.
func fillParties(ev freeswitch.Event, leg, account, callback, binding, other, direction, caller, callee, presented, gateway *string) {
	*leg = callbridge.LegPlain
	switch v := ev.Var(callbridge.VarLeg); v {
	case callbridge.LegCallbackA, callbridge.LegCallbackB, callbridge.LegInbound, callbridge.LegOutbound:
		*leg = v
	}
	*account = uuidOrEmpty(ev.Var(callbridge.VarAccount))
	*callback = uuidOrEmpty(ev.Var(callbridge.VarCallbackID))
	*binding = uuidOrEmpty(ev.Var(callbridge.VarBindingID))
	for _, v := range []string{ev.Get("Other-Leg-Unique-ID"), ev.Var("bridge_uuid"), ev.Var("last_bridge_to"),
		ev.Var("originator"), ev.Var("signal_bond")} {
		if u := uuidOrEmpty(v); u != "" {
			*other = u
			break
		}
	}
	*direction = sanitize(firstNonEmpty(ev.Get("Call-Direction"), ev.Var("direction")))
	// FreeSWITCH flips the caller-id fields of an outbound leg (Caller-
	// Caller-ID-Number becomes the callee); the Orig- field keeps the
	// calling number on both directions.
	*caller = sanitize(firstNonEmpty(ev.Get("Caller-Orig-Caller-ID-Number"), ev.Get("Caller-Caller-ID-Number"), ev.Get("Caller-ANI")))
	*callee = sanitize(firstNonEmpty(ev.Get("Caller-Destination-Number"), ev.Var("destination_number"), ev.Var("sip_to_user")))
	*presented = sanitize(firstNonEmpty(ev.Var("effective_caller_id_number"), ev.Var("origination_caller_id_number"), *caller))
	*gateway = sanitize(ev.Var("sip_gateway_name"))
}

func nodeName(ev freeswitch.Event) string {
	return sanitize(firstNonEmpty(ev.Node, ev.Get("FreeSWITCH-Switchname"), ev.Get("FreeSWITCH-Hostname")))
}

// firstTime returns the first non-zero microsecond epoch among vs.
func firstTime(vs ...string) time.Time {
	for _, v := range vs {
		usTime, err := strconv.ParseInt(v, 10, 64)
		if err == nil && usTime > 0 && usTime < 1<<53 {
			return time.UnixMicro(usTime).UTC()
		}
	}
	return time.Time{}
}

// msVar reads a millisecond channel variable, or falls back to d.
func msVar(ev freeswitch.Event, name string, d time.Duration) int64 {
	if v, err := strconv.ParseInt(ev.Var(name), 10, 64); err == nil && v >= 0 {
		return v
	}
	return max(d.Milliseconds(), 0)
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// sanitize keeps at most 128 bytes of printable ASCII, so a value from the
// wire can be stored, logged and exported as CSV without surprises.
func sanitize(s string) string {
	ok := len(s) <= 128
	for i := 0; ok && i < len(s); i++ {
		ok = s[i] >= 0x20 && s[i] < 0x7f
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 128 {
			break
		}
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}

func uuidOrEmpty(s string) string {
	s = strings.ToLower(s)
	if callbridge.IsUUID(s) {
		return s
	}
	return ""
}
