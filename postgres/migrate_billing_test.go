package postgres_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"callbridge/postgres"
	"callbridge/postgres/pgtest"
)

// legacySchema returns a connection to a fresh schema holding the
// migrations before version from, an exec that fails the test on error,
// and the migrations from..to, for the test to apply once it has stored
// what existed before them.
func legacySchema(t *testing.T, from, to int) (*sql.Conn, func(string), []postgres.Migration) {
	t.Helper()
	db := pgtest.New(t)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	exec := func(q string) {
		t.Helper()
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%.80s: %v", q, err)
		}
	}
	exec(`CREATE SCHEMA legacy`)
	exec(`SET search_path = legacy`)
	ms, err := postgres.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var later []postgres.Migration
	for _, m := range ms {
		switch {
		case m.Version < from:
			exec(m.SQL)
		case m.Version <= to:
			later = append(later, m)
		}
	}
	return conn, exec, later
}

// TestInvoiceMoneyMigrationKeepsIssuedInvoices applies 0015 and 0016 to
// a schema holding invoices issued before them, one of them negative:
// they keep their amounts as exponent 6 (micro-units, what they billed),
// stay immutable, and new negative invoices are refused.
func TestInvoiceMoneyMigrationKeepsIssuedInvoices(t *testing.T) {
	ctx := context.Background()
	conn, exec, later := legacySchema(t, 15, 16)
	exec(`INSERT INTO accounts (id, name, currency) VALUES ('11111111-1111-4111-8111-111111111111', 'legacy', 'EUR')`)
	exec(`INSERT INTO invoices (id, account_id, issuer, seq, number, period, period_start, period_end, currency, due_at,
		subtotal, tax_bps, tax_label, tax, total) VALUES
		('22222222-2222-4222-8222-222222222222', '11111111-1111-4111-8111-111111111111', 'default', 1, 'CB-000001', '2026-09',
		 '2026-09-01', '2026-10-01', 'EUR', '2026-10-31', 155599769, 1900, 'VAT', 29563956, 185163725),
		('33333333-3333-4333-8333-333333333333', '11111111-1111-4111-8111-111111111111', 'default', 2, 'CB-000002', '2026-10',
		 '2026-10-01', '2026-11-01', 'EUR', '2026-11-30', -86112473, 1900, 'VAT', -16361370, -102473843)`)
	exec(`INSERT INTO invoice_lines VALUES
		('22222222-2222-4222-8222-222222222222', 1, '11111111-1111-4111-8111-111111111111', 'usage', '2026-09', 'x', 1, 1, 1, 155599769),
		('33333333-3333-4333-8333-333333333333', 1, '11111111-1111-4111-8111-111111111111', 'credit', '2026-09', 'x', 0, 0, 0, -86112473)`)
	if len(later) != 2 {
		t.Fatalf("migrations 15 and 16: found %d", len(later))
	}
	for _, m := range later {
		exec(m.SQL)
	}
	var got []string
	rows, err := conn.QueryContext(ctx, `SELECT i.number || ' ' || i.kind || ' ' || i.exponent || ' ' || i.exact || ' ' || i.total || ' ' || l.amount_minor
		FROM invoices i JOIN invoice_lines l ON l.invoice_id = i.id ORDER BY i.number`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		got = append(got, s)
	}
	rows.Close()
	if want := "CB-000001 invoice 6 155599769 185163725 155599769|CB-000002 invoice 6 -86112473 -102473843 -86112473"; strings.Join(got, "|") != want {
		t.Errorf("migrated invoices %q, want %q", strings.Join(got, "|"), want)
	}
	if _, err := conn.ExecContext(ctx, `UPDATE invoices SET total = 0`); err == nil {
		t.Error("issued invoices are mutable after the migration")
	}
	if _, err := conn.ExecContext(ctx, `INSERT INTO invoices (account_id, issuer, seq, number, period, period_start, period_end,
		currency, exponent, due_at, exact, subtotal, tax_bps, tax_label, tax, total)
		VALUES ('11111111-1111-4111-8111-111111111111', 'default', 3, 'CB-000003', '2026-11', '2026-11-01', '2026-12-01',
		'EUR', 2, '2026-12-31', -100, -1, 0, '', 0, -1)`); err == nil {
		t.Error("a negative invoice was stored")
	}
}

// TestLineMigrationMarksPrefixlessRollups applies 0017 to a schema whose
// rollups mixed default-rate and unrated calls in prefix-less rows: those
// days are marked for the rollup to recompute into separate lines, the
// other rollups stay as they are, and issued invoices gain an empty
// customer without becoming mutable.
func TestLineMigrationMarksPrefixlessRollups(t *testing.T) {
	ctx := context.Background()
	conn, exec, m17 := legacySchema(t, 17, 17)
	if len(m17) != 1 {
		t.Fatalf("migration 17: found %d", len(m17))
	}
	exec(`INSERT INTO accounts (id, name, currency) VALUES ('11111111-1111-4111-8111-111111111111', 'legacy', 'EUR')`)
	exec(`INSERT INTO rollups (account_id, day, prefix, description, carrier, calls, answered, billed_ms, sell, buy) VALUES
		('11111111-1111-4111-8111-111111111111', '2026-10-05', '', '', 'c', 3, 3, 180000, 12314800, 0),
		('11111111-1111-4111-8111-111111111111', '2026-10-06', '4930', 'Berlin', 'c', 1, 1, 60000, 1000, 0)`)
	exec(`INSERT INTO invoices (id, account_id, issuer, seq, number, period, period_start, period_end, currency, exponent, due_at,
		exact, subtotal, tax_bps, tax_label, tax, total) VALUES
		('22222222-2222-4222-8222-222222222222', '11111111-1111-4111-8111-111111111111', 'default', 1, 'CB-000001', '2026-09',
		 '2026-09-01', '2026-10-01', 'EUR', 2, '2026-10-31', 1000000, 100, 0, '', 0, 100)`)
	exec(m17[0].SQL)
	var dirty, lines string
	if err := conn.QueryRowContext(ctx, `SELECT string_agg(day::text, ',' ORDER BY day) FROM rollup_dirty`).Scan(&dirty); err != nil {
		t.Fatal(err)
	}
	if dirty != "2026-10-05" {
		t.Errorf("days marked for a rollup: %q, want the prefix-less day 2026-10-05 only", dirty)
	}
	if err := conn.QueryRowContext(ctx, `SELECT string_agg(prefix || ':' || line, ',' ORDER BY day) FROM rollups`).Scan(&lines); err != nil {
		t.Fatal(err)
	}
	if lines != ":,4930:" {
		t.Errorf("rollup lines %q, want both rows kept with line ''", lines)
	}
	var name string
	var days int64
	if err := conn.QueryRowContext(ctx, `SELECT customer_name, payment_days FROM invoices`).Scan(&name, &days); err != nil || name != "" || days != 0 {
		t.Errorf("issued invoice customer %q, %d days, %v; want empty", name, days, err)
	}
	if _, err := conn.ExecContext(ctx, `UPDATE invoices SET customer_name = 'x'`); err == nil {
		t.Error("issued invoices are mutable after the migration")
	}
}
