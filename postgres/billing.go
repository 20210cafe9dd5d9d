package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"callbridge"

	"github.com/lib/pq"
)

// jobLockClass is the first key of the advisory locks jobs run under
// ("cb"); the second is hashtext(job name).
const jobLockClass = 0x6362

// rollupLock serialises rollup recomputations inside their transactions
// ("cbrollup"), whichever job or command starts them.
const rollupLock = 0x6362726f6c6c7570

// BillingStore keeps billing's state: job runs, daily rollups, invoices,
// the prepaid ledger and call reservations. Days and months are read in
// its zone, which its rollups record: a rollup or invoice run of an
// account and month rolled up in another zone is refused.
type BillingStore struct {
	db   *DB
	loc  *time.Location
	node string
	// Grace is how long after a month ends it stays open to late CDRs:
	// IssueInvoices refuses it until then (CALLBRIDGE_INVOICE_GRACE).
	// Zero lets a month be invoiced as soon as it ends. Set it before
	// use.
	Grace time.Duration
}

var _ callbridge.BillingService = (*BillingStore)(nil)

// NewBillingStore returns a BillingStore over db that reads days and
// months in loc (nil: UTC) and records job runs as run by node.
func NewBillingStore(db *DB, loc *time.Location, node string) *BillingStore {
	if loc == nil {
		loc = time.UTC
	}
	return &BillingStore{db: db, loc: loc, node: node}
}

// Location returns the zone days and months are read in.
func (s *BillingStore) Location() *time.Location { return s.loc }

// RunJob runs fn as the run of job for slot, at most once across every
// process sharing the database: it takes a session advisory lock for the
// job without waiting, and, unless force is set, does nothing when a
// successful run for slot is already recorded. The run is recorded with
// its start, end, outcome and the rows fn reports. It returns the run and
// whether fn ran; a nil run with ran false means another process holds
// the job. fn's error is recorded and returned.
func (s *BillingStore) RunJob(ctx context.Context, job string, slot time.Time, force bool, fn func(context.Context) (int64, error)) (run *callbridge.JobRun, ran bool, err error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("postgres: job %s: %w", job, Error(err))
	}
	defer conn.Close()
	var locked bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, jobLockClass, job).Scan(&locked); err != nil {
		return nil, false, fmt.Errorf("postgres: job %s lock: %w", job, Error(err))
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
			return nil, false, fmt.Errorf("postgres: job %s: %w", job, Error(err))
		}
	}
	run = &callbridge.JobRun{Job: job, Slot: slot, Outcome: callbridge.RunRunning, Node: s.node}
	if err := s.db.QueryRowContext(ctx, `INSERT INTO job_runs (job, slot, node) VALUES ($1, $2, $3) RETURNING id, started_at`,
		job, slot, s.node).Scan(&run.ID, &run.StartedAt); err != nil {
		return nil, false, fmt.Errorf("postgres: job %s: %w", job, Error(err))
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
	if err != nil && callbridge.ErrorCode(Error(err)) == callbridge.ECONFLICT {
		// A forced re-run of a slot that already succeeded: the first
		// success stays the slot's record.
		run.Outcome, run.Error = callbridge.RunFailed, "another run already succeeded for this slot"
		err = s.db.QueryRowContext(fctx, `UPDATE job_runs SET finished_at = now(), outcome = $2, rows = $3, error = $4
			WHERE id = $1 RETURNING finished_at`, run.ID, run.Outcome, run.Rows, run.Error).Scan(&run.FinishedAt)
	}
	if err != nil {
		return run, true, fmt.Errorf("postgres: job %s: record run: %w", job, Error(err))
	}
	return run, true, ferr
}

// LastRun returns the latest slot job succeeded for; ok is false when it
// never did.
func (s *BillingStore) LastRun(ctx context.Context, job string) (slot time.Time, ok bool, err error) {
	var t sql.NullTime
	if err := s.db.QueryRowContext(ctx, `SELECT max(slot) FROM job_runs WHERE job = $1 AND outcome = 'ok'`, job).Scan(&t); err != nil {
		return time.Time{}, false, fmt.Errorf("postgres: last run of %s: %w", job, Error(err))
	}
	return t.Time.UTC(), t.Valid, nil
}

// JobRuns implements callbridge.BillingService.
func (s *BillingStore) JobRuns(ctx context.Context, job string, limit int) ([]callbridge.JobRun, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	runs := []callbridge.JobRun{}
	err := s.db.SelectContext(ctx, &runs, `SELECT id, job, slot, started_at, finished_at, outcome, rows, error, node
		FROM job_runs WHERE ($1 = '' OR job = $1) ORDER BY started_at DESC, id DESC LIMIT $2`, job, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: job runs: %w", Error(err))
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
func (s *BillingStore) PruneJobRuns(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM job_runs WHERE started_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("postgres: prune job runs: %w", Error(err))
	}
	return res.RowsAffected()
}

// dayBounds returns the UTC instants that bound local day d (a date
// whose Y-M-D is read in loc).
func dayBounds(loc *time.Location, y int, m time.Month, d int) (lo, hi time.Time) {
	return time.Date(y, m, d, 0, 0, 0, 0, loc).UTC(), time.Date(y, m, d+1, 0, 0, 0, 0, loc).UTC()
}

// billingWorkMem is the work_mem of rollup and invoice transactions: a
// day's rollup groups and a month's invoice lines then aggregate in memory
// instead of spilling to temporary files. It is set per transaction,
// never for the session.
const billingWorkMem = "256MB"

// rollupBatchDays is how many UTC days of marks RollupDirty recomputes in
// one transaction: a month and a day, so that a month close is one
// transaction.
const rollupBatchDays = 32

// bulkDayTargets is how many accounts of one local day make recompute
// read the whole day's CDRs (through the partition and its BRIN index on
// start_at) instead of probing the account index once per account.
const bulkDayTargets = 100

// rollupTx begins a rollup transaction's work: rollups are written by
// one transaction at a time, whichever job or command starts it. Its
// commit does not wait for the WAL flush: rollups are derived data, and a
// commit lost in a crash loses the rollups together with the clearing of
// their dirty marks, so the next run recomputes them. The next synchronous
// commit (the job's run record, the invoices) flushes it anyway, since the
// WAL is flushed in order.
//
// It also names the zone the transaction's rollups are made in
// (callbridge.billing_zone), which writeRollups records and checks.
func rollupTx(ctx context.Context, tx *Tx, zone string) error {
	_, err := tx.ExecContext(ctx, `SELECT set_config('work_mem', $1, true), set_config('synchronous_commit', 'off', true),
		set_config('callbridge.billing_zone', $3, true), pg_advisory_xact_lock($2)`, billingWorkMem, int64(rollupLock), zone)
	return Error(err)
}

// RollupDirty recomputes the rollups of every local day whose CDRs were
// inserted or re-priced since it was last rolled up, and returns how many
// rollup rows it changed. A day changed while it runs stays marked and is
// picked up by the next call. Marks are taken a month at a time, in day
// order, one transaction per month. accountID, when set, limits it to
// that account's days: other accounts' rollups are left as they are.
func (s *BillingStore) RollupDirty(ctx context.Context, accountID string) (int64, error) {
	var account any // NULL: every account
	if accountID != "" {
		if !callbridge.IsUUID(accountID) {
			return 0, notFound("account")
		}
		account = accountID
	}
	var total int64
	from := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	for {
		var first sql.NullTime
		if err := s.db.QueryRowContext(ctx, `SELECT min(day) FROM rollup_dirty WHERE day >= $1 AND ($2::uuid IS NULL OR account_id = $2::uuid)`,
			from.Format(time.DateOnly), account).Scan(&first); err != nil {
			return total, fmt.Errorf("postgres: rollup: %w", Error(err))
		}
		if !first.Valid {
			return total, nil
		}
		lo := first.Time.UTC()
		from = lo.AddDate(0, 0, rollupBatchDays)
		err := s.db.Tx(ctx, func(tx *Tx) error {
			if err := rollupTx(ctx, tx, s.loc.String()); err != nil {
				return err
			}
			// The marks as they stand now; a mark whose generation
			// moves before commit is not cleared.
			if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE rollup_marks ON COMMIT DROP AS
				SELECT account_id, day, gen FROM rollup_dirty WHERE day >= $1 AND day < $2 AND ($3::uuid IS NULL OR account_id = $3::uuid)`,
				lo.Format(time.DateOnly), from.Format(time.DateOnly), account); err != nil {
				return Error(err)
			}
			// A UTC day overlaps one or two local days.
			if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE rollup_targets ON COMMIT DROP AS
				SELECT DISTINCT m.account_id, l.day,
				       (l.day::timestamp AT TIME ZONE $1::text) AS lo,
				       ((l.day + 1)::timestamp AT TIME ZONE $1::text) AS hi
				FROM rollup_marks m
				CROSS JOIN LATERAL (VALUES
				    (((m.day::timestamp AT TIME ZONE 'UTC') AT TIME ZONE $1::text)::date),
				    (((((m.day + 1)::timestamp AT TIME ZONE 'UTC') - interval '1 microsecond') AT TIME ZONE $1::text)::date)
				) l(day)`, s.loc.String()); err != nil {
				return Error(err)
			}
			n, err := s.recompute(ctx, tx)
			if err != nil {
				return err
			}
			total += n
			_, err = tx.ExecContext(ctx, `DELETE FROM rollup_dirty d USING rollup_marks m
				WHERE d.account_id = m.account_id AND d.day = m.day AND d.gen = m.gen`)
			return Error(err)
		})
		if err != nil {
			return total, fmt.Errorf("postgres: rollup: %w", err)
		}
	}
}

