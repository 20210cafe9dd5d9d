package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
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
// its zone.
type BillingStore struct {
	db   *DB
	loc  *time.Location
	node string
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

// rollupTarget is one (account, local day) to recompute.
type rollupTarget struct {
	account string
	day     time.Time // the local date, as midnight UTC of the same Y-M-D
	lo, hi  time.Time
}

// localDays returns the local days (in loc) that overlap UTC day utc.
func localDays(loc *time.Location, utc time.Time) []time.Time {
	first := utc.In(loc)
	last := utc.Add(24*time.Hour - time.Nanosecond).In(loc)
	a := time.Date(first.Year(), first.Month(), first.Day(), 0, 0, 0, 0, time.UTC)
	b := time.Date(last.Year(), last.Month(), last.Day(), 0, 0, 0, 0, time.UTC)
	if a.Equal(b) {
		return []time.Time{a}
	}
	return []time.Time{a, b}
}

// RollupDirty recomputes the rollups of every local day whose CDRs were
// inserted or re-priced since it was last rolled up, and returns how many
// rollup rows it wrote. A day changed while it runs stays marked and is
// picked up by the next call.
func (s *BillingStore) RollupDirty(ctx context.Context) (int64, error) {
	const batch = 20000
	var total int64
	for range 10000 {
		var marks []struct {
			Account string    `db:"account_id"`
			Day     time.Time `db:"day"`
			Gen     int64     `db:"gen"`
		}
		if err := s.db.SelectContext(ctx, &marks, `SELECT account_id, day, gen FROM rollup_dirty ORDER BY day, account_id LIMIT $1`, batch); err != nil {
			return total, fmt.Errorf("postgres: rollup: %w", Error(err))
		}
		if len(marks) == 0 {
			return total, nil
		}
		seen := map[[2]string]bool{}
		var targets []rollupTarget
		accs, days, gens := make([]string, len(marks)), make([]time.Time, len(marks)), make([]int64, len(marks))
		for i, m := range marks {
			accs[i], days[i], gens[i] = m.Account, m.Day, m.Gen
			for _, d := range localDays(s.loc, time.Date(m.Day.Year(), m.Day.Month(), m.Day.Day(), 0, 0, 0, 0, time.UTC)) {
				k := [2]string{m.Account, d.Format(time.DateOnly)}
				if seen[k] {
					continue
				}
				seen[k] = true
				lo, hi := dayBounds(s.loc, d.Year(), d.Month(), d.Day())
				targets = append(targets, rollupTarget{m.Account, d, lo, hi})
			}
		}
		err := s.db.Tx(ctx, func(tx *Tx) error {
			n, err := s.recompute(ctx, tx, targets)
			if err != nil {
				return err
			}
			total += n
			_, err = tx.ExecContext(ctx, `DELETE FROM rollup_dirty d
				USING unnest($1::uuid[], $2::date[], $3::bigint[]) AS m(account_id, day, gen)
				WHERE d.account_id = m.account_id AND d.day = m.day AND d.gen = m.gen`,
				pq.Array(accs), pq.Array(dates(days)), pq.Array(gens))
			return Error(err)
		})
		if err != nil {
			return total, fmt.Errorf("postgres: rollup: %w", err)
		}
		if len(marks) < batch {
			return total, nil
		}
	}
	return total, nil
}

func dates(ts []time.Time) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Format(time.DateOnly)
	}
	return out
}

