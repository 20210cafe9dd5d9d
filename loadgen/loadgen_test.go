package loadgen

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.9, 900 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.Quantile(tc.q)
		if diff := float64(got-tc.want) / float64(tc.want); diff < 0 || diff > 0.03 {
			t.Errorf("Quantile(%v) = %v, want %v within +3%%", tc.q, got, tc.want)
		}
	}
	if h.Max() != time.Second || h.Count() != 1000 {
		t.Errorf("Max, Count = %v, %d", h.Max(), h.Count())
	}
	if NewHistogram().Quantile(0.5) != 0 {
		t.Errorf("empty histogram quantile is not 0")
	}
	h.Record(time.Hour) // beyond the last bucket: clamped, max kept
	if h.Max() != time.Hour {
		t.Errorf("Max = %v, want 1h", h.Max())
	}
}

func TestRunPacesAndCounts(t *testing.T) {
	var calls atomic.Int64
	res := Run{
		Rate:     2000,
		Requests: 200,
		Duration: 10 * time.Second,
		Do: func(ctx context.Context, i int) error {
			calls.Add(1)
			if i%10 == 0 {
				return errors.New("boom")
			}
			return nil
		},
	}.Execute(context.Background())
	if res.Sent != 200 || calls.Load() != 200 || res.OK != 180 || res.Failed != 20 {
		t.Fatalf("result %v; want 200 sent, 180 ok, 20 failed", res)
	}
	// 200 requests at 2000/s are scheduled over 100 ms: the run cannot
	// finish sooner than the schedule.
	if res.Elapsed < 99*time.Millisecond {
		t.Errorf("elapsed %v: the run did not pace", res.Elapsed)
	}
	if res.FirstError == nil || res.Latency.Count() != 200 {
		t.Errorf("first error %v, latency count %d", res.FirstError, res.Latency.Count())
	}
}

func TestRunStopsOnContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := Run{Rate: 10, Duration: time.Hour, Do: func(context.Context, int) error { return nil }}.Execute(ctx)
	if res.Sent > 1 {
		t.Errorf("sent %d requests after cancellation", res.Sent)
	}
}