// RollupDay recomputes the rollups of one local day for one account, or
// for every account with CDRs or rollups that day when accountID is "",
// whether or not they are marked. It returns how many rows it changed.
func (s *BillingStore) RollupDay(ctx context.Context, day time.Time, accountID string) (int64, error) {
	if accountID != "" && !callbridge.IsUUID(accountID) {
		return 0, notFound("account")
	}
	d := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC)
	lo, hi := dayBounds(s.loc, d.Year(), d.Month(), d.Day())
	var n int64
	err := s.db.Tx(ctx, func(tx *Tx) error {
		if err := rollupTx(ctx, tx, s.loc.String()); err != nil {
			return err
		}
		if accountID != "" {
			if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE rollup_targets ON COMMIT DROP AS
				SELECT $1::uuid AS account_id, $2::date AS day, $3::timestamptz AS lo, $4::timestamptz AS hi`,
				accountID, d.Format(time.DateOnly), lo, hi); err != nil {
				return Error(err)
			}
			var err error
			n, err = s.recompute(ctx, tx)
			return err
		}
		// Every account: one pass over the day's CDRs, and the day's
		// rollups of accounts without CDRs left are deleted.
		var fresh bool
		if err := tx.QueryRowContext(ctx, `SELECT NOT EXISTS (SELECT 1 FROM rollups WHERE day = $1)`, d.Format(time.DateOnly)).Scan(&fresh); err != nil {
			return Error(err)
		}
		var err error
		n, err = writeRollups(ctx, tx, fresh, `
			SELECT c.account_id, $1::date AS day, c.sell_deck_id, c.sell_prefix, c.gateway, `+rollupLineSQL+` AS line,
			       count(*) AS calls, count(c.answer_at) AS answered, sum(c.bill_ms)::bigint AS billed_ms,
			       sum(c.sell_micros)::bigint AS sell, sum(c.buy_micros)::bigint AS buy
			FROM cdrs c
			WHERE c.start_at >= $2 AND c.start_at < $3 AND c.account_id IS NOT NULL
			GROUP BY c.account_id, c.sell_deck_id, c.sell_prefix, c.gateway, line`,
			`r.day = $1::date`, d.Format(time.DateOnly), lo, hi)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: rollup %s: %w", d.Format(time.DateOnly), err)
	}
	return n, nil
}

// recompute makes the rollups of the (account, local day) pairs in the
// temporary table rollup_targets (account_id, day, lo, hi) the aggregates
// of their CDRs. A day with many targets (every account's day, a month
// close) is aggregated from one pass over that day's CDRs, found through
// the BRIN index on start_at; the targets of the other days probe the
// (account_id, start_at) index. Going a day at a time keeps each
// aggregation in memory however long the span.
func (s *BillingStore) recompute(ctx context.Context, tx *Tx) (int64, error) {
	if _, err := tx.ExecContext(ctx, `ANALYZE rollup_targets`); err != nil {
		return 0, Error(err)
	}
	var days []struct {
		Day     time.Time `db:"day"`
		Targets int64     `db:"targets"`
		Lo      time.Time `db:"lo"`
		Hi      time.Time `db:"hi"`
	}
	if err := tx.SelectContext(ctx, &days, `SELECT day, count(*) AS targets, min(lo) AS lo, max(hi) AS hi
		FROM rollup_targets GROUP BY day ORDER BY day`); err != nil {
		return 0, Error(err)
	}
	var total int64
	var few []string
	for _, d := range days {
		day := d.Day.UTC().Format(time.DateOnly)
		if d.Targets < bulkDayTargets {
			few = append(few, day)
			continue
		}
		var fresh bool
		if err := tx.QueryRowContext(ctx, `SELECT NOT EXISTS (SELECT 1 FROM rollups WHERE day = $1)`, day).Scan(&fresh); err != nil {
			return total, Error(err)
		}
		n, err := writeRollups(ctx, tx, fresh, `
			SELECT c.account_id, $1::date AS day, c.sell_deck_id, c.sell_prefix, c.gateway, `+rollupLineSQL+` AS line,
			       count(*) AS calls, count(c.answer_at) AS answered, sum(c.bill_ms)::bigint AS billed_ms,
			       sum(c.sell_micros)::bigint AS sell, sum(c.buy_micros)::bigint AS buy
			FROM cdrs c
			WHERE c.start_at >= $2 AND c.start_at < $3
			  AND c.account_id IN (SELECT account_id FROM rollup_targets WHERE day = $1::date)
			GROUP BY c.account_id, c.sell_deck_id, c.sell_prefix, c.gateway, line`,
			`r.day = $1::date AND r.account_id IN (SELECT account_id FROM rollup_targets WHERE day = $1::date)`,
			day, d.Lo.UTC(), d.Hi.UTC())
		if err != nil {
			return total, err
		}
		total += n
	}
	if len(few) == 0 {
		return total, nil
	}
	n, err := writeRollups(ctx, tx, false, `
		SELECT t.account_id, t.day, c.sell_deck_id, c.sell_prefix, c.gateway, `+rollupLineSQL+` AS line,
		       count(*) AS calls, count(c.answer_at) AS answered, sum(c.bill_ms)::bigint AS billed_ms,
		       sum(c.sell_micros)::bigint AS sell, sum(c.buy_micros)::bigint AS buy
		FROM rollup_targets t
		JOIN cdrs c ON c.account_id = t.account_id AND c.start_at >= t.lo AND c.start_at < t.hi
		WHERE t.day = ANY($1::date[])
		GROUP BY t.account_id, t.day, c.sell_deck_id, c.sell_prefix, c.gateway, line`,
		`(r.account_id, r.day) IN (SELECT account_id, day FROM rollup_targets WHERE day = ANY($1::date[]))`,
		pq.Array(few))
	return total + n, err
}

// rollupLineSQL is the rollups.line of a CDR c (sql/0017): which invoice
// line its charge belongs to within its destination. An unrated call is
// listed as such whatever else it is (it awaits a rate); a call closed
// without a hangup is billed apart, naming the policy that priced it;
// a call priced by the deck's default rate is not mixed with either.
const rollupLineSQL = `CASE WHEN 'unrated' = ANY(c.flags) THEN 'unrated'
	WHEN 'max_duration' = ANY(c.flags) THEN 'max_duration'
	WHEN 'estimated' = ANY(c.flags) THEN 'estimated'
	WHEN 'unrated_default' = ANY(c.flags) THEN 'default' ELSE '' END`

// lineLabelSQL is the destination printed on an invoice line for a
// rollup r: the rate's description (or prefix), and what kind of charge
// the line holds when it is not an ordinary rated call. The labels are
// the invoice's words; billing.LineLabels lists them for the docs.
const lineLabelSQL = `CASE
	WHEN r.line = 'unrated' THEN 'Unrated calls: no rate, not charged (bill unrated lists them)'
	WHEN r.line = 'default' AND r.prefix = '' THEN 'Default rate: no rate for the number'
	ELSE CASE WHEN r.description <> '' THEN r.description WHEN r.prefix <> '' THEN r.prefix
	          WHEN r.line IN ('estimated', 'max_duration') THEN 'Default rate' ELSE 'No rate matched' END
	     || CASE r.line WHEN 'default' THEN ' (partly at the deck default rate)'
	                    WHEN 'estimated' THEN ' (no hangup received: estimated, policy estimate)'
	                    WHEN 'max_duration' THEN ' (no hangup received: maximum duration, policy max_duration)'
	                    ELSE '' END
	END`

// writeRollups makes the rollups in scope (a condition on rollups r) equal
// to agg, a query of (account_id, day, sell_deck_id, sell_prefix, gateway,
// line, calls, answered, billed_ms, sell, buy) whose parameters are args: rows
// that differ are upserted, rows agg no longer has are deleted, equal rows
// are left alone (a re-run writes nothing). The months it changes are
// marked for the next invoice to compare (invoice_recheck). Destinations
// are named by the sell deck's description of the prefix. It returns the
// rows changed. fresh says the scope holds no rollups yet (the first
// rollup of a day): the rows are then inserted without the conflict
// checks of an upsert. It records the zone of the transaction
// (rollupTx) for each account and month it writes, and returns an
// ECONFLICT error, leaving the transaction to roll back, when that
// account's month or a month next to it was rolled up in another zone.
func writeRollups(ctx context.Context, tx *Tx, fresh bool, agg, scope string, args ...any) (int64, error) {
	write := `
		up AS (
			INSERT INTO rollups AS r (account_id, day, prefix, description, carrier, line, calls, answered, billed_ms, sell, buy)
			SELECT * FROM fin ORDER BY 1, 2, 3, 4, 5, 6
			RETURNING r.account_id, r.day
		), del AS (
			SELECT NULL::uuid AS account_id, NULL::date AS day WHERE false
		)`
	if !fresh {
		write = `
		up AS (
			INSERT INTO rollups AS r (account_id, day, prefix, description, carrier, line, calls, answered, billed_ms, sell, buy)
			SELECT * FROM fin ORDER BY 1, 2, 3, 4, 5, 6
			ON CONFLICT (account_id, day, prefix, description, carrier, line) DO UPDATE
			SET calls = excluded.calls, answered = excluded.answered, billed_ms = excluded.billed_ms,
			    sell = excluded.sell, buy = excluded.buy
			WHERE (r.calls, r.answered, r.billed_ms, r.sell, r.buy)
			      IS DISTINCT FROM (excluded.calls, excluded.answered, excluded.billed_ms, excluded.sell, excluded.buy)
			RETURNING r.account_id, r.day
		), del AS (
			DELETE FROM rollups r
			WHERE ` + scope + `
			  AND NOT EXISTS (SELECT 1 FROM fin f WHERE f.account_id = r.account_id AND f.day = r.day
			                  AND f.prefix = r.prefix AND f.description = r.description AND f.carrier = r.carrier
			                  AND f.line = r.line)
			RETURNING r.account_id, r.day
		)`
	}
	var n int64
	var clash struct {
		account, zone sql.NullString
		month         sql.NullTime
	}
	var zone string
	err := tx.QueryRowContext(ctx, `
		WITH agg AS MATERIALIZED (`+agg+`
		), descs AS (
			SELECT r.deck_id::text AS deck_id, r.prefix, min(r.description) FILTER (WHERE r.description <> '') AS description
			FROM rates r
			WHERE r.deck_id IN (SELECT d.id FROM rate_decks d WHERE d.id::text IN (SELECT sell_deck_id FROM agg))
			GROUP BY 1, 2
		), fin AS MATERIALIZED (
			SELECT a.account_id, a.day, a.sell_prefix AS prefix, coalesce(d.description, '') AS description, a.gateway AS carrier,
			       a.line, sum(a.calls)::bigint AS calls, sum(a.answered)::bigint AS answered, coalesce(sum(a.billed_ms), 0)::bigint AS billed_ms,
			       coalesce(sum(a.sell), 0)::bigint AS sell, coalesce(sum(a.buy), 0)::bigint AS buy
			FROM agg a LEFT JOIN descs d ON d.deck_id = a.sell_deck_id AND d.prefix = a.sell_prefix
			GROUP BY 1, 2, 3, 4, 5, 6
		),`+write+`, recheck AS (
			INSERT INTO invoice_recheck (account_id, month)
			SELECT DISTINCT account_id, day - (extract(day FROM day)::int - 1) FROM (SELECT * FROM up UNION ALL SELECT * FROM del) t
			ORDER BY 1, 2
			ON CONFLICT DO NOTHING
		), zmonths AS (
			SELECT DISTINCT account_id, day - (extract(day FROM day)::int - 1) AS month FROM fin
		), zset AS (
			INSERT INTO rollup_zones (account_id, month, zone)
			SELECT account_id, month, current_setting('callbridge.billing_zone') FROM zmonths ORDER BY 1, 2
			ON CONFLICT DO NOTHING
		), zclash AS (
			SELECT z.account_id, z.month, z.zone
			FROM rollup_zones z JOIN zmonths m ON m.account_id = z.account_id
			 AND z.month BETWEEN (m.month - interval '1 month')::date AND (m.month + interval '1 month')::date
			WHERE z.zone <> current_setting('callbridge.billing_zone')
			ORDER BY 1, 2 LIMIT 1
		)
		SELECT (SELECT count(*) FROM up) + (SELECT count(*) FROM del),
		       (SELECT account_id::text FROM zclash), (SELECT month FROM zclash), (SELECT zone FROM zclash),
		       current_setting('callbridge.billing_zone')`, args...).Scan(&n, &clash.account, &clash.month, &clash.zone, &zone)
	if err != nil {
		return 0, Error(err)
	}
	if clash.account.Valid {
		// The transaction rolls back: nothing of this run is kept.
		return 0, zoneError(clash.account.String, clash.month.Time, clash.zone.String, zone)
	}
	return n, nil
}

// CorrectionMonths is how many months before an invoice's period are
// compared with what was invoiced for them; differences become credit and
// debit lines.
const CorrectionMonths = 12

// invoiceLock serialises invoice runs ("cbinvoic"): a second run for the
// same month waits, then finds the first run's invoices issued.
const invoiceLock = 0x6362696e766f6963

// roundSQL is callbridge.RoundToMinor in SQL: micro-units %[1]s (numeric
// or bigint) to minor units of u micro-units each (%[2]s), half away from
// zero.
const roundSQL = `(div(%[1]s, %[2]s) + CASE WHEN 2 * abs(mod(%[1]s, %[2]s)) >= %[2]s THEN sign(%[1]s) ELSE 0 END)::bigint`

// taxSQL is callbridge.TaxOf in SQL over the numeric p = subtotal × bps:
// integer division truncated toward zero, then one more unit away from
// zero when the remainder is at least half. numeric cannot overflow.
const taxSQL = `(div(%[1]s, 10000) + CASE WHEN abs(mod(%[1]s, 10000)) >= 5000 THEN sign(%[1]s) ELSE 0 END)::bigint`

// errDraft rolls a draft run's transaction back.
var errDraft = errors.New("draft")

// IssueInvoices implements callbridge.BillingService. It refuses a month
// that is not closed at now (callbridge.CheckPeriodClosed with the
// store's Grace); now also stamps the documents' issue. A zero now is
// the time of the call.
//
// It brings the account's rollups up to date, then issues, for every
// account (or the one named) not invoiced for the month yet, the invoice
// of the month: its usage, and the corrections of the months before it
// whose rollups differ from what was billed for them, when a month's
// corrections net to a charge. A month whose corrections net to a credit
// gets a credit note instead, referencing the invoice that billed it. A
// re-run issues nothing new. It returns the documents issued, with their
// lines, by account, invoices first.
//
// Every account is invoiced by the same few set-based statements in one
// transaction: the lines of all accounts, then every header with its
// number (numbers of one issuer and kind follow account order, without
// gaps), then every line.
func (s *BillingStore) IssueInvoices(ctx context.Context, year int, month time.Month, accountID string, now time.Time) ([]*callbridge.Invoice, error) {
	if month < 1 || month > 12 || year < 2000 || year > 9999 {
		return nil, callbridge.FieldError("month", "must be a month YYYY-MM")
	}
	if now.IsZero() {
		now = time.Now()
	}
	if err := callbridge.CheckPeriodClosed(year, month, s.loc, s.Grace, now); err != nil {
		return nil, err
	}
	return s.issue(ctx, year, month, accountID, now, false)
}

// DraftInvoices implements callbridge.BillingService: the run of
// IssueInvoices, closed month or not, in a transaction rolled back at
// the end.
func (s *BillingStore) DraftInvoices(ctx context.Context, year int, month time.Month, accountID string, now time.Time) ([]*callbridge.Invoice, error) {
	if month < 1 || month > 12 || year < 2000 || year > 9999 {
		return nil, callbridge.FieldError("month", "must be a month YYYY-MM")
	}
	if now.IsZero() {
		now = time.Now()
	}
	return s.issue(ctx, year, month, accountID, now, true)
}

func (s *BillingStore) issue(ctx context.Context, year int, month time.Month, accountID string, now time.Time, draft bool) ([]*callbridge.Invoice, error) {
	var account any // NULL: every account
	if accountID != "" {
		if !callbridge.IsUUID(accountID) {
			return nil, notFound("account")
		}
		account = accountID
	}
	if _, err := s.RollupDirty(ctx, accountID); err != nil {
		return nil, err
	}
	var codes []string
	var exps []int64
	for c, e := range callbridge.Currencies() {
		codes, exps = append(codes, c), append(exps, int64(e))
	}
	period := fmt.Sprintf("%04d-%02d", year, int(month))
	first := time.Date(year, month, 1, 0, 0, 0, 0, time.UTC)
	next := first.AddDate(0, 1, 0)
	back := first.AddDate(0, -CorrectionMonths, 0)
	zone := s.loc.String()
	var issued []*callbridge.Invoice
	err := s.db.Tx(ctx, func(tx *Tx) error {
		issued = nil
		// Runs queue up behind each other, and no rollup changes while
		// the lines and the daily usage are read.
		if _, err := tx.ExecContext(ctx, `SELECT set_config('work_mem', $1, true), pg_advisory_xact_lock($2), pg_advisory_xact_lock($3)`,
			billingWorkMem, int64(invoiceLock), int64(rollupLock)); err != nil {
			return Error(err)
		}
		// The accounts to invoice: not invoiced for the period yet, with
		// rollups in it or changed rollups in the correction window; and
		// their currency's minor unit (unit: micro-units per minor unit).
		res, err := tx.ExecContext(ctx, `CREATE TEMP TABLE invoice_accounts ON COMMIT DROP AS
			SELECT a.id AS account_id, a.currency, c.exponent, power(10::numeric, 6 - c.exponent)::bigint AS unit,
			       coalesce(p.issuer, 'default') AS issuer,
			       coalesce(p.tax_bps, 0) AS tax_bps, coalesce(p.tax_label, '') AS tax_label,
			       coalesce(p.payment_days, 30) AS payment_days, coalesce(p.customer_name, '') AS customer_name,
			       coalesce(p.customer_address, '') AS customer_address, coalesce(p.customer_tax_number, '') AS customer_tax_number
			FROM accounts a LEFT JOIN billing_profiles p ON p.account_id = a.id
			LEFT JOIN unnest($6::text[], $7::int[]) c(code, exponent) ON c.code = a.currency
			WHERE ($1::uuid IS NULL OR a.id = $1::uuid)
			  AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.account_id = a.id AND i.period = $2 AND i.kind = 'invoice')
			  AND (EXISTS (SELECT 1 FROM rollups r WHERE r.account_id = a.id AND r.day >= $3 AND r.day < $4)
			       OR EXISTS (SELECT 1 FROM invoice_recheck m WHERE m.account_id = a.id AND m.month >= $5 AND m.month < $3))`,
			account, period, first.Format(time.DateOnly), next.Format(time.DateOnly), back.Format(time.DateOnly),
			pq.Array(codes), pq.Array(exps))
		if err != nil {
			return Error(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		var bad struct {
			Account  string `db:"account_id"`
			Currency string `db:"currency"`
		}
		switch err := tx.GetContext(ctx, &bad, `SELECT account_id, currency FROM invoice_accounts WHERE exponent IS NULL ORDER BY 1 LIMIT 1`); {
		case err == nil:
			return callbridge.Errorf(callbridge.ECONFLICT, "account %s bills in %q, which is not an ISO 4217 currency with a minor unit: set the account's currency", bad.Account, bad.Currency)
		case !errors.Is(err, sql.ErrNoRows):
			return Error(err)
		}
		// The months each account's invoice compares: its period, and
		// the months of the window whose rollups changed since an
		// invoice last compared them (an unmarked month still equals what
		// was invoiced for it).
		if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE invoice_months ON COMMIT DROP AS
			SELECT account_id, month, (month + interval '1 month')::date AS next, to_char(month, 'YYYY-MM') AS period
			FROM (
				SELECT account_id, $1::date AS month FROM invoice_accounts
				UNION
				SELECT m.account_id, m.month FROM invoice_recheck m JOIN invoice_accounts a ON a.account_id = m.account_id
				WHERE m.month >= $2 AND m.month < $1
			) x`, first.Format(time.DateOnly), back.Format(time.DateOnly)); err != nil {
			return Error(err)
		}
		if _, err := tx.ExecContext(ctx, `ANALYZE invoice_accounts, invoice_months`); err != nil {
			return Error(err)
		}
		if err := zoneClash(ctx, tx, zone, `SELECT account_id, month FROM invoice_months`); err != nil {
			return err
		}
		// One pass over those months' rollups: usage by destination group
		// for the lines and by day for the chart.
		if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE invoice_usage ON COMMIT DROP AS
			SELECT r.account_id, m.period, GROUPING(r.day) = 0 AS by_day, r.day,
			       `+lineLabelSQL+` AS destination,
			       sum(r.calls) AS calls, sum(r.answered) AS answered, sum(r.billed_ms) AS billed_ms, sum(r.sell) AS amount
			FROM invoice_months m
			JOIN rollups r ON r.account_id = m.account_id AND r.day >= m.month AND r.day < m.next
			GROUP BY GROUPING SETS (
				(r.account_id, m.period, `+lineLabelSQL+`),
				(r.account_id, m.period, r.day))`); err != nil {
			return Error(err)
		}
		// Every account's lines: its usage of the period by destination
		// group, and for each changed earlier month the difference
		// between its rollups and what its documents already billed, each
		// rounded to minor units. An earlier month whose rounded
		// differences net to a credit goes on a credit note of that
		// month; the rest goes on the period's invoice.
		if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE invoice_new_lines ON COMMIT DROP AS
			WITH r AS (
				SELECT account_id, period, destination, calls, answered, billed_ms, amount
				FROM invoice_usage WHERE NOT by_day
			), i AS (
				SELECT l.account_id, l.period, l.destination, sum(l.calls) AS calls, sum(l.answered) AS answered,
				       sum(l.billed_ms) AS billed_ms, sum(l.amount) AS amount
				FROM invoice_months m
				JOIN invoice_lines l ON l.account_id = m.account_id AND l.period = m.period
				GROUP BY 1, 2, 3
			), d AS (
				SELECT account_id, period, destination,
				       (coalesce(r.calls, 0) - coalesce(i.calls, 0))::bigint AS calls,
				       (coalesce(r.answered, 0) - coalesce(i.answered, 0))::bigint AS answered,
				       (coalesce(r.billed_ms, 0) - coalesce(i.billed_ms, 0))::bigint AS billed_ms,
				       (coalesce(r.amount, 0) - coalesce(i.amount, 0))::bigint AS amount
				FROM r FULL JOIN i USING (account_id, period, destination)
			), rounded AS (
				SELECT d.*, `+fmt.Sprintf(roundSQL, "d.amount", "a.unit")+` AS amount_minor
				FROM d JOIN invoice_accounts a USING (account_id)
				WHERE d.period = $1 OR d.calls <> 0 OR d.answered <> 0 OR d.billed_ms <> 0 OR d.amount <> 0
			), doc AS (
				SELECT rounded.*, CASE WHEN period <> $1 AND sum(amount_minor) OVER (PARTITION BY account_id, period) < 0
				                       THEN 'credit_note' ELSE 'invoice' END AS doc_kind
				FROM rounded
			)
			SELECT account_id, doc_kind, CASE doc_kind WHEN 'invoice' THEN $1 ELSE period END AS doc_period,
			       row_number() OVER (PARTITION BY account_id, doc_kind, CASE doc_kind WHEN 'invoice' THEN $1 ELSE period END
			                          ORDER BY period DESC, destination)::int AS line,
			       CASE WHEN period = $1 THEN 'usage' WHEN amount < 0 THEN 'credit' ELSE 'debit' END AS kind,
			       period, destination, calls, answered, billed_ms, amount, amount_minor
			FROM doc`, period); err != nil {
			return Error(err)
		}
		// The documents: one per account, kind and period of the lines,
		// a credit note with the invoice it corrects (the latest invoice
		// that billed its month, that month's own first) and that
		// invoice's issuer and tax rate: the credit note comes from whoever
		// billed, at the rate billed.
		if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE invoice_docs ON COMMIT DROP AS
			WITH d AS (
				SELECT account_id, doc_kind AS kind, doc_period AS period, sum(amount)::bigint AS exact, sum(amount_minor)::bigint AS subtotal
				FROM invoice_new_lines GROUP BY 1, 2, 3
			), corrected AS (
				SELECT DISTINCT ON (l.account_id, l.period) l.account_id, l.period, i.id, i.number, i.issuer, i.tax_bps, i.tax_label
				FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id AND i.kind = 'invoice'
				WHERE (l.account_id, l.period) IN (SELECT account_id, period FROM d WHERE kind = 'credit_note')
				ORDER BY l.account_id, l.period, (i.period = l.period) DESC, i.issued_at DESC, i.seq DESC
			)
			SELECT gen_random_uuid() AS id, d.*, c.id AS corrects_id, c.number AS corrects_number,
			       c.issuer AS corrects_issuer, c.tax_bps AS corrects_tax_bps, c.tax_label AS corrects_tax_label
			FROM d LEFT JOIN corrected c ON d.kind = 'credit_note' AND c.account_id = d.account_id AND c.period = d.period`); err != nil {
			return Error(err)
		}
		// Every header: tax in integer arithmetic on the rounded
		// subtotal, the next numbers of each issuer and kind, and the
		// daily usage for the chart.
		rows, err := tx.QueryxContext(ctx, `
			WITH h AS MATERIALIZED (
				SELECT d.id, d.account_id, d.kind, d.period, d.exact, d.subtotal, d.corrects_id, d.corrects_number,
				       a.currency, a.exponent, coalesce(d.corrects_issuer, a.issuer) AS issuer, a.payment_days,
				       a.customer_name, a.customer_address, a.customer_tax_number,
				       coalesce(d.corrects_tax_bps, a.tax_bps) AS tax_bps, coalesce(d.corrects_tax_label, a.tax_label) AS tax_label,
				       `+fmt.Sprintf(taxSQL, `(d.subtotal::numeric * coalesce(d.corrects_tax_bps, a.tax_bps))`)+` AS tax,
				       (to_date(d.period, 'YYYY-MM')::timestamp AT TIME ZONE $2) AS period_start,
				       ((to_date(d.period, 'YYYY-MM') + interval '1 month')::timestamp AT TIME ZONE $2) AS period_end,
				       row_number() OVER (PARTITION BY coalesce(d.corrects_issuer, a.issuer), d.kind ORDER BY d.account_id, d.period) AS n
				FROM invoice_docs d JOIN invoice_accounts a ON a.account_id = d.account_id
			), c AS (
				SELECT issuer, count(*) FILTER (WHERE kind = 'invoice') AS ni, count(*) FILTER (WHERE kind = 'credit_note') AS nc
				FROM h GROUP BY issuer
			), seq AS (
				INSERT INTO invoice_issuers AS i (issuer, prefix, last_seq, credit_last_seq)
				SELECT issuer, upper(issuer), ni, nc FROM c ORDER BY issuer
				ON CONFLICT (issuer) DO UPDATE SET last_seq = i.last_seq + excluded.last_seq,
					credit_last_seq = i.credit_last_seq + excluded.credit_last_seq
				RETURNING i.issuer, i.prefix, i.last_seq, i.credit_last_seq
			), days AS (
				SELECT account_id, jsonb_agg(jsonb_build_object('day', to_char(day, 'YYYY-MM-DD'), 'calls', calls, 'amount_micros', amount)
				                             ORDER BY day) AS days
				FROM invoice_usage
				WHERE by_day AND period = $1 AND account_id IN (SELECT account_id FROM h)
				GROUP BY account_id
			), numbered AS (
				SELECT h.*, q.prefix,
				       CASE h.kind WHEN 'invoice' THEN q.last_seq - c.ni ELSE q.credit_last_seq - c.nc END + h.n AS seq
				FROM h JOIN c ON c.issuer = h.issuer JOIN seq q ON q.issuer = h.issuer
			)
			INSERT INTO invoices (id, account_id, kind, issuer, seq, number, corrects_id, corrects_number,
			                      period, period_start, period_end, currency, exponent,
			                      issued_at, due_at, exact, subtotal, tax_bps, tax_label, tax, total, days,
			                      customer_name, customer_address, customer_tax_number, payment_days)
			SELECT x.id, x.account_id, x.kind, x.issuer, x.seq,
			       x.prefix || CASE x.kind WHEN 'invoice' THEN '-' ELSE '-CN-' END
			                || CASE WHEN x.seq < 1000000 THEN lpad(x.seq::text, 6, '0') ELSE x.seq::text END,
			       x.corrects_id, x.corrects_number, x.period, x.period_start, x.period_end, x.currency, x.exponent,
			       $3, CASE x.kind WHEN 'invoice' THEN x.period_end + x.payment_days * interval '24 hours' ELSE $3 END,
			       x.exact, x.subtotal, x.tax_bps, x.tax_label, x.tax, x.subtotal + x.tax,
			       CASE x.kind WHEN 'invoice' THEN coalesce(days.days, '[]') ELSE '[]' END,
			       x.customer_name, x.customer_address, x.customer_tax_number,
			       CASE x.kind WHEN 'invoice' THEN x.payment_days ELSE 0 END
			FROM numbered x LEFT JOIN days ON days.account_id = x.account_id
			ORDER BY x.issuer, x.kind, x.seq
			RETURNING `+invoiceColumns+`, days`,
			period, zone, now.UTC().Truncate(time.Microsecond))
		if err != nil {
			return Error(err)
		}
		byID := map[string]*callbridge.Invoice{}
		for rows.Next() {
			var row struct {
				callbridge.Invoice
				DaysJSON []byte `db:"days"`
			}
			if err := rows.StructScan(&row); err != nil {
				rows.Close()
				return Error(err)
			}
			inv := row.Invoice
			utcInvoice(&inv)
			if err := json.Unmarshal(row.DaysJSON, &inv.Days); err != nil {
				rows.Close()
				return fmt.Errorf("invoice days: %w", err)
			}
			issued = append(issued, &inv)
			byID[inv.ID] = &inv
		}
		if err := rows.Close(); err != nil {
			return Error(err)
		}
		if err := rows.Err(); err != nil {
			return Error(err)
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO invoice_lines (invoice_id, line, account_id, kind, period, destination, calls, answered, billed_ms, amount, amount_minor)
			SELECT d.id, l.line, l.account_id, l.kind, l.period, l.destination, l.calls, l.answered, l.billed_ms, l.amount, l.amount_minor
			FROM invoice_new_lines l
			JOIN invoice_docs d ON d.account_id = l.account_id AND d.kind = l.doc_kind AND d.period = l.doc_period
			ORDER BY 1, 2`); err != nil {
			return Error(err)
		}
		// The compared months now equal what is billed for them.
		if _, err := tx.ExecContext(ctx, `DELETE FROM invoice_recheck r USING invoice_months m
			WHERE r.account_id = m.account_id AND r.month = m.month`); err != nil {
			return Error(err)
		}
		lrows, err := tx.QueryxContext(ctx, `SELECT d.id AS doc_id, l.kind, l.period, l.destination, l.calls, l.answered,
			       l.billed_ms, l.amount, l.amount_minor
			FROM invoice_new_lines l
			JOIN invoice_docs d ON d.account_id = l.account_id AND d.kind = l.doc_kind AND d.period = l.doc_period
			ORDER BY d.id, l.line`)
		if err != nil {
			return Error(err)
		}
		defer lrows.Close()
		for lrows.Next() {
			var l struct {
				DocID string `db:"doc_id"`
				callbridge.InvoiceLine
			}
			if err := lrows.StructScan(&l); err != nil {
				return Error(err)
			}
			inv := byID[l.DocID]
			if inv == nil {
				return fmt.Errorf("line of document %s that was not issued", l.DocID)
			}
			inv.Lines = append(inv.Lines, l.InvoiceLine)
		}
		if err := lrows.Err(); err != nil {
			return Error(err)
		}
		if draft {
			return errDraft
		}
		return nil
	})
	if err != nil && !(draft && errors.Is(err, errDraft)) {
		return nil, fmt.Errorf("postgres: invoices %s: %w", period, err)
	}
	if draft {
		for _, inv := range issued {
			inv.ID, inv.Seq, inv.Number, inv.Draft = "", 0, "DRAFT", true
		}
	}
	slices.SortFunc(issued, func(a, b *callbridge.Invoice) int {
		return cmp.Or(strings.Compare(a.AccountID, b.AccountID), strings.Compare(a.Kind, b.Kind), strings.Compare(a.Period, b.Period))
	})
	return issued, nil
}