// RollupDay recomputes the rollups of one local day for one account, or
// for every account with CDRs or rollups that day when accountID is "",
// whether or not they are marked. It returns how many rows it wrote.
func (s *BillingStore) RollupDay(ctx context.Context, day time.Time, accountID string) (int64, error) {
	if accountID != "" && !isUUID(accountID) {
		return 0, notFound("account")
	}
	d := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC)
	lo, hi := dayBounds(s.loc, d.Year(), d.Month(), d.Day())
	var accounts []string
	err := s.db.SelectContext(ctx, &accounts, `
		SELECT account_id FROM cdrs WHERE start_at >= $1 AND start_at < $2 AND account_id IS NOT NULL AND ($4 = '' OR account_id = $4::uuid)
		UNION
		SELECT account_id FROM rollups WHERE day = $3 AND ($4 = '' OR account_id = $4::uuid)`,
		lo, hi, d.Format(time.DateOnly), accountID)
	if err != nil {
		return 0, fmt.Errorf("postgres: rollup %s: %w", d.Format(time.DateOnly), Error(err))
	}
	targets := make([]rollupTarget, len(accounts))
	for i, a := range accounts {
		targets[i] = rollupTarget{a, d, lo, hi}
	}
	var n int64
	err = s.db.Tx(ctx, func(tx *Tx) error {
		var err error
		n, err = s.recompute(ctx, tx, targets)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: rollup %s: %w", d.Format(time.DateOnly), err)
	}
	return n, nil
}

// bulkTargets and bulkSpan decide when recompute scans CDRs by time range
// instead of probing the index once per target.
const (
	bulkTargets = 2000
	bulkSpan    = 62 * 24 * time.Hour
)

