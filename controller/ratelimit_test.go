package controller

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"callbridge"

	"github.com/gin-gonic/gin"
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
		if ok, _ := l.allow(bk("k")); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.allow(bk("k"))
	if ok {
		t.Fatal("request past the burst allowed")
	}
	if wait != 100*time.Millisecond {
		t.Errorf("wait: got %v, want %v", wait, 100*time.Millisecond)
	}
	clk.advance(99 * time.Millisecond)
	if ok, _ := l.allow(bk("k")); ok {
		t.Error("allowed before a token was earned")
	}
	clk.advance(time.Millisecond)
	if ok, _ := l.allow(bk("k")); !ok {
		t.Error("refused after a token was earned")
	}
	// Another key has its own bucket.
	if ok, _ := l.allow(bk("other")); !ok {
		t.Error("a second key was limited by the first")
	}
	// After a long idle time the burst is back, and no more than it.
	clk.advance(time.Hour)
	n := 0
	for {
		if ok, _ := l.allow(bk("k")); !ok {
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
		if ok, _ := l.allow(bk("k")); ok {
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
		l.allow(bk(fmt.Sprint("key", i)))
	}
	if got := l.size(); got != 1000 {
		t.Fatalf("size: got %d, want 1000", got)
	}
	clk.advance(2 * sweepEvery)
	l.allow(bk("fresh"))
	if got := l.size(); got != 1 {
		t.Errorf("size after idle sweep: got %d, want 1", got)
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	clk := &limiterClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := newLimiter(RateLimit{PerSecond: 1, Burst: 3, MaxKeys: 100}, clk.now)
	for i := range 10000 {
		if ok, _ := l.allow(bk(fmt.Sprint("key", i))); !ok {
			t.Fatalf("a new key was refused at %d", i)
		}
		clk.advance(time.Microsecond)
	}
	if got := l.size(); got > 100 {
		t.Errorf("size: got %d, want at most 100", got)
	}
	// A busy key keeps its empty bucket while idle keys are evicted.
	for range 3 {
		l.allow(bk("busy"))
	}
	for i := range 200 {
		l.allow(bk(fmt.Sprint("idle", i)))
	}
	if ok, _ := l.allow(bk("busy")); ok {
		t.Error("the busy key's empty bucket was evicted before refilled ones")
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := newLimiter(RateLimit{PerSecond: 0.001, Burst: 100}, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := map[bucketKey]int{}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				k := bk(fmt.Sprint("key", (g+i)%4))
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
			t.Errorf("%s: got %d allowed, want exactly the burst of 100", k.account, n)
		}
	}
}

// bk is a bucket of an account without a key, for limiter tests.
func bk(account string) bucketKey { return bucketKey{account: account} }

func TestRateLimitKeyHidesTheKey(t *testing.T) {
	const key = "cbk_secretsecretsecretsecret"
	got := rateLimitKey("acc", key)
	if strings.Contains(fmt.Sprintf("%v %s", got, got.key[:]), "secret") {
		t.Errorf("bucket name %v contains the API key", got)
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
	keys := make([]bucketKey, 1024)
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

// BenchmarkRateLimitMiddleware measures what the limit adds to a request
// (naming the key's bucket with a SHA-256, taking a token): "off" is the
// same chain without a limiter. A stand-in for authenticate puts a fixed
// account in the context.
func BenchmarkRateLimitMiddleware(b *testing.B) {
	gin.SetMode(gin.ReleaseMode)
	acc := &callbridge.Account{ID: "6f1c1f2e-3b0a-4c47-9a52-8c1a6e3f9d10"}
	for _, bc := range []struct {
		name string
		l    *limiter
	}{{"off", nil}, {"on", newLimiter(RateLimit{PerSecond: 1e9, Burst: 1 << 30}, nil)}} {
		b.Run(bc.name, func(b *testing.B) {
			e := gin.New()
			e.Use(func(c *gin.Context) {
				c.Request = c.Request.WithContext(callbridge.NewContextWithAccount(c.Request.Context(), acc))
			}, rateLimit(bc.l))
			e.GET("/v1/account", func(c *gin.Context) { c.Status(http.StatusNoContent) })
			req := httptest.NewRequest("GET", "/v1/account", nil)
			req.Header.Set("Authorization", "Bearer cbk_CgJ7EmM_FNsNmKYMT5byM8fKzpR2UXo6cIA63EOlohs")
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				e.ServeHTTP(w, req)
				if w.Code != http.StatusNoContent {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