// zoneClash returns an ECONFLICT error when an (account_id, month) of the
// query months, or a month next to it, was rolled up in a zone other than
// zone; months is a query of (account_id, month).
func zoneClash(ctx context.Context, tx *Tx, zone, months string) error {
	var c struct {
		Account string    `db:"account_id"`
		Month   time.Time `db:"month"`
		Zone    string    `db:"zone"`
	}
	err := tx.GetContext(ctx, &c, `SELECT z.account_id, z.month, z.zone
		FROM rollup_zones z JOIN (`+months+`) m ON m.account_id = z.account_id
		 AND z.month BETWEEN (m.month - interval '1 month')::date AND (m.month + interval '1 month')::date
		WHERE z.zone <> $1
		ORDER BY 1, 2 LIMIT 1`, zone)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return Error(err)
	}
	return zoneError(c.Account, c.Month, c.Zone, zone)
}

func zoneError(account string, month time.Time, made, zone string) error {
	return &callbridge.Error{Code: callbridge.ECONFLICT, Field: "timezone", Message: fmt.Sprintf(
		"the rollups of account %s for %s were made in %s, not %s: run in %s (bill --timezone), "+
			"or days and months of two zones would overlap", account, month.UTC().Format("2006-01"), made, zone, made)}
}

const invoiceColumns = `id, account_id, kind, issuer, seq, number, coalesce(corrects_id::text, '') AS corrects_id,
	coalesce(corrects_number, '') AS corrects_number, period, period_start, period_end, currency, exponent,
	issued_at, due_at, exact, subtotal, tax_bps, tax_label, tax, total,
	customer_name, customer_address, customer_tax_number, payment_days,
	subtotal * power(10::numeric, 6 - exponent)::bigint - exact AS rounding`

