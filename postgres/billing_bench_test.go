package postgres_test

import (
	"context"
	"os"
	"strconv"
	"strings"
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

// genCDRs creates accounts accounts, three retail rate decks of 400
// destinations, and n CDRs in start order over [from, to), with
// generate_series in chunks straight into cdrs (the billing triggers run
// as they do for the CDR writer).
//
// The traffic is shaped like a real month, so rollups compress as they
// do in production: account sizes are skewed (the busiest accounts place
// most calls; the quietest still some), each account calls 10 to 200
// destinations of its own and most of its calls go to its first few, the
// carrier follows the destination (least-cost routing) with one call in
// ten failing over to a second carrier, 70 % of calls are answered and
// last three minutes on average, and prices are per started minute of
// the destination's rate.
func genCDRs(tb testing.TB, db *postgres.DB, accounts, n int, from, to time.Time) {
	tb.Helper()
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO accounts (name, currency) SELECT 'bench ' || i, 'EUR' FROM generate_series(1, $1::int) i`,
		`INSERT INTO rate_decks (account_id, name, currency, time_zone)
		SELECT id, 'retail ' || row_number() OVER (ORDER BY id), 'EUR', 'UTC' FROM accounts ORDER BY id LIMIT 3`,
		// 400 destinations: 20 countries, each whole and in 19 ranges.
		`CREATE TABLE bench_destinations AS
		SELECT k, cc[1 + k % 20] || CASE WHEN k / 20 = 0 THEN '' ELSE (k / 20 - 1)::text END AS prefix,
		       country[1 + k % 20] || CASE WHEN k / 20 = 0 THEN '' ELSE ' range ' || (k / 20 - 1) END AS description,
		       1000 + (k * 7919) % 250000 AS per_minute
		FROM generate_series(0, 399) k,
		     (SELECT '{49,33,44,39,34,31,41,43,48,420,7,86,91,61,1,81,82,55,52,27}'::text[] AS cc,
		             '{Germany,France,United Kingdom,Italy,Spain,Netherlands,Switzerland,Austria,Poland,Czechia,Russia,China,India,Australia,NANP,Japan,Korea,Brazil,Mexico,South Africa}'::text[] AS country) c`,
		`INSERT INTO rates (deck_id, prefix, description, per_minute)
		SELECT d.id, b.prefix, b.description, b.per_minute FROM rate_decks d, bench_destinations b`,
	} {
		var args []any
		if strings.Contains(q, "$1") {
			args = append(args, accounts)
		}
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			tb.Fatal(err)
		}
	}
	for m := from; m.Before(to); m = m.AddDate(0, 1, 0) {
		if _, err := db.ExecContext(ctx, `SELECT cdrs_ensure_partition($1)`, m); err != nil {
			tb.Fatal(err)
		}
	}
	const chunk = 1_000_000
	spanMS := to.Sub(from).Milliseconds()
	for lo := 1; lo <= n; lo += chunk {
		hi := min(lo+chunk-1, n)
		_, err := db.ExecContext(ctx, `
			WITH acc AS (SELECT array_agg(id ORDER BY id) AS ids FROM accounts),
			deck AS (SELECT array_agg(id::text ORDER BY id) AS ids FROM rate_decks),
			dest AS (SELECT array_agg(prefix ORDER BY k) AS prefix, array_agg(per_minute ORDER BY k) AS per_minute FROM bench_destinations),
			u AS (
				-- Uniform draws in [0, 1), independent per call.
				SELECT i, (hashint8extended(i, 1) & 9007199254740991)::float8 / 9007199254740992 AS u1,
				       (hashint8extended(i, 2) & 9007199254740991)::float8 / 9007199254740992 AS u2,
				       (hashint8extended(i, 3) & 9007199254740991)::float8 / 9007199254740992 AS u3,
				       (hashint8extended(i, 4) & 9007199254740991)::float8 / 9007199254740992 AS u4,
				       (hashint8extended(i, 5) & 9007199254740991)::float8 / 9007199254740992 AS u5,
				       (hashint8extended(i, 6) & 9007199254740991)::float8 / 9007199254740992 AS u6
				FROM generate_series($2::int, $3::int) i
			), a AS (
				SELECT u.*, floor(cardinality(acc.ids) * u1 * u1)::int AS a FROM u, acc
			), g AS (
				SELECT a.*, gen_random_uuid() AS uuid,
				       $1::timestamptz + floor((i - 1 + u6) * $5::float8 / $4::float8) * interval '1 millisecond' AS start_at,
				       -- The account's j-th destination; j skewed to its first few.
				       ((hashint4(a) & 2147483647) + 13 * floor((10 + (hashint4(a + 7) & 2147483647) % 191) * u2 * u2 * u2)::int) % 400 AS k,
				       CASE WHEN u4 < 0.7 THEN 1000 + floor(540000 * u5 * u5)::bigint ELSE 0 END AS bill_ms
				FROM a
			), c AS (
				SELECT g.*, acc.ids[1 + a] AS account_id, deck.ids[1 + a % 3] AS deck_id, dest.prefix[1 + k] AS prefix,
				       'carrier' || CASE WHEN u3 < 0.1 THEN (k + 1) % 6 ELSE k % 6 END AS carrier,
				       (bill_ms + 59999) / 60000 * dest.per_minute[1 + k] AS sell
				FROM g, acc, deck, dest
			), keys AS (INSERT INTO cdr_keys SELECT uuid, start_at FROM c RETURNING uuid)
			INSERT INTO cdrs (uuid, start_at, leg, account_id, direction, caller, callee, presented, gateway, node,
			                  answer_at, end_at, duration_ms, bill_ms, hangup_cause, disposition,
			                  sell_micros, sell_currency, sell_deck_id, sell_deck_version, sell_prefix,
			                  buy_micros, buy_currency, buy_prefix)
			SELECT uuid, start_at, 'a', account_id, 'outbound', '4930' || lpad(a::text, 6, '0'),
			       prefix || lpad(((hashint8extended(i, 7) & 2147483647) % 10000000)::text, 7, '0'), '4930' || lpad(a::text, 6, '0'),
			       carrier, 'fs1', CASE WHEN bill_ms > 0 THEN start_at + interval '6 seconds' END,
			       start_at + interval '6 seconds' + bill_ms * interval '1 millisecond', bill_ms + 6000, bill_ms,
			       CASE WHEN bill_ms > 0 THEN 'NORMAL_CLEARING' ELSE 'NO_ANSWER' END,
			       CASE WHEN bill_ms > 0 THEN 'answered' ELSE 'no_answer' END,
			       sell, 'EUR', deck_id, 1, prefix, sell * 6 / 10, 'EUR', prefix
			FROM c`, from, lo, hi, n, spanMS)
		if err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, `VACUUM ANALYZE`); err != nil {
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
	if _, err := s.RollupDirty(ctx, ""); err != nil {
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
