// Package loadgen drives load at a fixed rate and measures latency. It is
// callbridge's own load generator for `make bench` and `callbridge
// loadgen`: open-loop pacing (requests are scheduled at start+i/rate
// whether or not earlier ones finished), latency measured from each
// request's scheduled time so a stalled server cannot hide its queueing
// (no coordinated omission), bounded in count and time, and it stops on
// its own. It only ever sends where its caller's Do function sends.
package loadgen

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Run describes one load run.
type Run struct {
	// Rate is requests per second.
	Rate float64
	// Duration bounds the run; Requests, when set, bounds the count too.
	Duration time.Duration
	Requests int
	// Concurrency caps requests in flight (default 64).
	Concurrency int
	// Do performs request i. An error counts as a failure.
	Do func(ctx context.Context, i int) error
}

// Result is what a run measured.
type Result struct {
	Sent, OK, Failed int64
	Elapsed          time.Duration
	Latency          *Histogram
	FirstError       error
}

// Throughput is successful requests per second over the run.
func (r Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// String summarises the result in one line.
func (r Result) String() string {
	return fmt.Sprintf("sent=%d ok=%d failed=%d elapsed=%s rate=%.0f/s p50=%s p90=%s p99=%s max=%s",
		r.Sent, r.OK, r.Failed, r.Elapsed.Round(time.Millisecond), r.Throughput(),
		r.Latency.Quantile(0.50), r.Latency.Quantile(0.90), r.Latency.Quantile(0.99), r.Latency.Max())
}

// Execute performs the run and returns when every request sent has
// finished, the duration has passed, or ctx is done.
func (r Run) Execute(ctx context.Context) Result {
	if r.Rate <= 0 {
		r.Rate = 1
	}
	if r.Concurrency <= 0 {
		r.Concurrency = 64
	}
	if r.Duration <= 0 {
		r.Duration = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, r.Duration+30*time.Second)
	defer cancel()
	res := Result{Latency: NewHistogram()}
	var mu sync.Mutex
	var ok, failed, sent atomic.Int64
	slots := make(chan struct{}, r.Concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	interval := time.Duration(float64(time.Second) / r.Rate)
	timer := time.NewTimer(0)
	defer timer.Stop()
loop:
	for i := 0; r.Requests <= 0 || i < r.Requests; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= r.Duration {
			break
		}
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				break loop
			case <-timer.C:
			}
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		sent.Add(1)
		wg.Add(1)
		go func(i int, at time.Time) {
			defer wg.Done()
			defer func() { <-slots }()
			err := r.Do(ctx, i)
			lat := time.Since(at)
			mu.Lock()
			res.Latency.Record(lat)
			if err != nil && res.FirstError == nil {
				res.FirstError = err
			}
			mu.Unlock()
			if err != nil {
				failed.Add(1)
			} else {
				ok.Add(1)
			}
		}(i, at)
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Sent, res.OK, res.Failed = sent.Load(), ok.Load(), failed.Load()
	return res
}

// Histogram records durations in log-linear buckets (about 1% relative
// error) from 1 µs to about 100 s. It is not safe for concurrent use.
type Histogram struct {
	counts []int64
	n      int64
	max    time.Duration
}

const (
	subBuckets = 64 // per power of two
	maxPow     = 27 // 2^27 µs ≈ 134 s
)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]int64, subBuckets*(maxPow+1))}
}

func bucketOf(us int64) int {
	if us < 1 {
		us = 1
	}
	p := int(math.Floor(math.Log2(float64(us))))
	if p > maxPow {
		return subBuckets*(maxPow+1) - 1
	}
	lo := int64(1) << p
	sub := int((us - lo) * subBuckets / lo)
	return p*subBuckets + sub
}

func bucketValue(b int) time.Duration {
	p, sub := b/subBuckets, b%subBuckets
	lo := int64(1) << p
	us := lo + (int64(sub)+1)*lo/subBuckets
	return time.Duration(us) * time.Microsecond
}

// Record adds one observation.
func (h *Histogram) Record(d time.Duration) {
	h.counts[bucketOf(d.Microseconds())]++
	h.n++
	if d > h.max {
		h.max = d
	}
}

// Count is the number of observations.
func (h *Histogram) Count() int64 { return h.n }

// Max is the largest observation.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile returns the upper bound of the bucket holding quantile q
// (0 < q ≤ 1), never more than Max.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen int64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			if v := bucketValue(b); v < h.max {
				return v
			}
			return h.max
		}
	}
	return h.max
}
