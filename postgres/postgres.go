// Package postgres stores callbridge's state in PostgreSQL. It and its
// subpackages are the only packages that import sqlx and lib/pq: billing,
// binding, cdr, ratedeck and routeplan store those aggregates, internal/pg
// holds the pool and the error mapping they share, and this package opens
// the database, migrates it, stores accounts, callbacks, webhooks and
// gateway slots, and builds the subpackages' services. It maps database errors to
// *callbridge.Error codes so callers never see driver errors; it holds no
// state beyond caches that the database can always rebuild.
package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"callbridge/postgres/internal/pg"
	schema "callbridge/sql"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// migrateLock is the advisory-lock key that serialises migrations across
// processes ("cbmigrat" as a number, so it is recognisable in pg_locks).
const migrateLock = 0x63626d6967726174

// DB is a connection pool to callbridge's database. The services of this
// package and its subpackages are built on it.
type DB struct {
	// DB is the pool, for statements of callers' own: tools and tests.
	// The services use the same pool through sqlx, which stays inside
	// postgres.
	*sql.DB
	URL    string
	Logger *slog.Logger
	pg     *pg.DB
}

// Open connects to the database at url and checks that it answers.
func Open(ctx context.Context, url string, logger *slog.Logger) (*DB, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c, err := pq.NewConnector(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	db := sqlx.NewDb(sql.OpenDB(pg.Connector{Connector: c}), "postgres")
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: ping: %w", err)
	}
	return &DB{DB: db.DB, URL: url, Logger: logger, pg: &pg.DB{DB: db, URL: url, Logger: logger}}, nil
}

// Migration is one embedded schema file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(schema.FS, ".")
	if err != nil {
		return nil, fmt.Errorf("postgres: read migrations: %w", err)
	}
	var ms []Migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("postgres: migration %q: name must be NNNN_name.sql", name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("postgres: migrations %q and %q share version %d", prev, name, v)
		}
		seen[v] = name
		b, err := fs.ReadFile(schema.FS, name)
		if err != nil {
			return nil, fmt.Errorf("postgres: read %s: %w", name, err)
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// Migrate applies every embedded migration not yet recorded in
// schema_migrations, in version order, each in its own transaction. An
// advisory lock makes concurrent calls from several processes safe: the
// second waits, then finds nothing to do. It returns the versions applied.
func (db *DB) Migrate(ctx context.Context) ([]int, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, int64(migrateLock)); err != nil {
		return nil, fmt.Errorf("postgres: migrate lock: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrateLock))

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY,
		name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres: migrate: %w", err)
		}
		applied[v] = true
	}
	rows.Close()

	var done []int
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return done, fmt.Errorf("postgres: migrate %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			tx.Rollback()
			return done, fmt.Errorf("postgres: migrate %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			tx.Rollback()
			return done, fmt.Errorf("postgres: migrate %s: %w", m.Name, err)
		}
		if err := tx.Commit(); err != nil {
			return done, fmt.Errorf("postgres: migrate %s: %w", m.Name, err)
		}
		db.Logger.Info("migration applied", "version", m.Version, "name", m.Name)
		done = append(done, m.Version)
	}
	return done, nil
}

// SchemaStatus reports the newest applied migration and whether every
// embedded migration has been applied (for readiness checks).
func (db *DB) SchemaStatus(ctx context.Context) (version int, current bool, err error) {
	ms, err := Migrations()
	if err != nil {
		return 0, false, err
	}
	var n int
	err = db.QueryRowContext(ctx, `SELECT coalesce(max(version), 0), count(*) FROM schema_migrations`).Scan(&version, &n)
	if err != nil {
		return 0, false, fmt.Errorf("postgres: schema status: %w", Error(err))
	}
	return version, n == len(ms), nil
}

// Error maps a database error to a *callbridge.Error where the meaning is
// clear: no rows → ENOTFOUND; unique or exclusion violations → ECONFLICT;
// check, foreign-key and malformed-value errors → EINVALID; a connection
// failure → EUNAVAILABLE. Other errors are returned unchanged (and count as
// EINTERNAL). It keeps the original in the chain with %w.
func Error(err error) error { return pg.Error(err) }

// notFound is returned for ids that cannot exist.
func notFound(what string) error { return pg.NotFound(what) }

// encodeCursor and decodeCursor are the page cursors of listings ordered
// by (created_at, id) descending.
func encodeCursor(at time.Time, id string) string { return pg.EncodeCursor(at, id) }

func decodeCursor(c string) (time.Time, string, error) { return pg.DecodeCursor(c) }
