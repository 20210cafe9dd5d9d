//go:build faults

package faults

import (
	"database/sql"
	"fmt"
	"reflect"
)

// selectRows runs query on the assertions' connection and appends every
// row to *dest, a slice of structs whose fields name their columns in a
// `db` tag, or of one scalar type for a single column.
func selectRows(db *sql.DB, dest any, query string, args ...any) error {
	rows, err := db.Query(query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	slice := reflect.ValueOf(dest).Elem()
	for rows.Next() {
		v := reflect.New(slice.Type().Elem()).Elem()
		if err := scanRow(rows, v); err != nil {
			return err
		}
		slice.Set(reflect.Append(slice, v))
	}
	return rows.Err()
}

// getRow runs query and scans its first row into *dest, as selectRows
// scans each; sql.ErrNoRows if there is none.
func getRow(db *sql.DB, dest any, query string, args ...any) error {
	rows, err := db.Query(query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	return scanRow(rows, reflect.ValueOf(dest).Elem())
}

// tagged reports whether t is a struct with `db` tags (time.Time is a
// struct without).
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

// scanRow scans the current row into v: a struct by its fields' `db`
// tags, anything else as the only column.
func scanRow(rows *sql.Rows, v reflect.Value) error {
	if !tagged(v.Type()) {
		return rows.Scan(v.Addr().Interface())
	}
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	targets := make([]any, len(cols))
	for i, c := range cols {
		for f := 0; f < v.NumField(); f++ {
			if v.Type().Field(f).Tag.Get("db") == c {
				targets[i] = v.Field(f).Addr().Interface()
			}
		}
		if targets[i] == nil {
			return fmt.Errorf("column %s has no field in %s", c, v.Type())
		}
	}
	return rows.Scan(targets...)
}
