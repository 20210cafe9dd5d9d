// Package clock is the simulator's clock: simulated time that runs a
// given speed times real time and can be jumped forward, and sleeps that
// wake early when it jumps. Every time the simulated switch reports is
// read from it.
package clock

import (
	"context"
	"sync"
	"time"
)

// Clock is the simulated clock: it runs speed× real time from a start
// instant and can be jumped forward. Waiters notice jumps at once.
type Clock struct {
	mu        sync.Mutex
	base      time.Time // simulated time at realStart
	realStart time.Time
	speed     float64
	offset    time.Duration // sum of jumps
	jumped    chan struct{} // closed and replaced on every jump
}

func New(speed float64) *Clock {
	if speed <= 0 {
		speed = 1
	}
	now := time.Now()
	return &Clock{base: now.UTC().Truncate(time.Microsecond), realStart: now, speed: speed, jumped: make(chan struct{})}
}

// Now returns the simulated time, UTC, at microsecond resolution like
// FreeSWITCH's switch_micro_time_now.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked()
}

func (c *Clock) nowLocked() time.Time {
	elapsed := time.Duration(float64(time.Since(c.realStart)) * c.speed)
	return c.base.Add(elapsed + c.offset).Truncate(time.Microsecond)
}

// Jump moves simulated time forward by d and wakes every waiter.
func (c *Clock) Jump(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	c.offset += d
	close(c.jumped)
	c.jumped = make(chan struct{})
	c.mu.Unlock()
}

// Sleep waits until d of simulated time has passed (forever if d < 0). It
// returns false early when ctx is done or stop is closed.
func (c *Clock) Sleep(ctx context.Context, d time.Duration, stop <-chan struct{}) bool {
	if d == 0 {
		select {
		case <-ctx.Done():
			return false
		case <-stop:
			return false
		default:
			return true
		}
	}
	var deadline time.Time
	if d > 0 {
		deadline = c.Now().Add(d)
	}
	for {
		c.mu.Lock()
		jumped := c.jumped
		var wait <-chan time.Time
		var t *time.Timer
		if d > 0 {
			rem := deadline.Sub(c.nowLocked())
			if rem <= 0 {
				c.mu.Unlock()
				return true
			}
			t = time.NewTimer(time.Duration(float64(rem) / c.speed))
			wait = t.C
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			stopTimer(t)
			return false
		case <-stop:
			stopTimer(t)
			return false
		case <-jumped:
			stopTimer(t)
		case <-wait:
		}
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}
