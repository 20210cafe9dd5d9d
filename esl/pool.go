package esl

import (
	"context"
	"math"
	"sync"
	"time"

	"callbridge"
)

// limiter holds a node's call pacing: a token bucket of MaxCPS tokens
// refilled at MaxCPS per second, and a count of active calls.
type limiter struct {
	mu     sync.Mutex
	tokens int64 // in billionths of a token
	last   time.Time
	active int
	primed bool
}

func (l *limiter) activeCalls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active
}

// spare returns how many more calls the node may take now (MaxInt when
// unlimited) and whether a token is available. l.mu must be held.
func (l *limiter) spare(cfg *Config, now time.Time) (int, bool) {
	const unit = int64(time.Second)
	if cfg.MaxCPS > 0 {
		capacity := int64(cfg.MaxCPS) * unit
		if !l.primed {
			l.tokens, l.last, l.primed = capacity, now, true
		}
		elapsed := now.Sub(l.last)
		if elapsed > time.Second {
			elapsed = time.Second
		}
		if elapsed > 0 {
			l.tokens = min(capacity, l.tokens+int64(elapsed)*int64(cfg.MaxCPS))
		}
		l.last = now
	}
	spare := math.MaxInt
	if cfg.MaxCalls > 0 {
		spare = cfg.MaxCalls - l.active
	}
	return spare, cfg.MaxCPS == 0 || l.tokens >= unit
}

// Pool places calls on the ready node (Client.Ready: connected, and its
// commands complete) with the most spare capacity, honouring each node's
// Config.MaxCPS and Config.MaxCalls.
type Pool struct {
	clients []*Client
	// now is the clock; tests replace it.
	now func() time.Time

	mu   sync.Mutex
	next int
}

// NewPool returns a pool of clients; each client's Run must be called
// separately.
func NewPool(clients ...*Client) *Pool {
	return &Pool{clients: append([]*Client(nil), clients...), now: time.Now}
}

// Clients returns the pool's clients.
func (p *Pool) Clients() []*Client { return append([]*Client(nil), p.clients...) }

// Lookup returns the client with the given node name, or nil.
func (p *Pool) Lookup(name string) *Client {
	for _, c := range p.clients {
		if c.Name() == name {
			return c
		}
	}
	return nil
}

// Acquire reserves one call on the ready node with the most spare
// capacity that has a call-per-second token, and returns its client and a
// release function to call once the call has ended (it is idempotent).
// It does not wait for capacity. Errors (*callbridge.Error): EUNAVAILABLE
// when no node is ready, ERATELIMIT when every ready node is at
// its call or calls-per-second limit; ctx.Err() if ctx is done.
func (p *Pool) Acquire(ctx context.Context) (*Client, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	n := len(p.clients)
	best, bestSpare, ready := -1, 0, 0
	for k := 0; k < n; k++ {
		i := (p.next + k) % n
		c := p.clients[i]
		if !c.Ready() {
			continue
		}
		ready++
		c.lim.mu.Lock()
		spare, token := c.lim.spare(&c.cfg, now)
		c.lim.mu.Unlock()
		if spare > 0 && token && spare > bestSpare {
			best, bestSpare = i, spare
		}
	}
	if ready == 0 {
		return nil, nil, callbridge.Errorf(callbridge.EUNAVAILABLE, "esl: no FreeSWITCH node is ready")
	}
	if best < 0 {
		return nil, nil, callbridge.Errorf(callbridge.ERATELIMIT, "esl: every FreeSWITCH node is at its call limit")
	}
	p.next = (best + 1) % n
	c := p.clients[best]
	c.lim.mu.Lock()
	if c.cfg.MaxCPS > 0 {
		c.lim.tokens -= int64(time.Second)
	}
	c.lim.active++
	c.lim.mu.Unlock()
	var once sync.Once
	return c, func() {
		once.Do(func() {
			c.lim.mu.Lock()
			c.lim.active--
			c.lim.mu.Unlock()
		})
	}, nil
}

// MaxCPS returns how many calls per second the connected nodes take
// together under their Config.MaxCPS; 0 when one of them has no limit or
// none is connected.
func (p *Pool) MaxCPS() int {
	sum := 0
	for _, c := range p.clients {
		if c.State() != StateConnected {
			continue
		}
		if c.cfg.MaxCPS <= 0 {
			return 0
		}
		sum += c.cfg.MaxCPS
	}
	return sum
}
