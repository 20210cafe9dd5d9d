package esl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"callbridge/esl/freeswitch"
	"callbridge/esl/internal/wire"
)

// testTimeout is a generous upper bound for anything a test waits for.
const testTimeout = 20 * time.Second

type testLogWriter struct{ tb testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startClient runs a client against addr until the test ends.
func startClient(tb testing.TB, cfg Config) *Client {
	tb.Helper()
	c := newTestClient(tb, cfg)
	run(tb, c)
	return c
}

// newTestClient returns a client with test defaults, not yet running.
func newTestClient(tb testing.TB, cfg Config) *Client {
	tb.Helper()
	if cfg.Password == "" {
		cfg.Password = "ClueCon"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testLogWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = 10 * time.Millisecond
		cfg.BackoffMax = 100 * time.Millisecond
	}
	return NewClient(cfg)
}

// run runs c until the test ends.
func run(tb testing.TB, c *Client) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Run: %v", err)
			}
		case <-time.After(testTimeout):
			tb.Error("Run did not return")
		}
	})
}

// connected starts a client and a subscription, and waits for the
// subscription's SocketConnected event. The subscription exists before
// Run starts, so it cannot miss that event.
func connected(tb testing.TB, f *fakeFS, cfg Config) (*Client, *Subscription) {
	tb.Helper()
	cfg.Addr = f.addr()
	c := newTestClient(tb, cfg)
	sub := c.Subscribe(0)
	tb.Cleanup(sub.Close)
	run(tb, c)
	waitEvent(tb, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.SocketConnected })
	return c, sub
}

// waitEvent returns the first event satisfying ok.
func waitEvent(tb testing.TB, sub *Subscription, ok func(freeswitch.Event) bool) freeswitch.Event {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			tb.Fatalf("waiting for event: %v", err)
		}
		if ok(e) {
			return e
		}
	}
}

func ctxT(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	tb.Cleanup(cancel)
	return ctx
}

const testUUID = "5f5fc208-2bec-4937-a862-c229da18fc2b"

func TestAPIResults(t *testing.T) {
	f := newFakeFS(t)
	f.result = func(cmd string) string {
		switch {
		case strings.HasPrefix(cmd, "uuid_kill"):
			return "-ERR No such channel!\n"
		case strings.HasPrefix(cmd, "uuid_exists"):
			return "true"
		case strings.HasPrefix(cmd, "uuid_bridge"):
			return "+OK " + testUUID + "\n"
		case strings.HasPrefix(cmd, "hupall"):
			return "-USAGE: <cause>\n"
		}
		return "+OK\n"
	}
	c, _ := connected(t, f, Config{})
	kill, _ := freeswitch.UUIDKill(testUUID, "")
	exists, _ := freeswitch.UUIDExists(testUUID)
	bridge, _ := freeswitch.UUIDBridge(testUUID, testUUID)
	hupall, _ := freeswitch.Hupall("NORMAL_CLEARING")
	tests := []struct {
		name    string
		cmd     freeswitch.Command
		want    string
		wantErr string
	}{
		{"err", kill, "", "No such channel!"},
		{"plain", exists, "true", ""},
		{"ok", bridge, testUUID, ""},
		{"usage", hupall, "", "<cause>"},
		{"bare ok", freeswitch.Status(), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.API(ctxT(t), tt.cmd)
			if tt.wantErr != "" {
				var re *ReplyError
				if !errors.As(err, &re) || re.Cause() != tt.wantErr {
					t.Fatalf("got err %v, want ReplyError with cause %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v, want %q", got, err, tt.want)
			}
		})
	}
	// The wire carries bgapi with our Job-UUID (fixture 10c).
	raw := f.rawReceived()
	if !strings.Contains(raw, "bgapi uuid_exists "+testUUID+"\nJob-UUID: ") {
		t.Errorf("server did not see bgapi with Job-UUID; got:\n%s", raw)
	}
	if strings.Contains(raw, "\napi ") || strings.HasPrefix(raw, "api ") {
		t.Errorf("client sent a blocking api command:\n%s", raw)
	}
	if st := c.Stats(); st.PendingJobs != 0 || st.JobsCompleted != uint64(len(tests)) {
		t.Errorf("got pending %d completed %d, want 0 and %d", st.PendingJobs, st.JobsCompleted, len(tests))
	}
}

