// Package billing runs callbridge's scheduled jobs and turns rated CDRs
// into money: daily rollups, monthly invoices with credit and debit notes,
// usage and invoice reports (JSON, CSV, printable HTML), and the prepaid
// call authorisation that caps calls at what the balance can pay.
//
// Jobs run on robfig/cron schedules in a configured zone. Every run goes
// through a RunStore that holds a PostgreSQL advisory lock for the job and
// records the run, so one process in a cluster runs each slot; slots missed
// while no process was up are caught up on start. Package billing does not
// speak SQL itself (postgres does), does not price calls (rating does) and
// does not place or cap calls (the controller does, with the Grant it is
// given).
package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"callbridge"

	"github.com/robfig/cron/v3"
)

// RunStore runs jobs exclusively across processes and records the runs.
type RunStore interface {
	// RunJob runs fn for job and slot unless another process holds the
	// job (nil run, ran false) or, without force, the slot already
	// succeeded (that run, ran false). fn's error is recorded and
	// returned.
	RunJob(ctx context.Context, job string, slot time.Time, force bool, fn func(context.Context) (int64, error)) (run *callbridge.JobRun, ran bool, err error)
	// LastRun returns the latest slot job succeeded for.
	LastRun(ctx context.Context, job string) (slot time.Time, ok bool, err error)
}

// Job is a scheduled piece of work.
type Job struct {
	// Name identifies the job in locks and run records: [a-z0-9_-].
	Name string
	// Spec is a cron expression (five fields, or a descriptor such as
	// "@every 1m") read in the scheduler's zone; empty or "off" disables
	// the job.
	Spec string
	// CatchUp makes Start run, in order, the slots missed since the last
	// successful one (at most MaxCatchUp of them; the latest slot only if
	// the job never succeeded).
	CatchUp bool
	// Run does the work for slot and returns how many rows it touched.
	// It must be idempotent: a slot may be run again by hand.
	Run func(ctx context.Context, slot time.Time) (int64, error)
}

// Outcomes of a run as OnRun reports them.
const (
	JobOK        = "ok"
	JobFailed    = "failed"
	JobCancelled = "cancelled"
	JobSkipped   = "skipped"
)

// MaxCatchUp bounds how many missed slots of one job Start runs.
const MaxCatchUp = 62

