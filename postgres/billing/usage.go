package billing

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"callbridge"
	"callbridge/postgres/internal/pg"
)

// Usage implements callbridge.BillingService. It reads the CDRs
// themselves, so it is exact whether or not the rollups are current.
func (s *Store) Usage(ctx context.Context, accountID string, f callbridge.UsageFilter) (*callbridge.UsageReport, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if !callbridge.IsUUID(accountID) {
		return nil, pg.NotFound("account")
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
			return nil, pg.NotFound("account")
		}
		return nil, fmt.Errorf("postgres: usage: %w", pg.Error(err))
	}
	q := `SELECT ` + key + ` AS key, ` + desc + ` AS description, count(*) AS calls,
		count(*) FILTER (WHERE answer_at IS NOT NULL) AS answered,
		coalesce(sum(bill_ms), 0) AS billed_ms, coalesce(sum(sell_micros), 0) AS sell,
		coalesce(sum(buy_micros), 0) AS buy, coalesce(sum(sell_micros) - sum(buy_micros), 0) AS margin
		FROM cdrs WHERE account_id = $1 AND start_at >= $2 AND start_at < $3 AND $4 <> ''
		GROUP BY 1, 2 ORDER BY 1, 2`
	if err := s.db.SelectContext(ctx, &rep.Rows, q, accountID, f.From, f.To, s.loc.String()); err != nil {
		return nil, fmt.Errorf("postgres: usage: %w", pg.Error(err))
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
	if f.GroupBy == callbridge.GroupByCarrier {
		// Answer-seizure ratios of the gateways, and of all of them.
		var carried callbridge.UsageRow
		for i := range rep.Rows {
			if rep.Rows[i].Key == "" {
				continue
			}
			rep.Rows[i].SetASR()
			carried.Calls += rep.Rows[i].Calls
			carried.Answered += rep.Rows[i].Answered
		}
		carried.SetASR()
		rep.Total.Attempts, rep.Total.ASR = carried.Attempts, carried.ASR
	}
	return rep, nil
}

// DayUsage returns every account's rollups of one local day, for the
// daily report file: one row per account, destination, carrier and line,
// Key being "account_id/prefix/carrier", then "/line" for a line other
// than rated calls (rollupLineSQL).
func (s *Store) DayUsage(ctx context.Context, day time.Time) ([]callbridge.UsageRow, error) {
	rows := []callbridge.UsageRow{}
	err := s.db.SelectContext(ctx, &rows, `
		SELECT account_id::text || '/' || prefix || '/' || carrier || CASE WHEN line <> '' THEN '/' || line ELSE '' END AS key,
		       description, calls, answered,
		       billed_ms, sell, buy, sell - buy AS margin
		FROM rollups WHERE day = $1 ORDER BY account_id, prefix, carrier, line`, day.Format(time.DateOnly))
	if err != nil {
		return nil, fmt.Errorf("postgres: day usage: %w", pg.Error(err))
	}
	return rows, nil
}

// UnratedCalls implements callbridge.BillingService.
func (s *Store) UnratedCalls(ctx context.Context, year int, month time.Month, accountID string) ([]callbridge.UnratedCall, error) {
	if year < 2000 || year > 9999 || month < 1 || month > 12 {
		return nil, callbridge.FieldError("month", "must be a month YYYY-MM")
	}
	var account any // NULL: every account
	if accountID != "" {
		if !callbridge.IsUUID(accountID) {
			return nil, pg.NotFound("account")
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
		return nil, fmt.Errorf("postgres: unrated calls: %w", pg.Error(err))
	}
	for i := range calls {
		calls[i].StartAt = calls[i].StartAt.UTC()
	}
	return calls, nil
}
