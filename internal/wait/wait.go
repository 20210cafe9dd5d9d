// Package wait is the tests' one way to wait for a condition: poll it
// until it holds or a generous deadline passes. A deadline only bounds a
// test that is already failing, so it does not depend on the machine's
// speed; never use it to show that something does not happen.
package wait

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// Limit is how long For and ForState poll before they fail the test,
// unless told otherwise (Within).
const Limit = 60 * time.Second

// Option changes how a wait polls.
type Option func(*config)

type config struct {
	limit, every time.Duration
}

// Within fails the wait after d instead of Limit: for a scenario that
// takes longer than Limit on a slow machine, or for a condition that must
// hold before something else ends (a drain, an outage), where the bound
// is part of what the test asserts.
func Within(d time.Duration) Option { return func(c *config) { c.limit = d } }

// Every polls every d instead of every 5 ms: for a condition that costs a
// query or a round trip.
func Every(d time.Duration) Option { return func(c *config) { c.every = d } }

// For polls cond until it returns true, and fails the test (naming what it
// waited for) if it has not within Limit.
func For(tb testing.TB, what string, cond func() bool, opts ...Option) {
	tb.Helper()
	ForState(tb, what, func() (bool, string) { return cond(), "" }, opts...)
}

// ForState is For for a condition that also says what it saw: the failure
// shows its last state.
func ForState(tb testing.TB, what string, cond func() (ok bool, state string), opts ...Option) {
	tb.Helper()
	c := config{limit: Limit, every: 5 * time.Millisecond}
	for _, o := range opts {
		o(&c)
	}
	deadline := time.Now().Add(c.limit)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if state != "" {
				tb.Fatalf("timed out after %v waiting for %s; last: %s", c.limit, what, state)
			}
			tb.Fatalf("timed out after %v waiting for %s", c.limit, what)
		}
		time.Sleep(c.every)
	}
}

// Progress returns a context for a loop that waits for asynchronous work
// (a benchmark's events, CDRs or replies) and a function the loop calls
// each time the work advances. Once the work has not advanced for Limit
// (or Within's duration), the context is cancelled and the test fails
// naming what stalled, so lost work ends the run instead of hanging it;
// a slow machine only slows the loop. The context ends with the test.
func Progress(tb testing.TB, what string, opts ...Option) (ctx context.Context, advanced func()) {
	tb.Helper()
	c := config{limit: Limit}
	for _, o := range opts {
		o(&c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var ticks atomic.Int64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		check := time.NewTicker(min(c.limit/4, time.Second))
		defer check.Stop()
		last, since := ticks.Load(), time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-check.C:
				if n := ticks.Load(); n != last {
					last, since = n, now
				} else if now.Sub(since) >= c.limit {
					tb.Errorf("%s stalled: no progress for %v after %d steps", what, c.limit, n)
					cancel()
					return
				}
			}
		}
	}()
	tb.Cleanup(func() {
		close(done)
		<-stopped
		cancel()
	})
	return ctx, func() { ticks.Add(1) }
}
