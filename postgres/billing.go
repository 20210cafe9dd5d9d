package postgres

import (
	"time"

	"callbridge/postgres/billing"
)

// BillingStore keeps billing's state: job runs, daily rollups, invoices,
// the prepaid ledger and call reservations (package billing). It
// implements callbridge.BillingService.
type BillingStore = billing.Store

// NewBillingStore returns a BillingStore over db that reads days and
// months in loc (nil: UTC) and records job runs as run by node.
func NewBillingStore(db *DB, loc *time.Location, node string) *BillingStore {
	return billing.New(db.pg, loc, node)
}