// recompute replaces the rollups of targets with aggregates of their CDRs.
func (s *BillingStore) recompute(ctx context.Context, tx *Tx, targets []rollupTarget) (int64, error) {
	if len(targets) == 0 {
		return 0, nil
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(rollupLock)); err != nil {
		return 0, Error(err)
	}
	accs := make([]string, len(targets))
	days := make([]string, len(targets))
	los := make([]time.Time, len(targets))
	his := make([]time.Time, len(targets))
	for i, t := range targets {
		accs[i], days[i], los[i], his[i] = t.account, t.day.Format(time.DateOnly), t.lo, t.hi
	}
	if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE rollup_targets ON COMMIT DROP AS
		SELECT * FROM unnest($1::uuid[], $2::date[], $3::timestamptz[], $4::timestamptz[]) AS t(account_id, day, lo, hi)`,
		pq.Array(accs), pq.Array(days), pq.Array(los), pq.Array(his)); err != nil {
		return 0, Error(err)
	}
	if _, err := tx.ExecContext(ctx, `ANALYZE rollup_targets`); err != nil {
		return 0, Error(err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM rollups r USING rollup_targets t
		WHERE r.account_id = t.account_id AND r.day = t.day`); err != nil {
		return 0, Error(err)
	}
	// Few targets: probe the (account_id, start_at) index per target.
	// Many targets within a short span (a month close): scan the span's
	// partitions once and hash-join on (account, local day), which reads
	// each CDR page once instead of once per account.
	agg := `
		SELECT t.account_id, t.day, c.sell_deck_id, c.sell_prefix, c.gateway,
		       count(*) AS calls, count(*) FILTER (WHERE c.answer_at IS NOT NULL) AS answered,
		       coalesce(sum(c.bill_ms), 0) AS billed_ms, coalesce(sum(c.sell_micros), 0) AS sell,
		       coalesce(sum(c.buy_micros), 0) AS buy
		FROM rollup_targets t
		JOIN cdrs c ON c.account_id = t.account_id AND c.start_at >= t.lo AND c.start_at < t.hi
		GROUP BY t.account_id, t.day, c.sell_deck_id, c.sell_prefix, c.gateway`
	args := []any{}
	lo, hi := targets[0].lo, targets[0].hi
	for _, t := range targets {
		if t.lo.Before(lo) {
			lo = t.lo
		}
		if t.hi.After(hi) {
			hi = t.hi
		}
	}
	if len(targets) >= bulkTargets && hi.Sub(lo) <= bulkSpan {
		// Aggregate the span's CDRs first (each row read once), then
		// keep the (account, day) groups that are targets.
		agg = `
		SELECT g.* FROM (
			SELECT c.account_id, (c.start_at AT TIME ZONE $3)::date AS day, c.sell_deck_id, c.sell_prefix, c.gateway,
			       count(*) AS calls, count(*) FILTER (WHERE c.answer_at IS NOT NULL) AS answered,
			       coalesce(sum(c.bill_ms), 0) AS billed_ms, coalesce(sum(c.sell_micros), 0) AS sell,
			       coalesce(sum(c.buy_micros), 0) AS buy
			FROM cdrs c
			WHERE c.start_at >= $1 AND c.start_at < $2
			  AND c.account_id IN (SELECT DISTINCT account_id FROM rollup_targets)
			GROUP BY 1, 2, 3, 4, 5
		) g JOIN rollup_targets t ON t.account_id = g.account_id AND t.day = g.day`
		args = append(args, lo, hi, s.loc.String())
	}
	res, err := tx.ExecContext(ctx, `
		WITH agg AS (`+agg+`
		)
		INSERT INTO rollups (account_id, day, prefix, description, carrier, calls, answered, billed_ms, sell, buy)
		SELECT a.account_id, a.day, a.sell_prefix, coalesce(d.description, ''), a.gateway,
		       sum(a.calls), sum(a.answered), sum(a.billed_ms), sum(a.sell), sum(a.buy)
		FROM agg a
		LEFT JOIN (
			SELECT r.deck_id::text AS deck_id, r.prefix, min(r.description) FILTER (WHERE r.description <> '') AS description
			FROM rates r WHERE r.deck_id::text IN (SELECT DISTINCT sell_deck_id FROM agg)
			GROUP BY 1, 2
		) d ON d.deck_id = a.sell_deck_id AND d.prefix = a.sell_prefix
		GROUP BY 1, 2, 3, 4, 5`, args...)
	if err != nil {
		return 0, Error(err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// monthBounds returns the UTC instants bounding month ym ("YYYY-MM") in
// loc, and its first day and the first day of the next month as dates.
func monthBounds(loc *time.Location, y int, m time.Month) (lo, hi time.Time) {
	return time.Date(y, m, 1, 0, 0, 0, 0, loc).UTC(), time.Date(y, m+1, 1, 0, 0, 0, 0, loc).UTC()
}

// CorrectionMonths is how many months before an invoice's period are
// compared with what was invoiced for them; differences become credit and
// debit lines.
const CorrectionMonths = 12

// IssueInvoices brings the rollups up to date, then issues the invoice of
// the period for every account (or the one named) that has usage in it,
// or usage of the months before that differs from what was invoiced for
// them (corrections become credit and debit lines). An account that
// already has an invoice for the period is left alone, so a re-run issues
// nothing new. It returns the invoices it issued, with their lines.
func (s *BillingStore) IssueInvoices(ctx context.Context, year int, month time.Month, accountID string, now time.Time) ([]*callbridge.Invoice, error) {
	if month < 1 || month > 12 || year < 2000 || year > 9999 {
		return nil, callbridge.FieldError("month", "must be a month YYYY-MM")
	}
	if accountID != "" && !isUUID(accountID) {
		return nil, notFound("account")
	}
	if now.IsZero() {
		now = time.Now()
	}
	if _, err := s.RollupDirty(ctx); err != nil {
		return nil, err
	}
	period := fmt.Sprintf("%04d-%02d", year, int(month))
	first := time.Date(year, month, 1, 0, 0, 0, 0, time.UTC)
	next := first.AddDate(0, 1, 0)
	back := first.AddDate(0, -CorrectionMonths, 0)
	var accounts []string
	err := s.db.SelectContext(ctx, &accounts, `
		SELECT DISTINCT account_id FROM rollups
		WHERE day >= $1 AND day < $2 AND ($3 = '' OR account_id = $3::uuid)
		  AND account_id NOT IN (SELECT account_id FROM invoices WHERE period = $4)
		  AND account_id IN (SELECT id FROM accounts)
		ORDER BY account_id`, back.Format(time.DateOnly), next.Format(time.DateOnly), accountID, period)
	if err != nil {
		return nil, fmt.Errorf("postgres: invoices %s: %w", period, Error(err))
	}
	// Accounts are invoiced in batches, one transaction per batch: a
	// commit per invoice would make a month of many accounts wait on
	// disk flushes.
	const batch = 250
	var issued []*callbridge.Invoice
	for lo := 0; lo < len(accounts); lo += batch {
		var done []*callbridge.Invoice
		err := s.db.Tx(ctx, func(tx *Tx) error {
			done = done[:0]
			for _, a := range accounts[lo:min(lo+batch, len(accounts))] {
				inv, err := s.issue(ctx, tx, a, now, period, first, next, back)
				if err != nil {
					return fmt.Errorf("account %s: %w", a, err)
				}
				if inv != nil {
					done = append(done, inv)
				}
			}
			return nil
		})
		if err != nil {
			return issued, fmt.Errorf("postgres: invoices %s: %w", period, err)
		}
		issued = append(issued, done...)
	}
	return issued, nil
}

// issue issues one account's invoice, or nothing when it would be empty.
func (s *BillingStore) issue(ctx context.Context, tx *Tx, accountID string, now time.Time, period string, first, next, back time.Time) (*callbridge.Invoice, error) {
	var inv *callbridge.Invoice
	err := func() error {
		// Lock the account so two runs for one account queue up; the
		// second then finds the invoice issued.
		var currency string
		if err := tx.QueryRowContext(ctx, `SELECT currency FROM accounts WHERE id = $1 FOR UPDATE`, accountID).Scan(&currency); err != nil {
			return Error(err)
		}
		var exists bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM invoices WHERE account_id = $1 AND period = $2)`, accountID, period).Scan(&exists); err != nil || exists {
			return Error(err)
		}
		var lines []callbridge.InvoiceLine
		err := tx.SelectContext(ctx, &lines, `
			WITH r AS (
				SELECT to_char(day, 'YYYY-MM') AS period,
				       CASE WHEN description <> '' THEN description WHEN prefix <> '' THEN prefix ELSE 'Unrated' END AS destination,
				       sum(calls) AS calls, sum(answered) AS answered, sum(billed_ms) AS billed_ms, sum(sell) AS amount
				FROM rollups WHERE account_id = $1 AND day >= $2 AND day < $3
				GROUP BY 1, 2
			), i AS (
				SELECT period, destination, sum(calls) AS calls, sum(answered) AS answered,
				       sum(billed_ms) AS billed_ms, sum(amount) AS amount
				FROM invoice_lines WHERE account_id = $1 AND period >= $4 AND period <= $5
				GROUP BY 1, 2
			)
			SELECT period, destination,
			       coalesce(r.calls, 0) - coalesce(i.calls, 0) AS calls,
			       coalesce(r.answered, 0) - coalesce(i.answered, 0) AS answered,
			       coalesce(r.billed_ms, 0) - coalesce(i.billed_ms, 0) AS billed_ms,
			       coalesce(r.amount, 0) - coalesce(i.amount, 0) AS amount,
			       '' AS kind
			FROM r FULL JOIN i USING (period, destination)
			WHERE period = $5
			   OR coalesce(r.calls, 0) <> coalesce(i.calls, 0) OR coalesce(r.amount, 0) <> coalesce(i.amount, 0)
			   OR coalesce(r.billed_ms, 0) <> coalesce(i.billed_ms, 0) OR coalesce(r.answered, 0) <> coalesce(i.answered, 0)
			ORDER BY period DESC, destination`,
			accountID, back.Format(time.DateOnly), next.Format(time.DateOnly), back.Format("2006-01"), period)
		if err != nil {
			return Error(err)
		}
		if len(lines) == 0 {
			return nil
		}
		var subtotal int64
		for i := range lines {
			l := &lines[i]
			switch {
			case l.Period == period:
				l.Kind = callbridge.LineUsage
			case l.Amount < 0:
				l.Kind = callbridge.LineCredit
			default:
				l.Kind = callbridge.LineDebit
			}
			subtotal += l.Amount
		}
		p, err := profile(ctx, tx, accountID)
		if err != nil {
			return err
		}
		var prefix string
		inv = &callbridge.Invoice{
			AccountID: accountID, Issuer: p.Issuer, Period: period, Currency: currency,
			Subtotal: subtotal, TaxBPS: p.TaxBPS, TaxLabel: p.TaxLabel, Lines: lines,
		}
		inv.PeriodStart, inv.PeriodEnd = monthBounds(s.loc, first.Year(), first.Month())
		inv.DueAt = inv.PeriodEnd.AddDate(0, 0, int(p.PaymentDays))
		inv.IssuedAt = now.UTC().Truncate(time.Microsecond)
		inv.Tax = TaxOf(subtotal, p.TaxBPS)
		inv.Total = subtotal + inv.Tax
		if err := tx.QueryRowContext(ctx, `
			INSERT INTO invoice_issuers AS i (issuer, prefix, last_seq) VALUES ($1, upper($1), 1)
			ON CONFLICT (issuer) DO UPDATE SET last_seq = i.last_seq + 1
			RETURNING last_seq, prefix`, p.Issuer).Scan(&inv.Seq, &prefix); err != nil {
			return Error(err)
		}
		inv.Number = fmt.Sprintf("%s-%06d", prefix, inv.Seq)
		if err := tx.SelectContext(ctx, &inv.Days, `
			SELECT to_char(day, 'YYYY-MM-DD') AS day, sum(calls) AS calls, sum(sell) AS amount
			FROM rollups WHERE account_id = $1 AND day >= $2 AND day < $3 GROUP BY day ORDER BY day`,
			accountID, first.Format(time.DateOnly), next.Format(time.DateOnly)); err != nil {
			return Error(err)
		}
		daysJSON, err := json.Marshal(inv.Days)
		if err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `
			INSERT INTO invoices (account_id, issuer, seq, number, period, period_start, period_end, currency,
			                      issued_at, due_at, subtotal, tax_bps, tax_label, tax, total, days)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
			RETURNING id`,
			accountID, inv.Issuer, inv.Seq, inv.Number, period, inv.PeriodStart, inv.PeriodEnd, currency,
			inv.IssuedAt, inv.DueAt, inv.Subtotal, inv.TaxBPS, inv.TaxLabel, inv.Tax, inv.Total, daysJSON).Scan(&inv.ID); err != nil {
			return Error(err)
		}
		n := len(lines)
		kinds, periods, dests := make([]string, n), make([]string, n), make([]string, n)
		calls, answered, billed, amounts := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		for i, l := range lines {
			kinds[i], periods[i], dests[i] = l.Kind, l.Period, l.Destination
			calls[i], answered[i], billed[i], amounts[i] = l.Calls, l.Answered, l.BilledMS, l.Amount
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO invoice_lines (invoice_id, line, account_id, kind, period, destination, calls, answered, billed_ms, amount)
			SELECT $1, ord, $2, kind, period, destination, calls, answered, billed_ms, amount
			FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
			     WITH ORDINALITY AS l(kind, period, destination, calls, answered, billed_ms, amount, ord)`,
			inv.ID, accountID, pq.Array(kinds), pq.Array(periods), pq.Array(dests),
			pq.Array(calls), pq.Array(answered), pq.Array(billed), pq.Array(amounts))
		return Error(err)
	}()
	if err != nil {
		return nil, err
	}
	return inv, nil
}