func utcInvoice(inv *callbridge.Invoice) {
	inv.PeriodStart, inv.PeriodEnd = inv.PeriodStart.UTC(), inv.PeriodEnd.UTC()
	inv.IssuedAt, inv.DueAt = inv.IssuedAt.UTC(), inv.DueAt.UTC()
}

// Invoices implements callbridge.BillingService.
func (s *BillingStore) Invoices(ctx context.Context, accountID string) ([]*callbridge.Invoice, error) {
	if !callbridge.IsUUID(accountID) {
		return nil, notFound("account")
	}
	invs := []*callbridge.Invoice{}
	if err := s.db.SelectContext(ctx, &invs, `SELECT `+invoiceColumns+` FROM invoices
		WHERE account_id = $1 ORDER BY issued_at DESC, kind DESC, period DESC LIMIT 240`, accountID); err != nil {
		return nil, fmt.Errorf("postgres: invoices: %w", Error(err))
	}
	for _, inv := range invs {
		utcInvoice(inv)
	}
	return invs, nil
}

// Invoice implements callbridge.BillingService.
func (s *BillingStore) Invoice(ctx context.Context, accountID, id string) (*callbridge.Invoice, error) {
	if !callbridge.IsUUID(accountID) || !callbridge.IsUUID(id) {
		return nil, notFound("invoice")
	}
	var row struct {
		callbridge.Invoice
		DaysJSON []byte `db:"days"`
	}
	err := s.db.GetContext(ctx, &row, `SELECT `+invoiceColumns+`, days FROM invoices WHERE id = $1 AND account_id = $2`, id, accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("invoice")
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: invoice: %w", Error(err))
	}
	inv := row.Invoice
	utcInvoice(&inv)
	if err := json.Unmarshal(row.DaysJSON, &inv.Days); err != nil {
		return nil, fmt.Errorf("postgres: invoice %s days: %w", id, err)
	}
	if err := s.db.SelectContext(ctx, &inv.Lines, `SELECT kind, period, destination, calls, answered, billed_ms, amount, amount_minor
		FROM invoice_lines WHERE invoice_id = $1 ORDER BY line`, id); err != nil {
		return nil, fmt.Errorf("postgres: invoice lines: %w", Error(err))
	}
	return &inv, nil
}

