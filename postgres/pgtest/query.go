package pgtest

import (
	"context"
	"database/sql"
	"reflect"

	"github.com/jmoiron/sqlx"
)

// Querier is a pool a test checks the database through: a *postgres.DB or
// a *sql.DB.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Select runs query and appends every row to *dest, a slice of structs
// whose fields name their columns in `db` tags, or of a scalar type for a
// single column: the scanning tests' own checks need, without sqlx in
// their imports.
func Select(ctx context.Context, q Querier, dest any, query string, args ...any) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	slice := reflect.ValueOf(dest).Elem()
	elem := slice.Type().Elem()
	if tagged(elem) {
		return sqlx.StructScan(rows, dest)
	}
	for rows.Next() {
		v := reflect.New(elem)
		if err := rows.Scan(v.Interface()); err != nil {
			return err
		}
		slice.Set(reflect.Append(slice, v.Elem()))
	}
	return rows.Err()
}

// tagged reports whether t is a struct whose fields name columns in `db`
// tags, rather than one column's value (a time.Time, a sql.NullString).
func tagged(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("db") != "" {
			return true
		}
	}
	return false
}

// Get runs query and scans its first row into *dest as Select scans each
// row; sql.ErrNoRows if there is none.
func Get(ctx context.Context, q Querier, dest any, query string, args ...any) error {
	all := reflect.New(reflect.SliceOf(reflect.TypeOf(dest).Elem()))
	if err := Select(ctx, q, all.Interface(), query, args...); err != nil {
		return err
	}
	if all.Elem().Len() == 0 {
		return sql.ErrNoRows
	}
	reflect.ValueOf(dest).Elem().Set(all.Elem().Index(0))
	return nil
}
