package billing

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"callbridge"
	"callbridge/postgres/internal/pg"
)

// jobLockClass is the first key of the advisory locks jobs run under
// ("cb"); the second is hashtext(job name).
const jobLockClass = 0x6362

// RunJob runs fn as the run of job for slot, at most once across every
// process sharing the database: it takes a session advisory lock for the
// job without waiting, and, unless force is set, does nothing when a
// successful run for slot is already recorded. The run is recorded with
// its start, end, outcome and the rows fn reports. It returns the run and
// whether fn ran; a nil run with ran false means another process holds
// the job. fn's error is recorded and returned.
func (s *Store) RunJob(ctx context.Context, job string, slot time.Time, force bool, fn func(context.Context) (int64, error)) (run *callbridge.JobRun, ran bool, err error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("postgres: job %s: %w", job, pg.Error(err))
	}
	defer conn.Close()
	var locked bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, jobLockClass, job).Scan(&locked); err != nil {
		return nil, false, fmt.Errorf("postgres: job %s lock: %w", job, pg.Error(err))
	}
	if !locked {
		return nil, false, nil
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.ExecContext(uctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, jobLockClass, job); err != nil {
			// Discard the session: closing it is what frees the lock.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()

	slot = slot.UTC().Truncate(time.Microsecond)
	if !force {
		var done callbridge.JobRun
		err := s.db.GetContext(ctx, &done, `SELECT id, job, slot, started_at, finished_at, outcome, rows, error, node
			FROM job_runs WHERE job = $1 AND slot = $2 AND outcome = 'ok'`, job, slot)
		if err == nil {
			return &done, false, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, false, fmt.Errorf("postgres: job %s: %w", job, pg.Error(err))
		}
	}
	run = &callbridge.JobRun{Job: job, Slot: slot, Outcome: callbridge.RunRunning, Node: s.node}
	if err := s.db.QueryRowContext(ctx, `INSERT INTO job_runs (job, slot, node) VALUES ($1, $2, $3) RETURNING id, started_at`,
		job, slot, s.node).Scan(&run.ID, &run.StartedAt); err != nil {
		return nil, false, fmt.Errorf("postgres: job %s: %w", job, pg.Error(err))
	}
	rows, ferr := fn(ctx)
	run.Rows = rows
	run.Outcome = callbridge.RunOK
	if ferr != nil {
		run.Outcome, run.Error = callbridge.RunFailed, ferr.Error()
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err = s.db.QueryRowContext(fctx, `UPDATE job_runs SET finished_at = now(), outcome = $2, rows = $3, error = $4
		WHERE id = $1 RETURNING finished_at`, run.ID, run.Outcome, run.Rows, run.Error).Scan(&run.FinishedAt)
	if err != nil && callbridge.ErrorCode(pg.Error(err)) == callbridge.ECONFLICT {
		// A forced re-run of a slot that already succeeded: the first
		// success stays the slot's record.
		run.Outcome, run.Error = callbridge.RunFailed, "another run already succeeded for this slot"
		err = s.db.QueryRowContext(fctx, `UPDATE job_runs SET finished_at = now(), outcome = $2, rows = $3, error = $4
			WHERE id = $1 RETURNING finished_at`, run.ID, run.Outcome, run.Rows, run.Error).Scan(&run.FinishedAt)
	}
	if err != nil {
		return run, true, fmt.Errorf("postgres: job %s: record run: %w", job, pg.Error(err))
	}
	return run, true, ferr
}

// LastRun returns the latest slot job succeeded for; ok is false when it
// never did.
func (s *Store) LastRun(ctx context.Context, job string) (slot time.Time, ok bool, err error) {
	var t sql.NullTime
	if err := s.db.QueryRowContext(ctx, `SELECT max(slot) FROM job_runs WHERE job = $1 AND outcome = 'ok'`, job).Scan(&t); err != nil {
		return time.Time{}, false, fmt.Errorf("postgres: last run of %s: %w", job, pg.Error(err))
	}
	return t.Time.UTC(), t.Valid, nil
}

// JobRuns implements callbridge.BillingService.
func (s *Store) JobRuns(ctx context.Context, job string, limit int) ([]callbridge.JobRun, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	runs := []callbridge.JobRun{}
	err := s.db.SelectContext(ctx, &runs, `SELECT id, job, slot, started_at, finished_at, outcome, rows, error, node
		FROM job_runs WHERE ($1 = '' OR job = $1) ORDER BY started_at DESC, id DESC LIMIT $2`, job, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: job runs: %w", pg.Error(err))
	}
	for i := range runs {
		utcRun(&runs[i])
	}
	return runs, nil
}

func utcRun(r *callbridge.JobRun) {
	r.Slot, r.StartedAt = r.Slot.UTC(), r.StartedAt.UTC()
	if r.FinishedAt != nil {
		t := r.FinishedAt.UTC()
		r.FinishedAt = &t
	}
}

// PruneJobRuns deletes runs that started before before and returns how
// many.
func (s *Store) PruneJobRuns(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM job_runs WHERE started_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("postgres: prune job runs: %w", pg.Error(err))
	}
	return res.RowsAffected()
}
