// Package postgres stores callbridge's state in PostgreSQL. It is the only
// package that imports sqlx and lib/pq. It maps database errors to
// *callbridge.Error codes so callers never see driver errors; it holds no
// state beyond caches that the database can always rebuild.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"callbridge"
	migrations "callbridge/sql"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// migrateLock is the advisory-lock key that serialises migrations across
// processes ("cbmigrat" as a number, so it is recognisable in pg_locks).
const migrateLock = 0x63626d6967726174

// DB is a connection pool to callbridge's database.
type DB struct {
	*sqlx.DB
	URL    string
	Logger *slog.Logger
}

// Open connects to the database at url and checks that it answers.
func Open(ctx context.Context, url string, logger *slog.Logger) (*DB, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	db, err := sqlx.Open("postgres", url)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: ping: %w", err)
	}
	return &DB{DB: db, URL: url, Logger: logger}, nil
}

// Migration is one embedded schema file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrations.FS, ".")
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
		b, err := fs.ReadFile(migrations.FS, name)
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

// PostgreSQL error codes that callbridge maps to domain errors.
const (
	codeUniqueViolation    = "23505"
	codeExclusionViolation = "23P01"
	codeForeignKey         = "23503"
	codeCheckViolation     = "23514"
	codeNotNull            = "23502"
	codeInvalidText        = "22P02"
	codeSerialization      = "40001"
	codeDeadlock           = "40P01"
)

// Error maps a database error to a *callbridge.Error where the meaning is
// clear: no rows → ENOTFOUND; unique or exclusion violations → ECONFLICT;
// check, foreign-key and malformed-value errors → EINVALID; a connection
// failure → EUNAVAILABLE. Other errors are returned unchanged (and count as
// EINTERNAL). It keeps the original in the chain with %w.
func Error(err error) error {
	if err == nil {
		return nil
	}
	var cerr *callbridge.Error
	if errors.As(err, &cerr) {
		return err
	}
	if errors.Is(err, sql.ErrNoRows) {
		return &callbridge.Error{Code: callbridge.ENOTFOUND, Message: "not found"}
	}
	var pe *pq.Error
	if errors.As(err, &pe) {
		switch pe.Code {
		case codeUniqueViolation, codeExclusionViolation:
			return fmt.Errorf("%w (%s)", &callbridge.Error{Code: callbridge.ECONFLICT, Message: "conflicts with an existing object"}, pe.Constraint)
		case codeForeignKey, codeCheckViolation, codeNotNull, codeInvalidText:
			return fmt.Errorf("%w (%s)", &callbridge.Error{Code: callbridge.EINVALID, Message: "invalid value"}, pe.Message)
		}
		if pe.Code.Class() == "08" || pe.Code.Class() == "57" || pe.Code.Class() == "53" {
			return fmt.Errorf("%w: %v", &callbridge.Error{Code: callbridge.EUNAVAILABLE, Message: "database unavailable"}, err)
		}
		return err
	}
	if isConnError(err) {
		return fmt.Errorf("%w: %v", &callbridge.Error{Code: callbridge.EUNAVAILABLE, Message: "database unavailable"}, err)
	}
	return err
}

// Retryable reports whether err is a serialization failure or deadlock that
// the caller should retry.
func Retryable(err error) bool {
	var pe *pq.Error
	return errors.As(err, &pe) && (pe.Code == codeSerialization || pe.Code == codeDeadlock)
}

// isConnError reports errors that mean the server could not be reached or
// the connection died: network errors, a closed connection, EOF.
func isConnError(err error) bool {
	var ne net.Error
	return errors.Is(err, sql.ErrConnDone) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.As(err, &ne)
}

// Tx is a transaction.
type Tx = sqlx.Tx

// Tx runs fn in a transaction, committing on nil and rolling back otherwise.
func (db *DB) Tx(ctx context.Context, fn func(tx *Tx) error) error {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return Error(err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return Error(err)
	}
	return nil
}

// notFound is returned for ids that cannot exist.
func notFound(what string) error {
	return callbridge.Errorf(callbridge.ENOTFOUND, "%s not found", what)
}
