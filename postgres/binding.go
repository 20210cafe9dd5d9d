package postgres

import "callbridge/postgres/binding"

// BindingService stores bindings and streams the routable ones (package
// binding). It implements callbridge.BindingService.
type BindingService = binding.Service

// NewBindingService returns a BindingService backed by db.
func NewBindingService(db *DB) *BindingService { return binding.New(db.pg) }

// NumberService stores the pool of virtual numbers (package binding). It
// implements callbridge.NumberService.
type NumberService = binding.NumberService

// NewNumberService returns a NumberService backed by db.
func NewNumberService(db *DB) *NumberService { return binding.NewNumberService(db.pg) }

// BindingChannel is the LISTEN/NOTIFY channel on which every change to a
// number or a binding is announced, with the X it concerns as payload.
const BindingChannel = binding.Channel

// DefaultMaxBindingTTL is the longest life a binding may have when
// BindingService.MaxTTL is zero.
const DefaultMaxBindingTTL = binding.DefaultMaxTTL