// TaxOf returns subtotal × bps / 10000 rounded half away from zero,
// computed without overflow.
func TaxOf(subtotal, bps int64) int64 {
	p := new(big.Int).Mul(big.NewInt(subtotal), big.NewInt(bps))
	q, m := new(big.Int).QuoRem(p, big.NewInt(10000), new(big.Int))
	if new(big.Int).Abs(m).Cmp(big.NewInt(5000)) >= 0 {
		q.Add(q, big.NewInt(int64(p.Sign())))
	}
	return q.Int64()
}

const invoiceColumns = `id, account_id, issuer, seq, number, period, period_start, period_end, currency,
	issued_at, due_at, subtotal, tax_bps, tax_label, tax, total`

func utcInvoice(inv *callbridge.Invoice) {
	inv.PeriodStart, inv.PeriodEnd = inv.PeriodStart.UTC(), inv.PeriodEnd.UTC()
	inv.IssuedAt, inv.DueAt = inv.IssuedAt.UTC(), inv.DueAt.UTC()
}

// Invoices implements callbridge.BillingService.
func (s *BillingStore) Invoices(ctx context.Context, accountID string) ([]*callbridge.Invoice, error) {
	if !isUUID(accountID) {
		return nil, notFound("account")
	}
	invs := []*callbridge.Invoice{}
	if err := s.db.SelectContext(ctx, &invs, `SELECT `+invoiceColumns+` FROM invoices
		WHERE account_id = $1 ORDER BY period DESC LIMIT 240`, accountID); err != nil {
		return nil, fmt.Errorf("postgres: invoices: %w", Error(err))
	}
	for _, inv := range invs {
		utcInvoice(inv)
	}
	return invs, nil
}