// Usage implements callbridge.BillingService. It reads the CDRs
// themselves, so it is exact whether or not the rollups are current.
func (s *BillingStore) Usage(ctx context.Context, accountID string, f callbridge.UsageFilter) (*callbridge.UsageReport, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if !callbridge.IsUUID(accountID) {
		return nil, notFound("account")
	}
	var key, desc string
	switch f.GroupBy {
	case callbridge.GroupByDay:
		key, desc = `to_char((start_at AT TIME ZONE $4)::date, 'YYYY-MM-DD')`, `''`
	case callbridge.GroupByDestination:
		key, desc = `sell_prefix`, `''`
	case callbridge.GroupByCarrier:
		// Inbound legs reach the switch from outside: no carrier gateway.
		key, desc = `gateway`, `CASE WHEN gateway = '' THEN 'inbound legs (no carrier)' ELSE '' END`
	case callbridge.GroupByBinding:
		key, desc = `coalesce(binding_id::text, '')`, `''`
	}
	rep := &callbridge.UsageReport{AccountID: accountID, From: f.From.UTC(), To: f.To.UTC(), GroupBy: f.GroupBy, Rows: []callbridge.UsageRow{}}
	if err := s.db.QueryRowContext(ctx, `SELECT currency FROM accounts WHERE id = $1`, accountID).Scan(&rep.Currency); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, notFound("account")
		}
		return nil, fmt.Errorf("postgres: usage: %w", Error(err))
	}
	q := `SELECT ` + key + ` AS key, ` + desc + ` AS description, count(*) AS calls,
		count(*) FILTER (WHERE answer_at IS NOT NULL) AS answered,
		coalesce(sum(bill_ms), 0) AS billed_ms, coalesce(sum(sell_micros), 0) AS sell,
		coalesce(sum(buy_micros), 0) AS buy, coalesce(sum(sell_micros) - sum(buy_micros), 0) AS margin
		FROM cdrs WHERE account_id = $1 AND start_at >= $2 AND start_at < $3 AND $4 <> ''
		GROUP BY 1, 2 ORDER BY 1, 2`
	if err := s.db.SelectContext(ctx, &rep.Rows, q, accountID, f.From, f.To, s.loc.String()); err != nil {
		return nil, fmt.Errorf("postgres: usage: %w", Error(err))
	}
	for _, r := range rep.Rows {
		rep.Total.Calls += r.Calls
		rep.Total.Answered += r.Answered
		rep.Total.BilledMS += r.BilledMS
		rep.Total.Sell += r.Sell
		rep.Total.Buy += r.Buy
		rep.Total.Margin += r.Margin
	}
	rep.Total.Key = "total"
	return rep, nil
}