// Scheduler runs Jobs on their schedules.
type Scheduler struct {
	// OnRun, when set before Start, is told of every run this process
	// attempts: the job, its outcome (JobOK, JobFailed, JobCancelled, or
	// JobSkipped when another process holds the job or the slot is done)
	// and how long it took.
	OnRun func(job, outcome string, took time.Duration)

	runs RunStore
	loc  *time.Location
	log  *slog.Logger
	jobs map[string]*entry
	cron *cron.Cron

	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type entry struct {
	job   Job
	sched cron.Schedule // nil when disabled
	mu    sync.Mutex    // one run of a job at a time in this process
}

// NewScheduler checks every job's schedule and returns a scheduler that
// cronParser reads the five-field cron expressions (and descriptors such
// as @daily) of job schedules.
func cronParser() cron.Parser {
	return cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
}

// CheckSchedule reports whether spec is a schedule NewScheduler accepts:
// a cron expression, "off", or "" (the default); the error says why not,
// for a configuration check made before anything starts.
func CheckSchedule(spec string) error {
	if spec == "" || spec == "off" {
		return nil
	}
	if _, err := cronParser().Parse(spec); err != nil {
		return fmt.Errorf("bad cron expression %q (want minute hour day-of-month month day-of-week, or off): %v", spec, err)
	}
	return nil
}

// reads them in loc (nil: UTC). EINVALID for a bad name or spec.
func NewScheduler(runs RunStore, loc *time.Location, log *slog.Logger, jobs []Job) (*Scheduler, error) {
	if loc == nil {
		loc = time.UTC
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Scheduler{runs: runs, loc: loc, log: log, jobs: map[string]*entry{}}
	for _, j := range jobs {
		if !validName(j.Name) {
			return nil, callbridge.FieldError("job", "job name %q must be 1 to 64 of [a-z0-9_-]", j.Name)
		}
		if _, dup := s.jobs[j.Name]; dup {
			return nil, callbridge.FieldError("job", "job %q is defined twice", j.Name)
		}
		if j.Run == nil {
			return nil, callbridge.FieldError("job", "job %q has no Run", j.Name)
		}
		e := &entry{job: j}
		if j.Spec != "" && j.Spec != "off" {
			sched, err := cronParser().Parse(j.Spec)
			if err != nil {
				return nil, callbridge.FieldError("schedule", "job %s: bad cron expression %q: %v", j.Name, j.Spec, err)
			}
			e.sched = sched
		}
		s.jobs[j.Name] = e
	}
	return s, nil
}

func validName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Start catches up missed slots of CatchUp jobs in the background, then
// runs every enabled job on its schedule until ctx is cancelled or Stop
// is called.
func (s *Scheduler) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cron != nil {
		return
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.cron = cron.New(cron.WithLocation(s.loc), cron.WithParser(cron.NewParser(cron.Minute|cron.Hour|cron.Dom|cron.Month|cron.Dow|cron.Descriptor)))
	for _, e := range s.jobs {
		if e.sched == nil {
			continue
		}
		s.cron.Schedule(e.sched, cron.FuncJob(func() {
			now := time.Now().In(s.loc)
			s.wg.Add(1)
			defer s.wg.Done()
			if s.ctx.Err() != nil {
				return
			}
			s.runSlot(s.ctx, e, PrevSlot(e.sched, now), false)
		}))
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.CatchUp(s.ctx, time.Now())
	}()
	s.cron.Start()
}

// Stop stops scheduling and waits for running jobs to return (they see
// their context cancelled).
func (s *Scheduler) Stop() {
	s.mu.Lock()
	c, cancel := s.cron, s.cancel
	s.mu.Unlock()
	if c == nil {
		return
	}
	<-c.Stop().Done()
	cancel()
	s.wg.Wait()
}

// CatchUp runs, for every enabled CatchUp job, the slots up to now that
// have no successful run, oldest first. It returns how many runs it made.
func (s *Scheduler) CatchUp(ctx context.Context, now time.Time) int {
	n := 0
	for _, e := range s.jobs {
		if e.sched == nil || !e.job.CatchUp {
			continue
		}
		last, ok, err := s.runs.LastRun(ctx, e.job.Name)
		if err != nil {
			s.log.Error("job catch-up", "job", e.job.Name, "error", err)
			continue
		}
		var slots []time.Time
		if !ok {
			if p := PrevSlot(e.sched, now.In(s.loc)); !p.IsZero() {
				slots = append(slots, p)
			}
		} else {
			for t := e.sched.Next(last.In(s.loc)); !t.After(now); t = e.sched.Next(t) {
				slots = append(slots, t)
			}
			if len(slots) > MaxCatchUp {
				s.log.Warn("job catch-up: too many missed slots, running the latest", "job", e.job.Name, "missed", len(slots), "running", MaxCatchUp)
				slots = slots[len(slots)-MaxCatchUp:]
			}
		}
		for _, slot := range slots {
			if ctx.Err() != nil {
				return n
			}
			s.log.Info("job catch-up", "job", e.job.Name, "slot", slot.UTC())
			if run, _ := s.runSlot(ctx, e, slot, false); run != nil {
				n++
			}
		}
	}
	return n
}

// Run runs job name for slot now, in this process, whatever its
// schedule. With force a slot that already succeeded runs again. It
// returns the run (nil when another process holds the job).
func (s *Scheduler) Run(ctx context.Context, name string, slot time.Time, force bool) (*callbridge.JobRun, error) {
	e, ok := s.jobs[name]
	if !ok {
		return nil, callbridge.Errorf(callbridge.ENOTFOUND, "no job %q", name)
	}
	return s.runSlot(ctx, e, slot, force)
}

// Jobs returns the names of the jobs and their specs.
func (s *Scheduler) Jobs() map[string]string {
	out := map[string]string{}
	for n, e := range s.jobs {
		out[n] = e.job.Spec
		if e.sched == nil {
			out[n] = "off"
		}
	}
	return out
}

func (s *Scheduler) runSlot(ctx context.Context, e *entry, slot time.Time, force bool) (*callbridge.JobRun, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	start := time.Now()
	run, ran, err := s.runs.RunJob(ctx, e.job.Name, slot, force, func(ctx context.Context) (int64, error) {
		return e.job.Run(ctx, slot)
	})
	took := time.Since(start)
	outcome := JobOK
	switch {
	case err != nil && errors.Is(err, context.Canceled):
		outcome = JobCancelled
		s.log.Info("job cancelled", "job", e.job.Name, "slot", slot.UTC())
	case err != nil:
		outcome = JobFailed
		s.log.Error("job failed", "job", e.job.Name, "slot", slot.UTC(), "error", err)
	case ran:
		s.log.Info("job done", "job", e.job.Name, "slot", slot.UTC(), "rows", run.Rows, "duration_ms", took.Milliseconds())
	default:
		outcome = JobSkipped
		s.log.Debug("job skipped: done or running elsewhere", "job", e.job.Name, "slot", slot.UTC())
	}
	if s.OnRun != nil {
		s.OnRun(e.job.Name, outcome, took)
	}
	if err != nil {
		return run, fmt.Errorf("billing: job %s: %w", e.job.Name, err)
	}
	if !ran {
		return nil, nil
	}
	return run, nil
}

// PrevSlot returns the latest time at or before now that sched fires,
// or the zero time if it fired not within the last 400 days.
func PrevSlot(sched cron.Schedule, now time.Time) time.Time {
	for _, back := range []time.Duration{2 * time.Minute, 2 * time.Hour, 50 * time.Hour, 40 * 24 * time.Hour, 400 * 24 * time.Hour} {
		var last time.Time
		for t := sched.Next(now.Add(-back)); !t.IsZero() && !t.After(now); t = sched.Next(t) {
			last = t
		}
		if !last.IsZero() {
			return last
		}
	}
	return time.Time{}
}
