package controller

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// limiterClock is a manual time source for the limiter.
type limiterClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *limiterClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *limiterClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestLimiterBurstThenRate(t *testing.T) {
	clk := &limiterClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := newLimiter(RateLimit{PerSecond: 10, Burst: 5}, clk.now)
	for i := range 5 {
		if ok, _ := l.allow("k"); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.allow("k")
	if ok {
		t.Fatal("request past the burst allowed")
	}
	if wait != 100*time.Millisecond {
		t.Errorf("wait: got %v, want %v", wait, 100*time.Millisecond)
	}
	clk.advance(99 * time.Millisecond)
	if ok, _ := l.allow("k"); ok {
		t.Error("allowed before a token was earned")
	}
	clk.advance(time.Millisecond)
	if ok, _ := l.allow("k"); !ok {
		t.Error("refused after a token was earned")
	}
	// Another key has its own bucket.
	if ok, _ := l.allow("other"); !ok {
		t.Error("a second key was limited by the first")
	}
	// After a long idle time the burst is back, and no more than it.
	clk.advance(time.Hour)
	n := 0
	for {
		if ok, _ := l.allow("k"); !ok {
			break
		}
		n++
	}
	if n != 5 {
		t.Errorf("burst after idle: got %d, want 5", n)
	}
}

func TestLimiterSustainedRate(t *testing.T) {
	clk := &limiterClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := newLimiter(RateLimit{PerSecond: 50, Burst: 100}, clk.now)
	allowed := 0
	// 10 s of 1000 requests per second: the burst plus 50 per second.
	for range 10000 {
		if ok, _ := l.allow("k"); ok {
			allowed++
		}
		clk.advance(time.Millisecond)
	}
	if want := 100 + 50*10; allowed < want-1 || allowed > want+1 {
		t.Errorf("allowed: got %d, want %d±1", allowed, want)
	}
}

func TestLimiterDisabled(t *testing.T) {
	for _, r := range []RateLimit{{}, {PerSecond: -1, Burst: 10}, {PerSecond: 0, Burst: 10}} {
		if l := newLimiter(r, nil); l != nil {
			t.Errorf("newLimiter(%+v): got a limiter, want nil", r)
		}
	}
}

func TestLimiterForgetsRefilledBuckets(t *testing.T) {
	clk := &limiterClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := newLimiter(RateLimit{PerSecond: 100, Burst: 10}, clk.now)
	for i := range 1000 {
		l.allow(fmt.Sprint("key", i))
	}
	if got := l.size(); got != 1000 {
		t.Fatalf("size: got %d, want 1000", got)
	}
	clk.advance(2 * sweepEvery)
	l.allow("fresh")
	if got := l.size(); got != 1 {
		t.Errorf("size after idle sweep: got %d, want 1", got)
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	clk := &limiterClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := newLimiter(RateLimit{PerSecond: 1, Burst: 3, MaxKeys: 100}, clk.now)
	for i := range 10000 {
		if ok, _ := l.allow(fmt.Sprint("key", i)); !ok {
			t.Fatalf("a new key was refused at %d", i)
		}
		clk.advance(time.Microsecond)
	}
	if got := l.size(); got > 100 {
		t.Errorf("size: got %d, want at most 100", got)
	}
	// A busy key keeps its empty bucket while idle keys are evicted.
	for range 3 {
		l.allow("busy")
	}
	for i := range 200 {
		l.allow(fmt.Sprint("idle", i))
	}
	if ok, _ := l.allow("busy"); ok {
		t.Error("the busy key's empty bucket was evicted before refilled ones")
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := newLimiter(RateLimit{PerSecond: 0.001, Burst: 100}, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := map[string]int{}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				k := fmt.Sprint("key", (g+i)%4)
				if ok, _ := l.allow(k); ok {
					mu.Lock()
					allowed[k]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for k, n := range allowed {
		if n != 100 {
			t.Errorf("%s: got %d allowed, want exactly the burst of 100", k, n)
		}
	}
}

func TestRateLimitKeyHidesTheKey(t *testing.T) {
	const key = "cbk_secretsecretsecretsecret"
	got := rateLimitKey("acc", key)
	if strings.Contains(got, "secret") {
		t.Errorf("bucket name %q contains the API key", got)
	}
	if got == rateLimitKey("acc", key+"2") {
		t.Error("two keys of one account share a bucket")
	}
	if got == rateLimitKey("acc2", key) {
		t.Error("two accounts share a bucket")
	}
}

func BenchmarkLimiterAllow(b *testing.B) {
	l := newLimiter(RateLimit{PerSecond: 1e9, Burst: 1 << 30}, nil)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = rateLimitKey(fmt.Sprint("account", i), fmt.Sprint("cbk_key", i))
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.allow(keys[i&1023])
			i++
		}
	})
}
