// Package faults is callbridge's fault suite: scenario tests that run the
// real `callbridge serve` binary against a real PostgreSQL and the ESL
// simulator (package esltest), inject a fault (the database cut off, ESL
// connections dropped, a node gone, SIGKILL, a second controller, a jump of
// the simulated clock, SIGTERM) and assert what was lost (nothing) and what
// API clients saw.
//
// The tests carry the build tag "faults" and are named TestFault*; run them
// with
//
//	go test -race -count=1 -tags faults -run TestFault ./faults/ -v
//
// or `make test-faults`. Long waits are configurable through the
// environment (CALLBRIDGE_FAULT_OUTAGE, default 30s: how long PostgreSQL is
// cut off). The package has no code outside its tests and is imported by
// nothing.
package faults