// Invoice implements callbridge.BillingService.
func (s *BillingStore) Invoice(ctx context.Context, accountID, id string) (*callbridge.Invoice, error) {
	if !isUUID(accountID) || !isUUID(id) {
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
	if err := s.db.SelectContext(ctx, &inv.Lines, `SELECT kind, period, destination, calls, answered, billed_ms, amount
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
	if !isUUID(accountID) {
		return nil, notFound("account")
	}
	var key, desc string
	switch f.GroupBy {
	case callbridge.GroupByDay:
		key, desc = `to_char((start_at AT TIME ZONE $4)::date, 'YYYY-MM-DD')`, `''`
	case callbridge.GroupByDestination:
		key, desc = `sell_prefix`, `''`
	case callbridge.GroupByCarrier:
		key, desc = `gateway`, `''`
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
// daily report file: one row per account and destination and carrier,
// Key being "account_id/prefix/carrier".
func (s *BillingStore) DayUsage(ctx context.Context, day time.Time) ([]callbridge.UsageRow, error) {
	rows := []callbridge.UsageRow{}
	err := s.db.SelectContext(ctx, &rows, `
		SELECT account_id::text || '/' || prefix || '/' || carrier AS key, description, calls, answered,
		       billed_ms, sell, buy, sell - buy AS margin
		FROM rollups WHERE day = $1 ORDER BY account_id, prefix, carrier`, day.Format(time.DateOnly))
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
		coalesce(p.payment_days, 30) AS payment_days, p.low_balance, coalesce(p.low_balance_url, '') AS low_balance_url
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
	if !isUUID(accountID) {
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
	if !isUUID(p.AccountID) {
		return notFound("account")
	}
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO billing_profiles (account_id, issuer, tax_bps, tax_label, payment_days, low_balance, low_balance_url)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (account_id) DO UPDATE SET issuer = $2, tax_bps = $3, tax_label = $4, payment_days = $5,
			low_balance = $6, low_balance_url = $7`,
		p.AccountID, p.Issuer, p.TaxBPS, p.TaxLabel, p.PaymentDays, p.LowBalance, p.LowBalanceURL)
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
	if !isUUID(accountID) {
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
	if !isUUID(accountID) {
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
	if !isUUID(accountID) {
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
	if !isUUID(accountID) {
		return nil, false, notFound("account")
	}
	if !isUUID(callID) {
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
	if !isUUID(callID) {
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
