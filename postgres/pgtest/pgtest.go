// Package pgtest gives tests a real, migrated, throwaway PostgreSQL
// database. It never skips: a test that cannot reach the server fails, so
// `make test` (which provides a server) cannot pass without the database.
//
// The server is CALLBRIDGE_TEST_DATABASE_URL, else DATABASE_URL, else
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable. Each call
// creates a new database from a template that holds the current migrations
// (built once per migration set, under an advisory lock so parallel test
// binaries share it), and drops it when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"callbridge/postgres"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // driver
)

// templateLock serialises template creation across test processes.
const templateLock = 0x6362746d706c // "cbtmpl"

// ServerURL returns the URL of the server tests use (its maintenance DB).
func ServerURL() string {
	for _, k := range []string{"CALLBRIDGE_TEST_DATABASE_URL", "DATABASE_URL"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// New returns a connection pool to a fresh migrated database, closed and
// dropped when tb ends.
func New(tb testing.TB) *postgres.DB {
	tb.Helper()
	u := URL(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := postgres.Open(ctx, u, nil)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// URL creates a fresh migrated database and returns its URL; the database
// is dropped when tb ends (after cleanups registered later, such as closing
// pools, have run).
func URL(tb testing.TB) string {
	tb.Helper()
	u, drop, err := Create(context.Background())
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(drop)
	return u
}

// Create makes a fresh migrated database and returns its URL and a
// function that drops it, for code that has no testing.TB (a TestMain
// sharing one database between tests).
func Create(ctx context.Context) (url string, drop func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	admin, err := sqlx.Open("postgres", ServerURL())
	if err != nil {
		return "", nil, err
	}
	defer admin.Close()
	if err := admin.PingContext(ctx); err != nil {
		return "", nil, fmt.Errorf("PostgreSQL at %s is unreachable (run tests with `make test`, which provides one): %w", redact(ServerURL()), err)
	}
	tpl, err := template(ctx, admin)
	if err != nil {
		return "", nil, err
	}
	name := "cbtest_" + randomHex(8)
	if _, err := admin.ExecContext(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, name, tpl)); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	drop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := sqlx.Open("postgres", ServerURL())
		if err != nil {
			return
		}
		defer admin.Close()
		admin.ExecContext(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name))
	}
	return withDatabase(ServerURL(), name), drop, nil
}

// template returns the name of a database holding the current migrations,
// creating it if needed.
func template(ctx context.Context, admin *sqlx.DB) (string, error) {
	ms, err := postgres.Migrations()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, m := range ms {
		fmt.Fprintf(h, "%d\x00%s\x00%s\x00", m.Version, m.Name, m.SQL)
	}
	name := "cbtpl_" + hex.EncodeToString(h.Sum(nil))[:16]

	conn, err := admin.Connx(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, int64(templateLock)); err != nil {
		return "", err
	}
	defer conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1)`, int64(templateLock))
	var exists bool
	if err := conn.GetContext(ctx, &exists, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`, name); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	conn.ExecContext(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name))
	if _, err := conn.ExecContext(ctx, fmt.Sprintf(`CREATE DATABASE %s`, name)); err != nil {
		return "", fmt.Errorf("create template: %w", err)
	}
	db, err := postgres.Open(ctx, withDatabase(ServerURL(), name), nil)
	if err != nil {
		return "", err
	}
	_, err = db.Migrate(ctx)
	db.Close()
	if err != nil {
		return "", fmt.Errorf("migrate template: %w", err)
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf(`ALTER DATABASE %s WITH IS_TEMPLATE true`, name)); err != nil {
		return "", err
	}
	return name, nil
}

func withDatabase(raw, db string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = "/" + db
	return u.String()
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
