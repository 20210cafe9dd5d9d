package postgres

import "callbridge/postgres/cdr"

// CDRStore stores CDRs, the live channels the CDR sweep watches, dead
// letters and re-rating history (package cdr). It implements
// callbridge.CDRService.
type CDRStore = cdr.Store

// NewCDRStore returns a CDRStore backed by db.
func NewCDRStore(db *DB) *CDRStore { return cdr.New(db.pg) }

// RerateFilter selects the CDRs CDRStore.Rerate prices again.
type RerateFilter = cdr.RerateFilter

// RerateSummary is what CDRStore.Rerate did.
type RerateSummary = cdr.RerateSummary