// DayUsage returns every account's rollups of one local day, for the
// daily report file: one row per account, destination, carrier and line,
// Key being "account_id/prefix/carrier", then "/line" for a line other
// than rated calls (rollupLineSQL).
func (s *BillingStore) DayUsage(ctx context.Context, day time.Time) ([]callbridge.UsageRow, error) {
	rows := []callbridge.UsageRow{}
	err := s.db.SelectContext(ctx, &rows, `
		SELECT account_id::text || '/' || prefix || '/' || carrier || CASE WHEN line <> '' THEN '/' || line ELSE '' END AS key,
		       description, calls, answered,
		       billed_ms, sell, buy, sell - buy AS margin
		FROM rollups WHERE day = $1 ORDER BY account_id, prefix, carrier, line`, day.Format(time.DateOnly))
	if err != nil {
		return nil, fmt.Errorf("postgres: day usage: %w", Error(err))
	}
	return rows, nil
}

func profile(ctx context.Context, q interface {
	GetContext(ctx context.Context, dest any, query string, args ...any) error
}, accountID string) (*callbridge.BillingProfile, error) {
	p := &callbridge.BillingProfile{AccountID: accountID}
	err := q.GetContext(ctx, p, `SELECT a.id AS account_id, coalesce(p.issuer, 'default') AS issuer,
		coalesce(p.tax_bps, 0) AS tax_bps, coalesce(p.tax_label, '') AS tax_label,
		coalesce(p.payment_days, 30) AS payment_days, p.low_balance, coalesce(p.low_balance_url, '') AS low_balance_url,
		coalesce(p.missing_hangup, 'estimate') AS missing_hangup, coalesce(p.customer_name, '') AS customer_name,
		coalesce(p.customer_address, '') AS customer_address, coalesce(p.customer_tax_number, '') AS customer_tax_number
		FROM accounts a LEFT JOIN billing_profiles p ON p.account_id = a.id WHERE a.id = $1`, accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("account")
	}
	if err != nil {
		return nil, Error(err)
	}
	return p, nil
}

