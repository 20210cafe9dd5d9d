// Package batch groups concurrent calls of one statement into batches
// (group commit), for the postgres services whose writes are many and
// small.
package batch

import (
	"context"
	"slices"
	"sync"
)

// Batcher groups concurrent calls of one statement into batches (group
// commit): each round trip and commit then serves many calls instead of
// one. Set its fields before the first Do.
//
// A call that finds fewer than MaxRunning batches in flight flushes the
// queue itself, with every call queued since; a call that finds them all
// busy waits in the queue for the next one. So an idle service adds no
// latency to a call, and a busy one sends one statement for many. A
// caller whose call is done while others still wait hands the queue to a
// goroutine of its own, which flushes until the queue is empty and then
// ends; no goroutine outlives the work queued.
type Batcher[T any] struct {
	MaxRunning int // batches in flight at once
	MaxBatch   int // calls per batch
	// Flush runs one batch and records each call's outcome in the call.
	Flush func(batch []T)

	mu      sync.Mutex
	queue   []*batchItem[T]
	running int
}

type batchItem[T any] struct {
	v    T
	done chan struct{} // closed once Flush has run the batch holding v
}

// Do runs v in a batch and returns once the batch has been flushed. If ctx
// ends while v is still queued, v is dropped and ctx's error returned;
// once its batch is taken, v's outcome is up to the statement, so Do
// waits for it whatever ctx does.
func (b *Batcher[T]) Do(ctx context.Context, v T) error {
	it := &batchItem[T]{v: v, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, it)
	if b.running < b.MaxRunning {
		b.running++
		b.mu.Unlock()
		b.run(it)
		<-it.done // another runner may have taken it
		return nil
	}
	b.mu.Unlock()
	select {
	case <-it.done:
		return nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	if i := slices.Index(b.queue, it); i >= 0 {
		b.queue = slices.Delete(b.queue, i, i+1)
		b.mu.Unlock()
		return ctx.Err()
	}
	b.mu.Unlock()
	<-it.done
	return nil
}

// run flushes batches until the queue is empty, holding a running slot
// it gives back when it returns (even by a panic of Flush). A runner for a
// caller (own != nil) stops when the caller's own call is done and hands
// what is left, with its slot, to a goroutine, so the caller is answered
// without waiting for other calls' batches.
func (b *Batcher[T]) run(own *batchItem[T]) {
	handedOff := false
	defer func() {
		if !handedOff {
			b.mu.Lock()
			b.running--
			b.mu.Unlock()
		}
	}()
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.mu.Unlock()
			return
		}
		if own != nil && isClosed(own.done) {
			handedOff = true
			b.mu.Unlock()
			go b.run(nil)
			return
		}
		n := min(len(b.queue), b.MaxBatch)
		batch := slices.Clone(b.queue[:n])
		b.queue = slices.Delete(b.queue, 0, n)
		b.mu.Unlock()
		b.flushItems(batch)
	}
}

func (b *Batcher[T]) flushItems(items []*batchItem[T]) {
	defer func() {
		for _, it := range items {
			close(it.done)
		}
	}()
	vs := make([]T, len(items))
	for i, it := range items {
		vs[i] = it.v
	}
	b.Flush(vs)
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
