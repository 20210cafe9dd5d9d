// Package billing stores billing's state: job runs (jobs.go), daily
// rollups of the CDRs (rollup.go), invoices (invoice.go), usage reports
// (usage.go), billing profiles (profile.go), and the prepaid ledger and
// call reservations (prepaid.go). It is part of the postgres adapter: build it through
// postgres.NewBillingStore. The billing package above it schedules the
// jobs and renders invoices; this one only reads and writes.
package billing

import (
	"time"

	"callbridge"
	"callbridge/postgres/internal/pg"
)

// Store keeps billing's state: job runs, daily rollups, invoices,
// the prepaid ledger and call reservations. Days and months are read in
// its zone, which its rollups record: a rollup or invoice run of an
// account and month rolled up in another zone is refused.
type Store struct {
	db   *pg.DB
	loc  *time.Location
	node string
	// Grace is how long after a month ends it stays open to late CDRs:
	// IssueInvoices refuses it until then (CALLBRIDGE_INVOICE_GRACE).
	// Zero lets a month be invoiced as soon as it ends. Set it before
	// use.
	Grace time.Duration
}

var _ callbridge.BillingService = (*Store)(nil)

// New returns a Store over db that reads days and months in loc (nil: UTC) and records job runs as run by node.
func New(db *pg.DB, loc *time.Location, node string) *Store {
	if loc == nil {
		loc = time.UTC
	}
	return &Store{db: db, loc: loc, node: node}
}

// Location returns the zone days and months are read in.
func (s *Store) Location() *time.Location { return s.loc }