// Profile implements callbridge.BillingService.
func (s *BillingStore) Profile(ctx context.Context, accountID string) (*callbridge.BillingProfile, error) {
	if !callbridge.IsUUID(accountID) {
		return nil, notFound("account")
	}
	p, err := profile(ctx, s.db, accountID)
	if err != nil {
		return nil, fmt.Errorf("postgres: billing profile: %w", err)
	}
	return p, nil
}

// SetProfile implements callbridge.BillingService.
func (s *BillingStore) SetProfile(ctx context.Context, p *callbridge.BillingProfile) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if !callbridge.IsUUID(p.AccountID) {
		return notFound("account")
	}
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO billing_profiles (account_id, issuer, tax_bps, tax_label, payment_days, low_balance, low_balance_url,
		                              missing_hangup, customer_name, customer_address, customer_tax_number)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (account_id) DO UPDATE SET issuer = $2, tax_bps = $3, tax_label = $4, payment_days = $5,
			low_balance = $6, low_balance_url = $7, missing_hangup = $8, customer_name = $9,
			customer_address = $10, customer_tax_number = $11`,
		p.AccountID, p.Issuer, p.TaxBPS, p.TaxLabel, p.PaymentDays, p.LowBalance, p.LowBalanceURL,
		p.MissingHangup, p.CustomerName, p.CustomerAddress, p.CustomerTaxNumber)
	if err != nil {
		var pe *pq.Error
		if errors.As(err, &pe) && pe.Code == codeForeignKey {
			return notFound("account")
		}
		return fmt.Errorf("postgres: set billing profile: %w", Error(err))
	}
	return nil
}

// Topup implements callbridge.BillingService.
func (s *BillingStore) Topup(ctx context.Context, accountID string, amount int64, reference string) (*callbridge.LedgerEntry, error) {
	if amount <= 0 {
		return nil, callbridge.FieldError("amount_micros", "must be positive")
	}
	if len(reference) > 200 || strings.ContainsAny(reference, "\x00\r\n") {
		return nil, callbridge.FieldError("reference", "must be at most 200 characters on one line")
	}
	if !callbridge.IsUUID(accountID) {
		return nil, notFound("account")
	}
	e := &callbridge.LedgerEntry{AccountID: accountID, Kind: callbridge.LedgerTopup, Amount: amount, Reference: reference}
	err := s.db.Tx(ctx, func(tx *Tx) error {
		var prepaid bool
		if err := tx.QueryRowContext(ctx, `SELECT prepaid FROM accounts WHERE id = $1`, accountID).Scan(&prepaid); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return notFound("account")
			}
			return Error(err)
		}
		if !prepaid {
			return callbridge.Errorf(callbridge.ECONFLICT, "the account is postpaid; top-ups are for prepaid accounts")
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO ledger_entries (account_id, kind, amount, reference)
			VALUES ($1, 'topup', $2, $3) ON CONFLICT DO NOTHING RETURNING id, created_at`,
			accountID, amount, reference).Scan(&e.ID, &e.CreatedAt)
		if errors.Is(err, sql.ErrNoRows) {
			var prev callbridge.LedgerEntry
			if err := tx.GetContext(ctx, &prev, `SELECT id, account_id, kind, amount, reference, created_at
				FROM ledger_entries WHERE account_id = $1 AND kind = 'topup' AND reference = $2`, accountID, reference); err != nil {
				return Error(err)
			}
			if prev.Amount != amount {
				return callbridge.FieldError("reference", "was used by an earlier top-up of another amount")
			}
			*e = prev
			return nil
		}
		return Error(err)
	})
	if err != nil {
		return nil, err
	}
	e.CreatedAt = e.CreatedAt.UTC()
	return e, nil
}

// Balance implements callbridge.BillingService.
func (s *BillingStore) Balance(ctx context.Context, accountID string) (*callbridge.Balance, error) {
	if !callbridge.IsUUID(accountID) {
		return nil, notFound("account")
	}
	var b callbridge.Balance
	err := s.db.GetContext(ctx, &b, `
		SELECT a.id AS account_id, a.currency, a.prepaid, coalesce(b.balance, 0) AS balance,
		       coalesce((SELECT sum(amount) FROM reservations r WHERE r.account_id = a.id AND r.expires_at > now()), 0) AS reserved
		FROM accounts a LEFT JOIN balances b ON b.account_id = a.id WHERE a.id = $1`, accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("account")
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: balance: %w", Error(err))
	}
	b.Available = b.Balance - b.Reserved
	return &b, nil
}

// Ledger implements callbridge.BillingService.
func (s *BillingStore) Ledger(ctx context.Context, accountID string, limit int) ([]callbridge.LedgerEntry, error) {
	if !callbridge.IsUUID(accountID) {
		return nil, notFound("account")
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	es := []callbridge.LedgerEntry{}
	if err := s.db.SelectContext(ctx, &es, `SELECT id, account_id, kind, amount, reference, created_at
		FROM ledger_entries WHERE account_id = $1 ORDER BY id DESC LIMIT $2`, accountID, limit); err != nil {
		return nil, fmt.Errorf("postgres: ledger: %w", Error(err))
	}
	for i := range es {
		es[i].CreatedAt = es[i].CreatedAt.UTC()
	}
	return es, nil
}

// Reserve holds money for call callID of a prepaid account. It locks the
// account's balance, so concurrent reservations of one account are
// serialised and each sees the others' holds, asks quote what the
// available money (balance minus live reservations) buys (the duration
// granted and the amount to hold; an error refuses the call), and stores the
// reservation until the call's CDR is stored or ttl after the granted
// duration. For a postpaid account it returns (nil, false, nil) without
// calling quote. ENOTFOUND, EINVALID (callID), ECONFLICT (callID reused),
// and quote's error.
func (s *BillingStore) Reserve(ctx context.Context, accountID, callID string, ttl time.Duration, quote func(available int64) (maxMS, amount int64, err error)) (*callbridge.Reservation, bool, error) {
	if !callbridge.IsUUID(accountID) {
		return nil, false, notFound("account")
	}
	if !callbridge.IsUUID(callID) {
		return nil, false, callbridge.FieldError("call_id", "must be a UUID")
	}
	var res *callbridge.Reservation
	var prepaid bool
	err := s.db.Tx(ctx, func(tx *Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT prepaid FROM accounts WHERE id = $1`, accountID).Scan(&prepaid); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return notFound("account")
			}
			return Error(err)
		}
		if !prepaid {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO balances (account_id) VALUES ($1) ON CONFLICT DO NOTHING`, accountID); err != nil {
			return Error(err)
		}
		var balance, reserved int64
		if err := tx.QueryRowContext(ctx, `SELECT balance FROM balances WHERE account_id = $1 FOR UPDATE`, accountID).Scan(&balance); err != nil {
			return Error(err)
		}
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(sum(amount), 0) FROM reservations
			WHERE account_id = $1 AND expires_at > now()`, accountID).Scan(&reserved); err != nil {
			return Error(err)
		}
		maxMS, amount, err := quote(balance - reserved)
		if err != nil {
			return err
		}
		res = &callbridge.Reservation{AccountID: accountID, CallID: callID, Amount: amount, MaxMS: maxMS}
		return Error(tx.QueryRowContext(ctx, `INSERT INTO reservations (account_id, call_id, amount, max_ms, expires_at)
			VALUES ($1, $2, $3, $4, now() + $5 * interval '1 millisecond') RETURNING id, expires_at`,
			accountID, callID, amount, maxMS, maxMS+ttl.Milliseconds()).Scan(&res.ID, &res.ExpiresAt))
	})
	if err != nil {
		return nil, prepaid, err
	}
	if res != nil {
		res.ExpiresAt = res.ExpiresAt.UTC()
	}
	return res, prepaid, nil
}

// Release drops the reservation of callID, if any.
func (s *BillingStore) Release(ctx context.Context, callID string) error {
	if !callbridge.IsUUID(callID) {
		return nil
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM reservations WHERE call_id = $1`, callID); err != nil {
		return fmt.Errorf("postgres: release reservation: %w", Error(err))
	}
	return nil
}

// ExpireReservations deletes reservations past their expiry and returns
// how many.
func (s *BillingStore) ExpireReservations(ctx context.Context) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM reservations WHERE expires_at <= now()`)
	if err != nil {
		return 0, fmt.Errorf("postgres: expire reservations: %w", Error(err))
	}
	return res.RowsAffected()
}

// PendingLowBalance returns up to limit undelivered low-balance events
// that are due, oldest first.
func (s *BillingStore) PendingLowBalance(ctx context.Context, limit int) ([]callbridge.LowBalanceEvent, error) {
	es := []callbridge.LowBalanceEvent{}
	if err := s.db.SelectContext(ctx, &es, `SELECT id, account_id, balance, threshold, url, created_at
		FROM low_balance_events WHERE delivered_at IS NULL AND next_at <= now() ORDER BY id LIMIT $1`, limit); err != nil {
		return nil, fmt.Errorf("postgres: low-balance events: %w", Error(err))
	}
	for i := range es {
		es[i].CreatedAt = es[i].CreatedAt.UTC()
	}
	return es, nil
}

// LowBalanceHandled marks a low-balance event delivered (failure nil) or
// schedules another attempt with exponential backoff.
func (s *BillingStore) LowBalanceHandled(ctx context.Context, id int64, failure error) error {
	var err error
	if failure == nil {
		_, err = s.db.ExecContext(ctx, `UPDATE low_balance_events SET delivered_at = now(), attempts = attempts + 1, last_error = '' WHERE id = $1`, id)
	} else {
		_, err = s.db.ExecContext(ctx, `UPDATE low_balance_events SET attempts = attempts + 1, last_error = $2,
			next_at = now() + least(3600, 10 * power(2, attempts)) * interval '1 second' WHERE id = $1`, id, failure.Error())
	}
	if err != nil {
		return fmt.Errorf("postgres: low-balance event %d: %w", id, Error(err))
	}
	return nil
}

// EnsurePartitions creates the monthly CDR partitions of the month of now
// and of the ahead months after it (UTC months), and returns how many it
// checked.
func (s *BillingStore) EnsurePartitions(ctx context.Context, now time.Time, ahead int) (int64, error) {
	m := time.Date(now.UTC().Year(), now.UTC().Month(), 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i <= ahead; i++ {
		if _, err := s.db.ExecContext(ctx, `SELECT cdrs_ensure_partition($1)`, m.AddDate(0, i, 0)); err != nil {
			return int64(i), fmt.Errorf("postgres: cdr partition %s: %w", m.AddDate(0, i, 0).Format("2006-01"), Error(err))
		}
	}
	return int64(ahead + 1), nil
}

// RetirePartitions detaches the monthly CDR partitions that end at or
// before before, and drops them too when drop is set. Their rollups and
// invoices stay. It returns the names it retired.
func (s *BillingStore) RetirePartitions(ctx context.Context, before time.Time, drop bool) ([]string, error) {
	var names []string
	err := s.db.SelectContext(ctx, &names, `
		SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
		WHERE p.relname = 'cdrs' AND c.relname ~ '^cdrs_[0-9]{6}$' ORDER BY c.relname`)
	if err != nil {
		return nil, fmt.Errorf("postgres: cdr partitions: %w", Error(err))
	}
	var retired []string
	for _, n := range names {
		start, err := time.Parse("200601", strings.TrimPrefix(n, "cdrs_"))
		if err != nil || start.AddDate(0, 1, 0).After(before.UTC()) {
			continue
		}
		if _, err := s.db.ExecContext(ctx, fmt.Sprintf(`ALTER TABLE cdrs DETACH PARTITION %s`, pq.QuoteIdentifier(n))); err != nil {
			return retired, fmt.Errorf("postgres: detach %s: %w", n, Error(err))
		}
		if drop {
			if _, err := s.db.ExecContext(ctx, fmt.Sprintf(`DROP TABLE %s`, pq.QuoteIdentifier(n))); err != nil {
				return retired, fmt.Errorf("postgres: drop %s: %w", n, Error(err))
			}
		}
		retired = append(retired, n)
	}
	return retired, nil
}

// UnratedCalls implements callbridge.BillingService.
func (s *BillingStore) UnratedCalls(ctx context.Context, year int, month time.Month, accountID string) ([]callbridge.UnratedCall, error) {
	if year < 2000 || year > 9999 || month < 1 || month > 12 {
		return nil, callbridge.FieldError("month", "must be a month YYYY-MM")
	}
	var account any // NULL: every account
	if accountID != "" {
		if !callbridge.IsUUID(accountID) {
			return nil, notFound("account")
		}
		account = accountID
	}
	lo, hi := callbridge.InvoiceMonthBounds(year, month, s.loc)
	calls := []callbridge.UnratedCall{}
	err := s.db.SelectContext(ctx, &calls, `
		SELECT c.uuid::text AS uuid, c.account_id::text AS account_id, c.start_at, c.leg, c.callee,
		       coalesce(c.gateway, '') AS gateway, coalesce(c.sell_deck_id, '') AS sell_deck_id,
		       CASE WHEN 'unrated' = ANY(c.flags) THEN 'unrated' ELSE 'unrated_default' END AS flag,
		       c.bill_ms, c.sell_micros AS sell, a.currency
		FROM cdrs c JOIN accounts a ON a.id = c.account_id
		WHERE c.start_at >= $1 AND c.start_at < $2 AND ($3::uuid IS NULL OR c.account_id = $3::uuid)
		  AND c.flags && ARRAY['unrated', 'unrated_default']
		ORDER BY c.start_at, c.uuid
		LIMIT $4`, lo, hi, account, callbridge.MaxUnratedCalls)
	if err != nil {
		return nil, fmt.Errorf("postgres: unrated calls: %w", Error(err))
	}
	for i := range calls {
		calls[i].StartAt = calls[i].StartAt.UTC()
	}
	return calls, nil
}

// MissingHangupPolicy implements controller.HangupPolicies: the
// account's missing-hangup policy, HangupEstimate for an account without
// a billing profile or without a row at all.
func (s *BillingStore) MissingHangupPolicy(ctx context.Context, accountID string) (string, error) {
	policy := callbridge.HangupEstimate
	if !callbridge.IsUUID(accountID) {
		return policy, nil
	}
	err := s.db.QueryRowContext(ctx, `SELECT missing_hangup FROM billing_profiles WHERE account_id = $1`, accountID).Scan(&policy)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("postgres: missing-hangup policy: %w", Error(err))
	}
	return policy, nil
}
