package esl

import (
	"context"
	"testing"
	"time"

	"callbridge"
)

// fakeNode returns a client in the given state without a server, for
// testing Pool's choices.
func fakeNode(name string, st State, cps, calls int) *Client {
	c := NewClient(Config{Name: name, Addr: name + ":8021", Password: "x", MaxCPS: cps, MaxCalls: calls})
	c.state.Store(int32(st))
	c.health.set(st == StateConnected, "", time.Millisecond)
	return c
}

func TestPoolPicksMostSpare(t *testing.T) {
	down := fakeNode("down", StateDisconnected, 0, 100)
	a := fakeNode("a", StateConnected, 0, 2)
	b := fakeNode("b", StateConnected, 0, 3)
	p := NewPool(down, a, b)
	ctx := context.Background()
	var got []string
	var releases []func()
	for range 5 {
		c, release, err := p.Acquire(ctx)
		if err != nil {
			t.Fatalf("acquire %d: %v", len(got), err)
		}
		got = append(got, c.Name())
		releases = append(releases, release)
	}
	// b (3 spare) first, then whichever has more spare; never "down".
	want := []string{"b", "a", "b", "a", "b"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if _, _, err := p.Acquire(ctx); callbridge.ErrorCode(err) != callbridge.ERATELIMIT {
		t.Fatalf("got %v, want ERATELIMIT", err)
	}
	releases[1]()
	releases[1]() // idempotent
	if st := a.Stats(); st.ActiveCalls != 1 {
		t.Errorf("got %d active calls on a, want 1", st.ActiveCalls)
	}
	c, _, err := p.Acquire(ctx)
	if err != nil || c.Name() != "a" {
		t.Fatalf("got %v, %v, want a", c, err)
	}
	if p.Lookup("b") != b || p.Lookup("nope") != nil || len(p.Clients()) != 3 {
		t.Error("Lookup or Clients wrong")
	}
}

func TestPoolCPS(t *testing.T) {
	a := fakeNode("a", StateConnected, 3, 0)
	p := NewPool(a)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	ctx := context.Background()
	for i := range 3 {
		if _, _, err := p.Acquire(ctx); err != nil {
			t.Fatalf("acquire %d: %v", i, err)
		}
	}
	if _, _, err := p.Acquire(ctx); callbridge.ErrorCode(err) != callbridge.ERATELIMIT {
		t.Fatalf("got %v, want ERATELIMIT", err)
	}
	now = now.Add(time.Second/3 + time.Millisecond) // one token back
	if _, _, err := p.Acquire(ctx); err != nil {
		t.Fatalf("after 1/3 s: %v", err)
	}
	if _, _, err := p.Acquire(ctx); callbridge.ErrorCode(err) != callbridge.ERATELIMIT {
		t.Fatalf("got %v, want ERATELIMIT", err)
	}
	now = now.Add(time.Hour) // refills to the burst, not beyond
	for i := range 3 {
		if _, _, err := p.Acquire(ctx); err != nil {
			t.Fatalf("after an hour, acquire %d: %v", i, err)
		}
	}
	if _, _, err := p.Acquire(ctx); callbridge.ErrorCode(err) != callbridge.ERATELIMIT {
		t.Fatalf("got %v, want ERATELIMIT", err)
	}
}

func TestPoolUnavailable(t *testing.T) {
	p := NewPool(fakeNode("a", StateConnecting, 0, 0), fakeNode("b", StateClosed, 0, 0))
	if _, _, err := p.Acquire(context.Background()); callbridge.ErrorCode(err) != callbridge.EUNAVAILABLE {
		t.Fatalf("got %v, want EUNAVAILABLE", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := NewPool().Acquire(ctx); err != context.Canceled {
		t.Fatalf("got %v, want Canceled", err)
	}
}

// TestPoolLiveNodes runs real clients: one against a server, one against
// an address nobody listens on.
func TestPoolLiveNodes(t *testing.T) {
	f := newFakeFS(t)
	up, _ := connected(t, f, Config{Name: "up", MaxCalls: 1})
	dead := newFakeFS(t)
	deadAddr := dead.addr()
	dead.close()
	down := startClient(t, Config{Name: "down", Addr: deadAddr, MaxCalls: 100})
	p := NewPool(down, up)
	c, release, err := p.Acquire(ctxT(t))
	if err != nil || c != up {
		t.Fatalf("got %v, %v, want up", c, err)
	}
	if _, _, err := p.Acquire(ctxT(t)); callbridge.ErrorCode(err) != callbridge.ERATELIMIT {
		t.Fatalf("got %v, want ERATELIMIT", err)
	}
	release()
	if down.State() == StateConnected {
		t.Error("down is connected")
	}
}
