// Package pg is the core the postgres packages share: the connection pool
// as sqlx sees it, transactions, LISTEN, and the mapping of database errors
// to *callbridge.Error. It is internal so that sqlx and lib/pq stay inside
// postgres: postgres.DB does not expose this pool, and no other package can
// import this one.
package pg

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"

	"callbridge"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// DB is callbridge's connection pool, with sqlx's helpers.
type DB struct {
	*sqlx.DB
	// URL is where the pool connects; LISTEN opens its own connections
	// there.
	URL    string
	Logger *slog.Logger
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

// CodeForeignKey is PostgreSQL's foreign-key violation.
const CodeForeignKey = "23503"

// Code returns the PostgreSQL error code of err, or "" if the server did
// not answer it.
func Code(err error) string {
	var pe *pq.Error
	if errors.As(err, &pe) {
		return string(pe.Code)
	}
	return ""
}

// PostgreSQL error codes that callbridge maps to domain errors.
const (
	codeUniqueViolation    = "23505"
	codeExclusionViolation = "23P01"
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
		case CodeForeignKey, codeCheckViolation, codeNotNull, codeInvalidText:
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

// Connector opens the pool's connections and marks the errors of opening
// one (ConnectError), so that NotSent can tell them from the errors of a
// statement under way.
type Connector struct{ driver.Connector }

// Connect implements driver.Connector.
func (c Connector) Connect(ctx context.Context) (driver.Conn, error) {
	cn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, &ConnectError{Err: err}
	}
	return cn, nil
}

// ConnectError is an error opening a connection of the pool.
type ConnectError struct{ Err error }

// Error returns the wrapped error's message.
func (e *ConnectError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *ConnectError) Unwrap() error { return e.Err }

// NotSent reports whether err, as the pool's QueryContext or ExecContext
// returned it (not a later error reading rows), means the statement never
// reached the server: no connection could be opened for it, or each
// connection tried was found broken before anything was written
// (driver.ErrBadConn, on which database/sql tries another connection,
// the last a new one). Any other failure of the connection leaves it
// unknown whether the statement ran.
func NotSent(err error) bool {
	var ce *ConnectError
	return errors.As(err, &ce) || errors.Is(err, driver.ErrBadConn)
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

// NotFound is the ENOTFOUND error of what.
func NotFound(what string) error {
	return callbridge.Errorf(callbridge.ENOTFOUND, "%s not found", what)
}

// NotFoundAs renames an ENOTFOUND error after what was looked for and
// passes any other error through.
func NotFoundAs(err error, what string) error {
	if callbridge.ErrorCode(err) == callbridge.ENOTFOUND {
		return NotFound(what)
	}
	return err
}

// UTC returns t in UTC, keeping the zero time zero.
func UTC(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// NullTime is t as a nullable column: NULL for the zero time.
func NullTime(t time.Time) sql.NullTime {
	return sql.NullTime{Time: t.UTC(), Valid: !t.IsZero()}
}

// Dup is a row of an import table that repeats the key of an earlier
// row, First.
type Dup struct {
	Line  int `db:"line"`
	First int `db:"first"`
}

// Duplicates returns the first limit rows of table (an import table
// with a line column) that repeat the key (a list of its columns) of an
// earlier row, in line order, and how many there are in all. table and
// key are the caller's constants, never input.
func Duplicates(ctx context.Context, tx *Tx, table, key string, limit int) ([]Dup, int, error) {
	var rows []struct {
		Dup
		Total int `db:"total"`
	}
	err := tx.SelectContext(ctx, &rows, `SELECT line, first, count(*) OVER () AS total FROM (
			SELECT line, min(line) OVER (PARTITION BY `+key+`) AS first
			FROM `+table+`) k
		WHERE line <> first ORDER BY line LIMIT $1`, limit)
	if err != nil {
		return nil, 0, Error(err)
	}
	if len(rows) == 0 {
		return nil, 0, nil
	}
	dups := make([]Dup, len(rows))
	for i, r := range rows {
		dups[i] = r.Dup
	}
	return dups, rows[0].Total, nil
}

// CopyRows creates the temporary table table (dropped at commit) with a
// line column and the columns of like named in columns, then streams rows
// into it by COPY: next returns one row's values, its line first, and
// nil, nil after the last row. It stops at next's first error and returns
// it as it is.
func CopyRows(ctx context.Context, tx *Tx, table, like, columns string, next func() ([]any, error)) error {
	if _, err := tx.ExecContext(ctx, `CREATE TEMPORARY TABLE `+table+` ON COMMIT DROP AS
		SELECT 0 AS line, `+columns+` FROM `+like+` WITH NO DATA`); err != nil {
		return Error(err)
	}
	stmt, err := tx.PrepareContext(ctx, `COPY `+table+` (line, `+columns+`) FROM STDIN`)
	if err != nil {
		return Error(err)
	}
	defer stmt.Close()
	for {
		row, err := next()
		if err != nil {
			return err
		}
		if row == nil {
			break
		}
		if _, err := stmt.ExecContext(ctx, row...); err != nil {
			return Error(err)
		}
	}
	if _, err := stmt.ExecContext(ctx); err != nil {
		return Error(err)
	}
	return Error(stmt.Close())
}
