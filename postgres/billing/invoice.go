package billing

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"callbridge"
	"callbridge/postgres/internal/pg"

	"github.com/lib/pq"
)

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
func (s *Store) IssueInvoices(ctx context.Context, year int, month time.Month, accountID string, now time.Time) ([]*callbridge.Invoice, error) {
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
func (s *Store) DraftInvoices(ctx context.Context, year int, month time.Month, accountID string, now time.Time) ([]*callbridge.Invoice, error) {
	if month < 1 || month > 12 || year < 2000 || year > 9999 {
		return nil, callbridge.FieldError("month", "must be a month YYYY-MM")
	}
	if now.IsZero() {
		now = time.Now()
	}
	return s.issue(ctx, year, month, accountID, now, true)
}

func (s *Store) issue(ctx context.Context, year int, month time.Month, accountID string, now time.Time, draft bool) ([]*callbridge.Invoice, error) {
	var account any // NULL: every account
	if accountID != "" {
		if !callbridge.IsUUID(accountID) {
			return nil, pg.NotFound("account")
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
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		issued = nil
		// Runs queue up behind each other, and no rollup changes while
		// the lines and the daily usage are read.
		if _, err := tx.ExecContext(ctx, `SELECT set_config('work_mem', $1, true), pg_advisory_xact_lock($2), pg_advisory_xact_lock($3)`,
			billingWorkMem, int64(invoiceLock), int64(rollupLock)); err != nil {
			return pg.Error(err)
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
			return pg.Error(err)
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
			return pg.Error(err)
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
			return pg.Error(err)
		}
		if _, err := tx.ExecContext(ctx, `ANALYZE invoice_accounts, invoice_months`); err != nil {
			return pg.Error(err)
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
			return pg.Error(err)
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
			return pg.Error(err)
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
			return pg.Error(err)
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
			return pg.Error(err)
		}
		byID := map[string]*callbridge.Invoice{}
		for rows.Next() {
			var row struct {
				callbridge.Invoice
				DaysJSON []byte `db:"days"`
			}
			if err := rows.StructScan(&row); err != nil {
				rows.Close()
				return pg.Error(err)
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
			return pg.Error(err)
		}
		if err := rows.Err(); err != nil {
			return pg.Error(err)
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO invoice_lines (invoice_id, line, account_id, kind, period, destination, calls, answered, billed_ms, amount, amount_minor)
			SELECT d.id, l.line, l.account_id, l.kind, l.period, l.destination, l.calls, l.answered, l.billed_ms, l.amount, l.amount_minor
			FROM invoice_new_lines l
			JOIN invoice_docs d ON d.account_id = l.account_id AND d.kind = l.doc_kind AND d.period = l.doc_period
			ORDER BY 1, 2`); err != nil {
			return pg.Error(err)
		}
		// The compared months now equal what is billed for them.
		if _, err := tx.ExecContext(ctx, `DELETE FROM invoice_recheck r USING invoice_months m
			WHERE r.account_id = m.account_id AND r.month = m.month`); err != nil {
			return pg.Error(err)
		}
		lrows, err := tx.QueryxContext(ctx, `SELECT d.id AS doc_id, l.kind, l.period, l.destination, l.calls, l.answered,
			       l.billed_ms, l.amount, l.amount_minor
			FROM invoice_new_lines l
			JOIN invoice_docs d ON d.account_id = l.account_id AND d.kind = l.doc_kind AND d.period = l.doc_period
			ORDER BY d.id, l.line`)
		if err != nil {
			return pg.Error(err)
		}
		defer lrows.Close()
		for lrows.Next() {
			var l struct {
				DocID string `db:"doc_id"`
				callbridge.InvoiceLine
			}
			if err := lrows.StructScan(&l); err != nil {
				return pg.Error(err)
			}
			inv := byID[l.DocID]
			if inv == nil {
				return fmt.Errorf("line of document %s that was not issued", l.DocID)
			}
			inv.Lines = append(inv.Lines, l.InvoiceLine)
		}
		if err := lrows.Err(); err != nil {
			return pg.Error(err)
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
func zoneClash(ctx context.Context, tx *pg.Tx, zone, months string) error {
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
		return pg.Error(err)
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
func (s *Store) Invoices(ctx context.Context, accountID string) ([]*callbridge.Invoice, error) {
	if !callbridge.IsUUID(accountID) {
		return nil, pg.NotFound("account")
	}
	invs := []*callbridge.Invoice{}
	if err := s.db.SelectContext(ctx, &invs, `SELECT `+invoiceColumns+` FROM invoices
		WHERE account_id = $1 ORDER BY issued_at DESC, kind DESC, period DESC LIMIT 240`, accountID); err != nil {
		return nil, fmt.Errorf("postgres: invoices: %w", pg.Error(err))
	}
	for _, inv := range invs {
		utcInvoice(inv)
	}
	return invs, nil
}

// Invoice implements callbridge.BillingService.
func (s *Store) Invoice(ctx context.Context, accountID, id string) (*callbridge.Invoice, error) {
	if !callbridge.IsUUID(accountID) || !callbridge.IsUUID(id) {
		return nil, pg.NotFound("invoice")
	}
	var row struct {
		callbridge.Invoice
		DaysJSON []byte `db:"days"`
	}
	err := s.db.GetContext(ctx, &row, `SELECT `+invoiceColumns+`, days FROM invoices WHERE id = $1 AND account_id = $2`, id, accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, pg.NotFound("invoice")
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: invoice: %w", pg.Error(err))
	}
	inv := row.Invoice
	utcInvoice(&inv)
	if err := json.Unmarshal(row.DaysJSON, &inv.Days); err != nil {
		return nil, fmt.Errorf("postgres: invoice %s days: %w", id, err)
	}
	if err := s.db.SelectContext(ctx, &inv.Lines, `SELECT kind, period, destination, calls, answered, billed_ms, amount, amount_minor
		FROM invoice_lines WHERE invoice_id = $1 ORDER BY line`, id); err != nil {
		return nil, fmt.Errorf("postgres: invoice lines: %w", pg.Error(err))
	}
	return &inv, nil
}
