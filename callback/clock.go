package callback

import (
	"context"
	"time"
)

// Clock is the time the engine reads and waits on: every deadline, timer
// and poll of the engine goes through it, so a test can move time on
// instead of waiting for it. Config.Clock defaults to the system's.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed; stop
	// cancels the call and reports whether it did.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// systemClock is the operating system's clock.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// after returns a channel closed once d has passed on the engine's clock,
// and the function that stops it.
func (e *Engine) after(d time.Duration) (<-chan struct{}, func() bool) {
	c := make(chan struct{})
	return c, e.clock.AfterFunc(d, func() { close(c) })
}

// sleep waits d on the engine's clock; false when ctx ended first.
func (e *Engine) sleep(ctx context.Context, d time.Duration) bool {
	c, stop := e.after(d)
	defer stop()
	select {
	case <-ctx.Done():
		return false
	case <-c:
		return true
	}
}
