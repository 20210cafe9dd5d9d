package callback_test

import (
	"sync"
	"testing"
	"time"

	"callbridge/callback"
)

// testClock is the system's clock that a test can move on: time passes
// as usual, and Advance jumps it forward, firing at once the timers that
// fall due, so a test waits for nothing the engine would wait for.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
	timers map[*testTimer]bool
}

var _ callback.Clock = (*testClock)(nil)

type testTimer struct {
	at   time.Time
	f    func()
	real *time.Timer
}

func newTestClock() *testClock { return &testClock{timers: map[*testTimer]bool{}} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &testTimer{at: time.Now().Add(c.offset + d), f: f}
	c.timers[t] = true
	t.real = time.AfterFunc(d, func() { c.fire(t) })
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.timers[t] {
			return false
		}
		delete(c.timers, t)
		t.real.Stop()
		return true
	}
}

// fire calls t's function unless it was stopped or has fired.
func (c *testClock) fire(t *testTimer) {
	c.mu.Lock()
	pending := c.timers[t]
	delete(c.timers, t)
	c.mu.Unlock()
	if pending {
		t.f()
	}
}

// Advance moves the clock d forward: the timers due by then fire before
// it returns, the others are rescheduled to their time on the new clock.
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	now := time.Now().Add(c.offset)
	var due []*testTimer
	for t := range c.timers {
		if !t.at.After(now) {
			t.real.Stop()
			due = append(due, t)
		} else {
			t.real.Reset(t.at.Sub(now))
		}
	}
	c.mu.Unlock()
	for _, t := range due {
		c.fire(t)
	}
}

func TestTestClock(t *testing.T) {
	c := newTestClock()
	start := c.Now()
	fired := make(chan string, 3)
	c.AfterFunc(time.Hour, func() { fired <- "hour" })
	stop := c.AfterFunc(30*time.Minute, func() { fired <- "stopped" })
	c.AfterFunc(2*time.Hour, func() { fired <- "later" })
	if !stop() || stop() {
		t.Fatal("stop: want true, then false")
	}
	c.Advance(90 * time.Minute)
	if got := <-fired; got != "hour" {
		t.Errorf("fired %q, want hour", got)
	}
	select {
	case got := <-fired:
		t.Errorf("%q fired early", got)
	default:
	}
	if d := c.Now().Sub(start); d < 90*time.Minute || d > 91*time.Minute {
		t.Errorf("clock moved %v, want 90m", d)
	}
}
