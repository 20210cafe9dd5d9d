package batch

import (
	"callbridge/internal/wait"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBatcherGroupsConcurrentCalls runs many concurrent calls through a
// slow Flush: every call is flushed exactly once, never more than
// MaxRunning batches run at once, calls that waited share batches, and
// when all is done no runner is left.
func TestBatcherGroupsConcurrentCalls(t *testing.T) {
	type call struct {
		n       int
		flushed atomic.Int32
	}
	var running, maxSeen, batches, biggest atomic.Int32
	b := &Batcher[*call]{MaxRunning: 2, MaxBatch: 16}
	b.Flush = func(batch []*call) {
		r := running.Add(1)
		defer running.Add(-1)
		for {
			m := maxSeen.Load()
			if r <= m || maxSeen.CompareAndSwap(m, r) {
				break
			}
		}
		batches.Add(1)
		if n := int32(len(batch)); n > biggest.Load() {
			biggest.Store(n)
		}
		if len(batch) > 16 {
			t.Errorf("batch of %d, max 16", len(batch))
		}
		time.Sleep(2 * time.Millisecond)
		for _, c := range batch {
			c.flushed.Add(1)
		}
	}
	const n = 200
	calls := make([]*call, n)
	var wg sync.WaitGroup
	for i := range calls {
		calls[i] = &call{n: i}
		wg.Add(1)
		go func(c *call) {
			defer wg.Done()
			if err := b.Do(context.Background(), c); err != nil {
				t.Error(err)
			}
			if c.flushed.Load() != 1 {
				t.Errorf("call %d returned flushed %d times", c.n, c.flushed.Load())
			}
		}(calls[i])
	}
	wg.Wait()
	if maxSeen.Load() > 2 {
		t.Errorf("%d batches ran at once, max 2", maxSeen.Load())
	}
	if batches.Load() >= n || biggest.Load() < 2 {
		t.Errorf("%d batches for %d calls, biggest %d: calls were not grouped", batches.Load(), n, biggest.Load())
	}
	waitIdle(t, b)
}

// TestBatcherIdleCallFlushesAtOnce: a call on an idle Batcher is flushed
// by its own caller, alone.
func TestBatcherIdleCallFlushesAtOnce(t *testing.T) {
	var sizes []int
	b := &Batcher[int]{MaxRunning: 1, MaxBatch: 8, Flush: func(batch []int) { sizes = append(sizes, len(batch)) }}
	for i := 0; i < 3; i++ {
		if err := b.Do(context.Background(), i); err != nil {
			t.Fatal(err)
		}
	}
	if len(sizes) != 3 || sizes[0] != 1 || sizes[2] != 1 {
		t.Errorf("batches %v, want three of one", sizes)
	}
	waitIdle(t, b)
}

// TestBatcherCancelWhileQueued: a call whose context ends while it waits
// for a batch is dropped, never flushed, and reports the context's error;
// a call already taken into a batch waits for its outcome.
func TestBatcherCancelWhileQueued(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	var flushed sync.Map
	b := &Batcher[string]{MaxRunning: 1, MaxBatch: 8}
	b.Flush = func(batch []string) {
		for _, v := range batch {
			if v == "first" {
				started <- struct{}{}
				<-release
			}
			flushed.Store(v, true)
		}
	}
	firstDone := make(chan error, 1)
	go func() { firstDone <- b.Do(context.Background(), "first") }()
	<-started // "first" is in flight and holds the only slot

	ctx, cancel := context.WithCancel(context.Background())
	queuedDone := make(chan error, 1)
	go func() { queuedDone <- b.Do(ctx, "queued") }()
	waitQueued(t, b, 1)
	cancel()
	if err := <-queuedDone; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled while queued: %v, want context.Canceled", err)
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Errorf("first: %v", err)
	}
	if _, ok := flushed.Load("queued"); ok {
		t.Error("a call dropped from the queue was flushed")
	}
	waitIdle(t, b)
}

// TestBatcherFlushPanicReleasesCallers: if flush panics, its callers are
// still released (the panic goes to the caller that ran the batch).
func TestBatcherFlushPanicReleasesCallers(t *testing.T) {
	b := &Batcher[int]{MaxRunning: 1, MaxBatch: 8, Flush: func([]int) { panic("boom") }}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic was swallowed")
			}
		}()
		b.Do(context.Background(), 1)
	}()
	b.mu.Lock()
	running := b.running
	b.mu.Unlock()
	if running != 0 {
		t.Errorf("running %d after a panicking flush, want 0", running)
	}
}

func waitQueued(t *testing.T, b interface{ queued() int }, n int) {
	t.Helper()
	wait.ForState(t, fmt.Sprintf("%d calls queued", n), func() (bool, string) {
		q := b.queued()
		return q == n, fmt.Sprintf("%d queued", q)
	})
}

func waitIdle[T any](t *testing.T, b *Batcher[T]) {
	t.Helper()
	wait.ForState(t, "the Batcher idle", func() (bool, string) {
		b.mu.Lock()
		running, queued := b.running, len(b.queue)
		b.mu.Unlock()
		return running == 0 && queued == 0, fmt.Sprintf("%d running, %d queued", running, queued)
	})
}

func (b *Batcher[T]) queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}
