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
