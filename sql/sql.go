// Package sql embeds callbridge's PostgreSQL migrations. Each file is named
// NNNN_name.sql; NNNN is its version. Files are applied in version order,
// each in its own transaction, by postgres.Migrate. A migration, once
// released, is never edited: change the schema with a new file.
package sql

import "embed"

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS
