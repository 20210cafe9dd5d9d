package billing

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"callbridge"
	"callbridge/postgres/internal/pg"

	"github.com/lib/pq"
)

// rollupLock serialises rollup recomputations inside their transactions
// ("cbrollup"), whichever job or command starts them.
const rollupLock = 0x6362726f6c6c7570

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
func rollupTx(ctx context.Context, tx *pg.Tx, zone string) error {
	_, err := tx.ExecContext(ctx, `SELECT set_config('work_mem', $1, true), set_config('synchronous_commit', 'off', true),
		set_config('callbridge.billing_zone', $3, true), pg_advisory_xact_lock($2)`, billingWorkMem, int64(rollupLock), zone)
	return pg.Error(err)
}

// RollupDirty recomputes the rollups of every local day whose CDRs were
// inserted or re-priced since it was last rolled up, and returns how many
// rollup rows it changed. A day changed while it runs stays marked and is
// picked up by the next call. Marks are taken a month at a time, in day
// order, one transaction per month. accountID, when set, limits it to
// that account's days: other accounts' rollups are left as they are.
func (s *Store) RollupDirty(ctx context.Context, accountID string) (int64, error) {
	var account any // NULL: every account
	if accountID != "" {
		if !callbridge.IsUUID(accountID) {
			return 0, pg.NotFound("account")
		}
		account = accountID
	}
	var total int64
	from := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	for {
		var first sql.NullTime
		if err := s.db.QueryRowContext(ctx, `SELECT min(day) FROM rollup_dirty WHERE day >= $1 AND ($2::uuid IS NULL OR account_id = $2::uuid)`,
			from.Format(time.DateOnly), account).Scan(&first); err != nil {
			return total, fmt.Errorf("postgres: rollup: %w", pg.Error(err))
		}
		if !first.Valid {
			return total, nil
		}
		lo := first.Time.UTC()
		from = lo.AddDate(0, 0, rollupBatchDays)
		err := s.db.Tx(ctx, func(tx *pg.Tx) error {
			if err := rollupTx(ctx, tx, s.loc.String()); err != nil {
				return err
			}
			// The marks as they stand now; a mark whose generation
			// moves before commit is not cleared.
			if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE rollup_marks ON COMMIT DROP AS
				SELECT account_id, day, gen FROM rollup_dirty WHERE day >= $1 AND day < $2 AND ($3::uuid IS NULL OR account_id = $3::uuid)`,
				lo.Format(time.DateOnly), from.Format(time.DateOnly), account); err != nil {
				return pg.Error(err)
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
				return pg.Error(err)
			}
			n, err := s.recompute(ctx, tx)
			if err != nil {
				return err
			}
			total += n
			_, err = tx.ExecContext(ctx, `DELETE FROM rollup_dirty d USING rollup_marks m
				WHERE d.account_id = m.account_id AND d.day = m.day AND d.gen = m.gen`)
			return pg.Error(err)
		})
		if err != nil {
			return total, fmt.Errorf("postgres: rollup: %w", err)
		}
	}
}

// RollupDay recomputes the rollups of one local day for one account, or
// for every account with CDRs or rollups that day when accountID is "",
// whether or not they are marked. It returns how many rows it changed.
func (s *Store) RollupDay(ctx context.Context, day time.Time, accountID string) (int64, error) {
	if accountID != "" && !callbridge.IsUUID(accountID) {
		return 0, pg.NotFound("account")
	}
	d := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC)
	lo, hi := dayBounds(s.loc, d.Year(), d.Month(), d.Day())
	var n int64
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		if err := rollupTx(ctx, tx, s.loc.String()); err != nil {
			return err
		}
		if accountID != "" {
			if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE rollup_targets ON COMMIT DROP AS
				SELECT $1::uuid AS account_id, $2::date AS day, $3::timestamptz AS lo, $4::timestamptz AS hi`,
				accountID, d.Format(time.DateOnly), lo, hi); err != nil {
				return pg.Error(err)
			}
			var err error
			n, err = s.recompute(ctx, tx)
			return err
		}
		// Every account: one pass over the day's CDRs, and the day's
		// rollups of accounts without CDRs left are deleted.
		var fresh bool
		if err := tx.QueryRowContext(ctx, `SELECT NOT EXISTS (SELECT 1 FROM rollups WHERE day = $1)`, d.Format(time.DateOnly)).Scan(&fresh); err != nil {
			return pg.Error(err)
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
func (s *Store) recompute(ctx context.Context, tx *pg.Tx) (int64, error) {
	if _, err := tx.ExecContext(ctx, `ANALYZE rollup_targets`); err != nil {
		return 0, pg.Error(err)
	}
	var days []struct {
		Day     time.Time `db:"day"`
		Targets int64     `db:"targets"`
		Lo      time.Time `db:"lo"`
		Hi      time.Time `db:"hi"`
	}
	if err := tx.SelectContext(ctx, &days, `SELECT day, count(*) AS targets, min(lo) AS lo, max(hi) AS hi
		FROM rollup_targets GROUP BY day ORDER BY day`); err != nil {
		return 0, pg.Error(err)
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
			return total, pg.Error(err)
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
func writeRollups(ctx context.Context, tx *pg.Tx, fresh bool, agg, scope string, args ...any) (int64, error) {
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
		return 0, pg.Error(err)
	}
	if clash.account.Valid {
		// The transaction rolls back: nothing of this run is kept.
		return 0, zoneError(clash.account.String, clash.month.Time, clash.zone.String, zone)
	}
	return n, nil
}