func TestCommandReplyErr(t *testing.T) {
	f := newFakeFS(t)
	f.reply = func(cmd string) (string, bool) {
		switch {
		case strings.HasPrefix(cmd, "status"):
			return "-ERR command not found", true
		case strings.HasPrefix(cmd, "uuid_exists"):
			return "-E", true // would panic go-eventsocket: reply[5:]
		case strings.HasPrefix(cmd, "uuid_kill"):
			return "+", true // would panic go-eventsocket: reply[:2]
		}
		return "", false
	}
	c, _ := connected(t, f, Config{})
	_, err := c.API(ctxT(t), freeswitch.Status())
	var re *ReplyError
	if !errors.As(err, &re) || re.Cause() != "command not found" {
		t.Fatalf("got %v, want ReplyError command not found", err)
	}
	exists, _ := freeswitch.UUIDExists(testUUID)
	_, err = c.API(ctxT(t), exists)
	if !errors.As(err, &re) || re.Text != wire.MalformedReply {
		t.Fatalf("got %v, want %q", err, wire.MalformedReply)
	}
	kill, _ := freeswitch.UUIDKill(testUUID, "")
	_, err = c.API(ctxT(t), kill)
	if !errors.As(err, &re) || re.Text != wire.MalformedReply {
		t.Fatalf("got %v, want %q", err, wire.MalformedReply)
	}
	if got := c.Stats().FramesRewritten; got != 2 {
		t.Errorf("got %d rewritten frames, want 2", got)
	}
	// The connection survived.
	f.mu.Lock()
	f.reply = nil
	f.mu.Unlock()
	if _, err := c.API(ctxT(t), freeswitch.Status()); err != nil {
		t.Fatalf("after hazards: %v", err)
	}
	if got := c.Stats().Redials; got != 0 {
		t.Errorf("got %d redials, want 0", got)
	}
}

func TestConcurrentCalls(t *testing.T) {
	f := newFakeFS(t)
	f.result = func(cmd string) string {
		return "+OK " + strings.TrimPrefix(cmd, "uuid_exists ") + "\n"
	}
	c, _ := connected(t, f, Config{})
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
			cmd, err := freeswitch.UUIDExists(id)
			if err != nil {
				errs <- err
				return
			}
			var got string
			if i%2 == 0 {
				got, err = c.API(ctxT(t), cmd)
			} else {
				var j *Job
				j, err = c.BgAPI(ctxT(t), cmd)
				if err == nil {
					<-j.Done()
					got, err = j.Result()
				}
			}
			if err != nil || got != id {
				errs <- fmt.Errorf("call %d: got %q, %v, want %q", i, got, err, id)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := c.Stats(); st.PendingJobs != 0 || st.JobsCompleted != n {
		t.Errorf("got pending %d completed %d, want 0 and %d", st.PendingJobs, st.JobsCompleted, n)
	}
}

func TestSocketDeath(t *testing.T) {
	f := newFakeFS(t)
	f.result = func(cmd string) string {
		if strings.HasPrefix(cmd, "originate") {
			return "" // never answered: the job stays pending
		}
		return "+OK\n"
	}
	c, sub := connected(t, f, Config{})
	const n = "4930123456"
	j, err := c.Originate(ctxT(t), freeswitch.Originate{Endpoint: freeswitch.Gateway("carrier", n)})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Stats().PendingJobs; got != 1 {
		t.Fatalf("got %d pending jobs, want 1", got)
	}
	f.dropAll()
	select {
	case <-j.Done():
	case <-time.After(testTimeout):
		t.Fatal("pending job not failed after socket death")
	}
	if _, err := j.Result(); !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
	// Redialled and resubscribed.
	waitEvent(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.SocketConnected })
	if got := f.subscriptions(); got < 2 {
		t.Errorf("got %d subscriptions, want at least 2", got)
	}
	if _, err := c.API(ctxT(t), freeswitch.Status()); err != nil {
		t.Fatalf("after redial: %v", err)
	}
	if st := c.Stats(); st.Redials < 1 || st.State != StateConnected || st.LastError == "" {
		t.Errorf("got redials %d state %v last error %q", st.Redials, st.State, st.LastError)
	}
}

