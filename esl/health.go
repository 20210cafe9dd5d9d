package esl

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"callbridge/esl/freeswitch"
	"callbridge/esl/internal/wire"
)

// defaultOriginateTimeout is FreeSWITCH's ring time when an originate
// sets no originate_timeout.
const defaultOriginateTimeout = 60 * time.Second

// ErrProbe is the cause recorded when a readiness probe failed: the node
// answered "bgapi fsctl ready_check" but its result did not come back as
// a BACKGROUND_JOB with our Job-UUID, or came back as an error.
var ErrProbe = errors.New("esl: readiness probe failed")

// drainingReason is why a node whose commands complete is not ready: it
// takes no new sessions (fsctl pause, or shutting down). Its connections
// stay up, so its calls in progress are followed to their end.
const drainingReason = "draining: the node takes no new sessions (fsctl pause or shutdown)"

// health is whether the node's commands complete, as the probes and job
// timeouts last showed.
type health struct {
	mu      sync.Mutex
	healthy bool
	reason  string // why not healthy
	took    time.Duration
}

func (h *health) set(ok bool, reason string, took time.Duration) (changed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	changed = h.healthy != ok
	h.healthy, h.reason = ok, reason
	if ok {
		h.took = took
	}
	return changed
}

func (h *health) latency() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.took
}

// Ready reports whether calls may be placed on the node: both connections
// are up, and the last readiness probe passed with no job timing out
// since. Pool places calls only on ready nodes.
func (c *Client) Ready() bool {
	ok, _ := c.readiness()
	return ok
}

// readiness returns Ready and, when not ready, why.
func (c *Client) readiness() (bool, string) {
	if st := c.State(); st != StateConnected {
		return false, st.String()
	}
	c.health.mu.Lock()
	defer c.health.mu.Unlock()
	if !c.health.healthy {
		return false, c.health.reason
	}
	return true, ""
}

func (c *Client) markHealthy(took time.Duration) {
	if c.health.set(true, "", took) {
		c.log.Info("esl: node ready", "node", c.cfg.Name, "probe", took)
	}
}

func (c *Client) markUnhealthy(reason string) {
	if c.health.set(false, reason, 0) {
		c.log.Warn("esl: node not ready", "node", c.cfg.Name, "reason", reason)
	}
}

// probe runs one readiness probe on session s: "bgapi fsctl
// ready_check" with our Job-UUID, whose BACKGROUND_JOB must come within
// Config.JobTimeout and not be an error. It records the outcome and
// returns its error. A node that answers "false" (paused, draining) passed:
// its commands complete, but it is not ready for new calls.
func (c *Client) probe(s *session) error {
	c.probes.Add(1)
	start := time.Now()
	accepting, err := c.runProbe(s)
	took := time.Since(start)
	if f := c.cfg.OnProbe; f != nil {
		f(took, err)
	}
	if err != nil {
		c.probeFailures.Add(1)
		if !errors.Is(err, ErrJobTimeout) { // expire said why
			c.markUnhealthy(err.Error())
		}
		return err
	}
	if !accepting {
		c.markUnhealthy(drainingReason)
		return nil
	}
	c.markHealthy(took)
	return nil
}

// runProbe reports whether the node takes new sessions.
func (c *Client) runProbe(s *session) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.JobTimeout)
	defer cancel()
	j, err := c.startJob(ctx, s, freeswitch.ReadyCheck().String(), "", c.cfg.JobTimeout, true)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrProbe, err)
	}
	select {
	case <-j.Done():
	case <-s.dead:
		c.forget(j)
		return false, fmt.Errorf("%w: %w", ErrProbe, ErrClosed)
	}
	out, err := j.Result()
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrProbe, err)
	}
	switch strings.TrimSpace(out) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%w: fsctl ready_check answered %q", ErrProbe, wire.Truncate(out, 64))
}

// probeLoop probes every Config.ProbeInterval until the session ends.
func (s *session) probeLoop() {
	defer s.loops.Done()
	t := time.NewTicker(s.c.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-s.dead:
			return
		case <-t.C:
			s.c.probe(s)
		}
	}
}

// expire fails job j with ErrJobTimeout if it is still waiting for its
// BACKGROUND_JOB, and marks the node not ready.
func (c *Client) expire(j *Job, bound time.Duration) {
	c.mu.Lock()
	pending := c.jobs[j.ID] == j
	if pending {
		delete(c.jobs, j.ID)
	}
	c.mu.Unlock()
	if !pending {
		return
	}
	c.jobTimeouts.Add(1)
	c.markUnhealthy(fmt.Sprintf("%s job got no BACKGROUND_JOB within %s", j.verb(), bound))
	j.finish("", ErrJobTimeout)
}
