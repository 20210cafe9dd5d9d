package wait_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"callbridge/internal/wait"
)

// recorder is a testing.TB whose Fatalf records the message and ends the
// goroutine, as the real one does.
type recorder struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.msg = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

// run calls f with a recorder in its own goroutine and returns what it
// failed with ("" if it returned).
func run(f func(tb testing.TB)) string {
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msg
}

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	n := 0
	if msg := run(func(tb testing.TB) { wait.For(tb, "three polls", func() bool { n++; return n == 3 }) }); msg != "" {
		t.Fatalf("failed with %q", msg)
	}
	if n != 3 {
		t.Errorf("polled %d times, want 3", n)
	}
}

func TestForStateFailsWithTheLastState(t *testing.T) {
	n := 0
	msg := run(func(tb testing.TB) {
		wait.ForState(tb, "the impossible", func() (bool, string) { n++; return false, fmt.Sprintf("poll %d", n) },
			wait.Within(30*time.Millisecond), wait.Every(time.Millisecond))
	})
	if !strings.Contains(msg, "waiting for the impossible") || !strings.Contains(msg, fmt.Sprintf("last: poll %d", n)) || !strings.Contains(msg, "30ms") {
		t.Errorf("failed with %q, want what, the limit and the last state (poll %d)", msg, n)
	}
}

func TestProgressCancelsAStalledLoop(t *testing.T) {
	var failed bool
	msg := run(func(tb testing.TB) {
		r := &stallRecorder{TB: tb}
		ctx, advanced := wait.Progress(r, "the loop", wait.Within(40*time.Millisecond))
		for range 5 {
			advanced()
			time.Sleep(5 * time.Millisecond)
		}
		<-ctx.Done() // the work stops advancing
		r.mu.Lock()
		failed = strings.Contains(r.msg, "the loop stalled") && strings.Contains(r.msg, "after 5 steps")
		r.mu.Unlock()
		r.cleanup()
	})
	if msg != "" || !failed {
		t.Errorf("failed %v (%q), want the stall reported once the loop stopped advancing", failed, msg)
	}
}

// stallRecorder records Errorf and keeps Cleanup functions for the test
// to run.
type stallRecorder struct {
	testing.TB
	mu       sync.Mutex
	msg      string
	cleanups []func()
}

func (r *stallRecorder) Helper() {}

func (r *stallRecorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msg = fmt.Sprintf(format, args...)
}

func (r *stallRecorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

func (r *stallRecorder) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}