func TestStuckConnection(t *testing.T) {
	f := newFakeFS(t)
	f.reply = func(cmd string) (string, bool) {
		if strings.HasPrefix(cmd, "status") {
			return "", true // no reply at all
		}
		return "", false
	}
	c, sub := connected(t, f, Config{CommandTimeout: 200 * time.Millisecond})
	// ctx shorter than CommandTimeout: the caller gets ctx.Err().
	ctx, cancel := context.WithTimeout(ctxT(t), 50*time.Millisecond)
	defer cancel()
	if _, err := c.API(ctx, freeswitch.Status()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	// The stuck connection is then closed and redialled.
	waitEvent(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.SocketConnected })
	if got := c.Stats().LastError; !strings.Contains(got, ErrStuck.Error()) {
		t.Errorf("got last error %q, want %q", got, ErrStuck)
	}
	// A caller without a deadline gets ErrClosed after CommandTimeout.
	if _, err := c.API(ctxT(t), freeswitch.Status()); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrStuck) {
		t.Fatalf("got %v, want ErrClosed (ErrStuck)", err)
	}
	if got := c.Stats().PendingJobs; got != 0 {
		t.Errorf("got %d pending jobs, want 0", got)
	}
}

func TestJobContext(t *testing.T) {
	f := newFakeFS(t)
	f.result = func(string) string { return "" }
	c, _ := connected(t, f, Config{})
	ctx, cancel := context.WithTimeout(ctxT(t), 50*time.Millisecond)
	defer cancel()
	if _, err := c.API(ctx, freeswitch.Status()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	if st := c.Stats(); st.PendingJobs != 0 || st.Redials != 0 {
		t.Errorf("got pending %d redials %d, want 0 and 0", st.PendingJobs, st.Redials)
	}
}

func TestAuthRefused(t *testing.T) {
	f := newFakeFS(t)
	sawErr := make(chan struct{})
	var once sync.Once
	h := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) {
		if strings.Contains(string(p), "authentication refused") {
			once.Do(func() { close(sawErr) })
		}
	}), nil))
	c := startClient(t, Config{Addr: f.addr(), Password: "wrong", Logger: h})
	select {
	case <-sawErr:
	case <-time.After(testTimeout):
		t.Fatal("no authentication error logged")
	}
	if st := c.Stats(); st.State == StateConnected || !strings.Contains(st.LastError, "authentication refused") {
		t.Errorf("got state %v last error %q", st.State, st.LastError)
	}
	if _, err := c.API(ctxT(t), freeswitch.Status()); !errors.Is(err, ErrClosed) {
		t.Errorf("got %v, want ErrClosed", err)
	}
}

type writerFunc func(p []byte)

func (w writerFunc) Write(p []byte) (int, error) { w(p); return len(p), nil }

func TestRunEndsSubscriptions(t *testing.T) {
	f := newFakeFS(t)
	c := NewClient(Config{Addr: f.addr(), Password: "ClueCon"})
	sub := c.Subscribe(0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitEvent(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.SocketConnected })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := sub.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("got %v, want ErrClosed", err)
	}
	if c.State() != StateClosed {
		t.Errorf("got state %v, want closed", c.State())
	}
	if err := c.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no addr", Config{Password: "x"}},
		{"no password", Config{Addr: "a:1"}},
		{"newline password", Config{Addr: "a:1", Password: "x\nexit"}},
		{"negative cps", Config{Addr: "a:1", Password: "x", MaxCPS: -1}},
		{"long command timeout", Config{Addr: "a:1", Password: "x", CommandTimeout: time.Minute}},
		{"bad event", Config{Addr: "a:1", Password: "x", Events: []freeswitch.EventName{"ALL\nlog"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := NewClient(tt.cfg).Run(context.Background()); err == nil {
				t.Error("got nil, want an error")
			}
		})
	}
}
