package postgres_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"callbridge/postgres"
	"callbridge/postgres/pgtest"
)

// benchSize reads a benchmark size from env, so that `make bench` can run
// the full size (CALLBRIDGE_BENCH_ROLLUP_CDRS=1000000,
// CALLBRIDGE_BENCH_INVOICE_CDRS=10000000) while `go test` stays small.
func benchSize(tb testing.TB, env string, def int) int {
	if v := os.Getenv(env); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			tb.Fatalf("%s=%q: want a positive integer", env, v)
		}
		return n
	}
	return def
}

// genCDRs creates accounts accounts and n CDRs spread over [from, to) with
// generate_series, in chunks, straight into cdrs (the billing triggers run
// as they do for the CDR writer).
func genCDRs(tb testing.TB, db *postgres.DB, accounts, n int, from, to time.Time) {
	tb.Helper()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `INSERT INTO accounts (name, currency)
		SELECT 'bench ' || i, 'EUR' FROM generate_series(1, $1) i`, accounts); err != nil {
		tb.Fatal(err)
	}
	for m := from; m.Before(to); m = m.AddDate(0, 1, 0) {
		if _, err := db.ExecContext(ctx, `SELECT cdrs_ensure_partition($1)`, m); err != nil {
			tb.Fatal(err)
		}
	}
	const chunk = 500_000
	span := int64(to.Sub(from) / time.Second)
	for lo := 1; lo <= n; lo += chunk {
		hi := min(lo+chunk-1, n)
		_, err := db.ExecContext(ctx, `
			WITH acc AS (SELECT array_agg(id ORDER BY id) AS ids FROM accounts),
			g AS (
				SELECT gen_random_uuid() AS uuid, i,
				       $1::timestamptz + ((hashint8(i) & 9223372036854775807) % $4) * interval '1 second' AS start_at,
				       acc.ids[1 + (hashint4(i) & 2147483647) % cardinality(acc.ids)] AS account_id,
				       CASE WHEN i % 4 = 0 THEN 0 ELSE (hashint4(i * 31) & 2147483647) % 900000 END AS bill_ms
				FROM generate_series($2::int, $3::int) i, acc
			), k AS (INSERT INTO cdr_keys SELECT uuid, start_at FROM g RETURNING uuid)
			INSERT INTO cdrs (uuid, start_at, leg, account_id, direction, caller, callee, presented, gateway, node,
			                  answer_at, end_at, duration_ms, bill_ms, hangup_cause, disposition,
			                  sell_micros, sell_prefix, buy_micros)
			SELECT uuid, start_at, 'a', account_id, 'outbound', '4930111', '49' || (i % 40), '4930111', 'carrier' || (i % 4), 'n',
			       CASE WHEN bill_ms > 0 THEN start_at END, start_at + bill_ms * interval '1 millisecond', bill_ms, bill_ms,
			       'NORMAL_CLEARING', CASE WHEN bill_ms > 0 THEN 'answered' ELSE 'no_answer' END,
			       bill_ms / 6, '49' || (i % 40), bill_ms / 15
			FROM g`, from, lo, hi, span)
		if err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, `ANALYZE`); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkDailyRollup recomputes one day's rollups for every account
// from CDRs (CALLBRIDGE_BENCH_ROLLUP_CDRS, default 20000, over 1000
// accounts). The first, incremental rollup after loading is reported as
// dirty_s.
func BenchmarkDailyRollup(b *testing.B) {
	n := benchSize(b, "CALLBRIDGE_BENCH_ROLLUP_CDRS", 20_000)
	db := pgtest.New(b)
	ctx := context.Background()
	day := time.Date(2026, 10, 14, 0, 0, 0, 0, time.UTC)
	genCDRs(b, db, 1000, n, day, day.AddDate(0, 0, 1))
	s := postgres.NewBillingStore(db, time.UTC, "bench")
	start := time.Now()
	if _, err := s.RollupDirty(ctx); err != nil {
		b.Fatal(err)
	}
	dirty := time.Since(start)
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.RollupDay(ctx, day, ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(dirty.Seconds(), "dirty_s")
	b.ReportMetric(float64(n), "cdrs")
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "cdrs/s")
}

// BenchmarkMonthlyInvoice closes a month from raw CDRs: every day rolled
// up from scratch, then one invoice per account
// (CALLBRIDGE_BENCH_INVOICE_CDRS, default 100000, over
// CALLBRIDGE_BENCH_ACCOUNTS, default 1000, accounts). Each iteration
// starts from empty rollups and no invoices.
func BenchmarkMonthlyInvoice(b *testing.B) {
	n := benchSize(b, "CALLBRIDGE_BENCH_INVOICE_CDRS", 100_000)
	accounts := benchSize(b, "CALLBRIDGE_BENCH_ACCOUNTS", 1000)
	db := pgtest.New(b)
	ctx := context.Background()
	from := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	genCDRs(b, db, accounts, n, from, from.AddDate(0, 1, 0))
	s := postgres.NewBillingStore(db, time.UTC, "bench")
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		// TRUNCATE bypasses the row triggers that keep issued invoices
		// immutable; only a benchmark may start the month over.
		if _, err := db.ExecContext(ctx, `TRUNCATE invoice_lines, invoices, rollups, rollup_dirty;
			UPDATE invoice_issuers SET last_seq = 0;
			INSERT INTO rollup_dirty (account_id, day)
			SELECT DISTINCT account_id, (start_at AT TIME ZONE 'UTC')::date FROM cdrs WHERE account_id IS NOT NULL`); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		invs, err := s.IssueInvoices(ctx, 2026, time.October, "", time.Time{})
		if err != nil {
			b.Fatal(err)
		}
		if len(invs) != accounts {
			b.Fatalf("%d invoices, want %d", len(invs), accounts)
		}
	}
	b.ReportMetric(float64(n), "cdrs")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/month")
}
