package esl

import (
	"context"
	"sync"

	"callbridge/esl/freeswitch"
)

// Subscription receives every event of the client's event connection, in
// the order they arrived (so in order per call), plus a freeswitch.SocketConnected
// event after each (re)connection. Each subscription has its own queue:
// the socket reader appends and never waits for the consumer. A queue that
// exceeds its limit ends the subscription with ErrOverflow rather than
// losing events silently.
type Subscription struct {
	c     *Client
	limit int

	mu     sync.Mutex
	q      []freeswitch.Event
	head   int
	ended  bool
	err    error
	wake   chan struct{}
	quit   chan struct{}
	out    chan freeswitch.Event
	closer sync.Once
}

// Subscribe starts a subscription whose queue holds at most buffer events
// (Config.SubscriptionBuffer when buffer <= 0).
func (c *Client) Subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = c.cfg.SubscriptionBuffer
	}
	s := &Subscription{
		c:     c,
		limit: buffer,
		wake:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
		out:   make(chan freeswitch.Event),
	}
	c.subsMu.Lock()
	if !c.running.Load() || c.State() != StateClosed {
		c.subs = append(c.subs, s)
		c.subsMu.Unlock()
		go s.deliver()
		return s
	}
	c.subsMu.Unlock()
	go s.deliver()
	s.end(ErrClosed)
	return s
}

// C returns the channel events are delivered on. It is closed when the
// subscription ends; Err then says why.
func (s *Subscription) C() <-chan freeswitch.Event { return s.out }

// Next returns the next event. Errors: ctx.Err(), or the subscription's
// end (ErrOverflow, ErrClosed).
func (s *Subscription) Next(ctx context.Context) (freeswitch.Event, error) {
	select {
	case e, ok := <-s.out:
		if !ok {
			return freeswitch.Event{}, s.Err()
		}
		return e, nil
	case <-ctx.Done():
		return freeswitch.Event{}, ctx.Err()
	}
}

// Err returns why the subscription ended: nil while it runs or after
// Close, ErrOverflow, or ErrClosed when the client's Run returned.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Len returns the number of queued events, not counting the one already
// waiting on C.
func (s *Subscription) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.q) - s.head
}

// Close ends the subscription and discards queued events.
func (s *Subscription) Close() { s.end(nil) }

func (s *Subscription) end(err error) {
	s.mu.Lock()
	if !s.ended {
		s.ended = true
		s.err = err
		s.q, s.head = nil, 0
	}
	s.mu.Unlock()
	s.closer.Do(func() { close(s.quit) })
	s.c.removeSub(s)
}

// push queues e; it never blocks.
func (s *Subscription) push(e freeswitch.Event) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	if len(s.q)-s.head >= s.limit {
		s.mu.Unlock()
		s.c.log.Error("esl: subscription overflow", "node", s.c.cfg.Name, "limit", s.limit)
		s.end(ErrOverflow)
		return
	}
	if s.head > 0 && s.head >= len(s.q)/2 && len(s.q) == cap(s.q) {
		n := copy(s.q, s.q[s.head:])
		clear(s.q[n:])
		s.q, s.head = s.q[:n], 0
	}
	s.q = append(s.q, e)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// deliver moves queued events to the consumer.
func (s *Subscription) deliver() {
	defer close(s.out)
	for {
		s.mu.Lock()
		if s.ended {
			s.mu.Unlock()
			return
		}
		if s.head == len(s.q) {
			s.q, s.head = s.q[:0], 0
			s.mu.Unlock()
			select {
			case <-s.wake:
				continue
			case <-s.quit:
				return
			}
		}
		e := s.q[s.head]
		s.q[s.head] = freeswitch.Event{}
		s.head++
		s.mu.Unlock()
		select {
		case s.out <- e:
		case <-s.quit:
			return
		}
	}
}

func (c *Client) dispatch(e freeswitch.Event) {
	c.subsMu.RLock()
	subs := c.subs
	c.subsMu.RUnlock()
	for _, s := range subs {
		s.push(e)
	}
}

func (c *Client) removeSub(s *Subscription) {
	c.subsMu.Lock()
	defer c.subsMu.Unlock()
	for i, x := range c.subs {
		if x == s {
			// Copy, so that dispatch may keep iterating its snapshot.
			subs := make([]*Subscription, 0, len(c.subs)-1)
			subs = append(subs, c.subs[:i]...)
			c.subs = append(subs, c.subs[i+1:]...)
			return
		}
	}
}

func (c *Client) endSubscriptions(err error) {
	c.subsMu.RLock()
	subs := c.subs
	c.subsMu.RUnlock()
	for _, s := range subs {
		s.end(err)
	}
}
