package esl_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/esl"
	"callbridge/esl/esltest"
	"callbridge/esl/freeswitch"
	"callbridge/internal/wait"
)

func startReadinessClient(t *testing.T, srv *esltest.Server, cfg esl.Config) *esl.Client {
	t.Helper()
	cfg.Name, cfg.Addr, cfg.Password = "fs1", srv.Addr(), "ClueCon"
	cfg.BackoffMin, cfg.BackoffMax = 10*time.Millisecond, 50*time.Millisecond
	c := esl.NewClient(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return c
}

// A node whose BACKGROUND_JOBs stop coming is taken out of service by the
// periodic probe and put back once they come again; the pool follows.
func TestReadinessProbeSwallowedJobs(t *testing.T) {
	srv := esltest.NewServer()
	t.Cleanup(srv.Close)
	c := startReadinessClient(t, srv, esl.Config{ProbeInterval: 50 * time.Millisecond, JobTimeout: 300 * time.Millisecond})
	pool := esl.NewPool(c)
	wait.For(t, "the node to be ready", c.Ready)
	if st := c.Stats(); st.Probes == 0 || st.ProbeLatency <= 0 || st.NotReady != "" {
		t.Fatalf("ready node: probes %d latency %v reason %q", st.Probes, st.ProbeLatency, st.NotReady)
	}
	if _, release, err := pool.Acquire(tctx(t)); err != nil {
		t.Fatalf("acquire on a ready node: %v", err)
	} else {
		release()
	}

	srv.SetJobEvents(esltest.JobEventsSwallowed)
	// The probe's job expires (the node is marked not ready) before the
	// probe, woken by that, counts its failure: wait for both.
	wait.ForState(t, "the node to be not ready after a failed probe", func() (bool, string) {
		st := c.Stats()
		return !c.Ready() && st.JobTimeouts > 0 && st.ProbeFailures > 0,
			fmt.Sprintf("ready %v job timeouts %d probe failures %d", c.Ready(), st.JobTimeouts, st.ProbeFailures)
	})
	if st := c.Stats(); st.State != esl.StateConnected || !strings.Contains(st.NotReady, "no BACKGROUND_JOB") {
		t.Errorf("swallowing node: state %v reason %q", st.State, st.NotReady)
	}
	if _, _, err := pool.Acquire(tctx(t)); callbridge.ErrorCode(err) != callbridge.EUNAVAILABLE {
		t.Errorf("acquire on a node whose jobs never complete: %v, want EUNAVAILABLE", err)
	}

	srv.SetJobEvents(esltest.JobEventsNormal)
	wait.For(t, "the node to be ready again", c.Ready)
	if _, release, err := pool.Acquire(tctx(t)); err != nil {
		t.Errorf("acquire after recovery: %v", err)
	} else {
		release()
	}
}

// A node that answers with its own Job-UUID (what a real switch does with
// a badly framed Job-UUID line) never counts as connected.
func TestReadinessProbeOwnJobUUIDAtConnect(t *testing.T) {
	srv := esltest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetJobEvents(esltest.JobEventsOwnUUID)
	c := startReadinessClient(t, srv, esl.Config{JobTimeout: 100 * time.Millisecond})
	wait.For(t, "two failed connect probes", func() bool { return c.Stats().ProbeFailures >= 2 })
	st := c.Stats()
	if st.State == esl.StateConnected || st.Ready || !strings.Contains(st.LastError, "readiness probe failed") {
		t.Errorf("state %v ready %v last error %q, want never connected", st.State, st.Ready, st.LastError)
	}
	if _, err := c.API(tctx(t), freeswitch.Status()); !errors.Is(err, esl.ErrClosed) {
		t.Errorf("command on a node that never passed its probe: %v, want ErrClosed", err)
	}
	srv.SetJobEvents(esltest.JobEventsNormal)
	wait.For(t, "the node to connect", c.Ready)
}

// A job whose BACKGROUND_JOB never comes fails with ErrJobTimeout after
// Config.JobTimeout and marks the node not ready, probes off.
func TestJobTimeoutMarksNodeNotReady(t *testing.T) {
	srv := esltest.NewServer()
	t.Cleanup(srv.Close)
	c := startReadinessClient(t, srv, esl.Config{ProbeInterval: -1, JobTimeout: 200 * time.Millisecond})
	wait.For(t, "the node to be ready", c.Ready)
	srv.SetJobEvents(esltest.JobEventsSwallowed)
	start := time.Now()
	if _, err := c.API(tctx(t), freeswitch.Status()); !errors.Is(err, esl.ErrJobTimeout) {
		t.Fatalf("got %v, want ErrJobTimeout", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 5*time.Second {
		t.Errorf("job failed after %v, want about 200ms", took)
	}
	st := c.Stats()
	if st.Ready || st.JobTimeouts != 1 || st.PendingJobs != 0 || !strings.Contains(st.NotReady, "status job got no BACKGROUND_JOB within 200ms") {
		t.Errorf("ready %v job timeouts %d pending %d reason %q", st.Ready, st.JobTimeouts, st.PendingJobs, st.NotReady)
	}
}

// A paused node (fsctl pause: how an operator drains it) stays connected,
// so its calls are followed to their end, but takes no new call until it
// is resumed; a node paused before we connect is never ready.
func TestReadinessDrainedNode(t *testing.T) {
	srv := esltest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetPaused(true)
	c := startReadinessClient(t, srv, esl.Config{ProbeInterval: 50 * time.Millisecond})
	pool := esl.NewPool(c)
	wait.For(t, "the paused node to connect", func() bool { return c.State() == esl.StateConnected })
	if st := c.Stats(); c.Ready() || !strings.Contains(st.NotReady, "draining") || st.ProbeFailures != 0 {
		t.Fatalf("paused node: ready %v, reason %q, probe failures %d; want connected, not ready, draining", c.Ready(), st.NotReady, st.ProbeFailures)
	}
	if _, _, err := pool.Acquire(tctx(t)); callbridge.ErrorCode(err) != callbridge.EUNAVAILABLE {
		t.Errorf("acquire on a draining node: %v, want EUNAVAILABLE", err)
	}
	if _, err := c.API(tctx(t), freeswitch.Status()); err != nil {
		t.Errorf("commands on a draining node: %v", err)
	}

	srv.SetPaused(false)
	wait.For(t, "the resumed node to be ready", c.Ready)
	srv.SetPaused(true)
	wait.For(t, "the node paused again to drain", func() bool { return !c.Ready() })
	if st := c.Stats(); st.State != esl.StateConnected || st.Redials != 0 {
		t.Errorf("draining: state %v, redials %d; want the connections kept", st.State, st.Redials)
	}
}
