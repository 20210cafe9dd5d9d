package controller

import (
	"crypto/sha256"
	"math"
	"net/netip"
	"sync"
	"time"

	"callbridge"
	"callbridge/controller/internal/handler"

	"github.com/gin-gonic/gin"
)

// RateLimit configures the per-API-key request limit of the /v1 routes: a
// token bucket per key that refills at PerSecond and holds Burst tokens.
// The zero value disables the limit.
type RateLimit struct {
	// PerSecond is the sustained rate of requests each API key may make;
	// 0 or less disables rate limiting.
	PerSecond float64
	// Burst is how many requests a key may make at once after being idle;
	// less than 1 means 1.
	Burst int
	// MaxKeys bounds how many buckets are kept in memory (default 100000).
	// Buckets that have refilled are dropped first, which loses nothing:
	// a full bucket and a missing one behave the same.
	MaxKeys int
}

// sweepEvery is how often allow drops refilled buckets.
const sweepEvery = time.Minute

// limiter is a set of token buckets keyed by API key. Each bucket is kept
// as one number, its theoretical arrival time (the generic cell rate
// algorithm): the instant at which the bucket will be full again. A
// request is allowed when, after adding one emission interval, that
// instant is no further in the future than the burst allows. A bucket
// whose instant has passed is full, so it is forgotten.
type limiter struct {
	interval  time.Duration // time to earn one token
	tolerance time.Duration // interval * burst: how far ahead tat may run
	maxKeys   int
	now       func() time.Time

	mu        sync.Mutex
	tat       map[bucketKey]time.Time
	lastSweep time.Time
}

// bucketKey names a bucket: the account and a digest of the API key, so
// each key of an account has its own bucket and the limiter never holds a
// usable key.
type bucketKey struct {
	account string
	key     [16]byte
}

// newLimiter returns a limiter for r, or nil when r disables limiting.
func newLimiter(r RateLimit, now func() time.Time) *limiter {
	if r.PerSecond <= 0 || math.IsNaN(r.PerSecond) || math.IsInf(r.PerSecond, 0) {
		return nil
	}
	burst := max(r.Burst, 1)
	interval := time.Duration(float64(time.Second) / r.PerSecond)
	if interval <= 0 {
		interval = 1
	}
	maxKeys := r.MaxKeys
	if maxKeys <= 0 {
		maxKeys = 100000
	}
	if now == nil {
		now = time.Now
	}
	return &limiter{
		interval:  interval,
		tolerance: interval * time.Duration(burst),
		maxKeys:   maxKeys,
		now:       now,
		tat:       make(map[bucketKey]time.Time),
	}
}

// allow takes a token from key's bucket. When the bucket is empty it
// answers false and how long until a token is available.
func (l *limiter) allow(key bucketKey) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	tat, ok := l.tat[key]
	if !ok || tat.Before(now) {
		tat = now
	}
	next := tat.Add(l.interval)
	if ahead := next.Sub(now); ahead > l.tolerance {
		return false, ahead - l.tolerance
	}
	if !ok && len(l.tat) >= l.maxKeys {
		l.evict(now)
	}
	l.tat[key] = next
	if now.Sub(l.lastSweep) > sweepEvery {
		l.sweep(now)
	}
	return true, 0
}

// wait reports, without taking a token, whether key's bucket is empty
// and how long until it holds one again.
func (l *limiter) wait(key bucketKey) (time.Duration, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	tat, ok := l.tat[key]
	if !ok || tat.Before(now) {
		return 0, false
	}
	if ahead := tat.Add(l.interval).Sub(now); ahead > l.tolerance {
		return ahead - l.tolerance, true
	}
	return 0, false
}

// sweep forgets every bucket that has refilled.
func (l *limiter) sweep(now time.Time) {
	for k, tat := range l.tat {
		if !tat.After(now) {
			delete(l.tat, k)
		}
	}
	l.lastSweep = now
}

// evict makes room for one bucket: it sweeps, and when every bucket is
// still in use it drops the one closest to full, which forgives that key
// at most a burst of requests.
func (l *limiter) evict(now time.Time) {
	l.sweep(now)
	if len(l.tat) < l.maxKeys {
		return
	}
	var oldest bucketKey
	var oldestTAT time.Time
	first := true
	for k, tat := range l.tat {
		if first || tat.Before(oldestTAT) {
			oldest, oldestTAT, first = k, tat, false
		}
	}
	delete(l.tat, oldest)
}

// size returns how many buckets are held.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.tat)
}

// rateLimitKey names the bucket of a request's account and API key.
func rateLimitKey(accountID, apiKey string) bucketKey {
	k := bucketKey{account: accountID}
	sum := sha256.Sum256([]byte(apiKey))
	copy(k.key[:], sum[:])
	return k
}

// rateLimit answers 429 with Retry-After once the request's API key has
// used its bucket. It runs after authenticate, so only valid keys get
// buckets; a nil limiter lets everything through.
func rateLimit(l *limiter) gin.HandlerFunc {
	return func(c *gin.Context) {
		if l == nil {
			c.Next()
			return
		}
		a := handler.Account(c)
		key, _ := bearer(c)
		if a == nil {
			c.Next()
			return
		}
		ok, wait := l.allow(rateLimitKey(a.ID, key))
		if !ok {
			handler.WriteError(c, retryAfter(wait, "too many requests for this API key; retry in %d s"))
			return
		}
		c.Next()
	}
}

// defaultAuthFailureLimit is Server.AuthFailureLimit's default: five
// failed authentications a second per client address, twenty at once.
func defaultAuthFailureLimit() RateLimit { return RateLimit{PerSecond: 5, Burst: 20} }

// clientKey names the failure bucket of a request's client: its
// connection's address (X-Forwarded-For is the client's to forge), an
// IPv6 one by its /64, which a single host can hop around in.
func clientKey(remoteAddr string) bucketKey {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return bucketKey{account: remoteAddr}
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		ip = netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return bucketKey{account: ip.String()}
}

// retryAfter is the ERATELIMIT answer for a wait.
func retryAfter(wait time.Duration, format string) error {
	secs := max(int(math.Ceil(wait.Seconds())), 1)
	return &callbridge.RetryAfter{Seconds: secs, Err: callbridge.Errorf(callbridge.ERATELIMIT, format, secs)}
}
