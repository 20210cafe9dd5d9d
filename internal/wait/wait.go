// Package wait is the tests' one way to wait for a condition: poll it
// until it holds or a generous deadline passes. A deadline only bounds a
// test that is already failing, so it does not depend on the machine's
// speed; never use it to show that something does not happen.
package wait

import (
	"testing"
	"time"
)

// Limit is how long For polls before it fails the test.
const Limit = 60 * time.Second

// For polls cond every 5 ms until it returns true, and fails the test
// (naming what it waited for) if it has not within Limit.
func For(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(Limit)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", Limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
