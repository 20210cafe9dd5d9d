package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	"callbridge"
	"callbridge/dialplan"
)

// fakeStore is a LineStore of func fields.
type fakeStore struct {
	all    func(fn func(*callbridge.VirtualNumber, []*callbridge.Binding) error) error
	line   func(x callbridge.Number) (*callbridge.VirtualNumber, []*callbridge.Binding, error)
	listen func(ctx context.Context, changed func(callbridge.Number), resync func(), ready chan<- struct{}) error
}

var _ LineStore = (*fakeStore)(nil)

func (f *fakeStore) RoutableBindings(_ context.Context, fn func(*callbridge.VirtualNumber, []*callbridge.Binding) error) error {
	return f.all(fn)
}

func (f *fakeStore) RoutableLine(_ context.Context, x callbridge.Number) (*callbridge.VirtualNumber, []*callbridge.Binding, error) {
	return f.line(x)
}

func (f *fakeStore) ListenBindings(ctx context.Context, changed func(callbridge.Number), resync func(), ready chan<- struct{}) error {
	return f.listen(ctx, changed, resync, ready)
}

func TestBindingIndexFallbackAndChanges(t *testing.T) {
	db := map[callbridge.Number]string{tX: "carrier-1"} // x → gateway
	lookups := 0
	changes := make(chan callbridge.Number)
	store := &fakeStore{
		all: func(fn func(*callbridge.VirtualNumber, []*callbridge.Binding) error) error { return nil },
		line: func(x callbridge.Number) (*callbridge.VirtualNumber, []*callbridge.Binding, error) {
			lookups++
			gw, ok := db[x]
			if !ok {
				return nil, nil, nil
			}
			return &callbridge.VirtualNumber{Number: x, Gateway: gw, Enabled: true}, nil, nil
		},
		listen: func(ctx context.Context, changed func(callbridge.Number), _ func(), ready chan<- struct{}) error {
			close(ready)
			for {
				select {
				case <-ctx.Done():
					return nil
				case x := <-changes:
					changed(x)
				}
			}
		},
	}
	ix := NewBindingIndex(store, nil)
	ctx := context.Background()
	// Before Run: a miss asks the store and keeps the answer.
	for range 2 {
		l, err := ix.Line(ctx, tX)
		if err != nil || l == nil || l.Gateway != "carrier-1" {
			t.Fatalf("got %+v, %v", l, err)
		}
	}
	if lookups != 1 {
		t.Errorf("got %d store lookups, want 1 (then served from memory)", lookups)
	}
	if l, err := ix.Line(ctx, "4930999999"); l != nil || err != nil {
		t.Errorf("unknown x: got %+v, %v, want nil, nil", l, err)
	}

	rctx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- ix.Run(rctx, ready) }()
	<-ready
	// The rebuild found nothing: the index is empty until asked again.
	if n := ix.Len(); n != 0 {
		t.Errorf("got %d lines after an empty rebuild, want 0", n)
	}
	db[tX] = "carrier-2"
	changes <- tX
	waitFor(t, "the change to reach the index", func() bool { return ix.Len() == 1 })
	if l, _ := ix.Line(ctx, tX); l == nil || l.Gateway != "carrier-2" {
		t.Errorf("after change: got %+v, want gateway carrier-2", l)
	}
	delete(db, tX)
	changes <- tX
	waitFor(t, "the deletion to reach the index", func() bool { return ix.Len() == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// benchLines builds an index of n active AXB bindings, four pairs per X,
// and returns it with the (x, caller) pairs that hit a binding.
func benchLines(n int) (*BindingIndex, [][2]callbridge.Number) {
	ix := NewBindingIndex(nil, nil)
	exp := time.Now().Add(24 * time.Hour)
	const perX = 4
	var probes [][2]callbridge.Number
	for i := 0; i < n/perX; i++ {
		x := callbridge.Number(fmt.Sprintf("4930%08d", i))
		l := &dialplan.Line{X: x, AccountID: tAcct, Gateway: "carrier-1", Enabled: true}
		for j := range perX {
			k := i*perX + j
			b := &callbridge.Binding{
				ID: fmt.Sprintf("%08x-0000-4000-8000-%012x", k, k), AccountID: tAcct, Mode: callbridge.ModeAXB, X: x,
				A: callbridge.Number(fmt.Sprintf("4917%09d", 2*k)), B: callbridge.Number(fmt.Sprintf("4917%09d", 2*k+1)),
				Status: callbridge.StatusActive, ExpiresAt: exp, CallerDisplay: callbridge.DisplayX,
			}
			l.Bindings = append(l.Bindings, b)
			if k%997 == 0 {
				probes = append(probes, [2]callbridge.Number{x, b.A}, [2]callbridge.Number{x, b.B})
			}
		}
		ix.Set(l)
	}
	return ix, probes
}

// BenchmarkDecide is the routing decision alone on a line of four pairs.
func BenchmarkDecide(b *testing.B) {
	ix, probes := benchLines(4)
	l, _ := ix.Line(context.Background(), probes[0][0])
	req := &dialplan.Request{Destination: l.X, DestinationRaw: string(l.X), Caller: probes[0][1], Context: "public", UniqueID: tBind}
	now := time.Now()
	for b.Loop() {
		if d := dialplan.Decide(req, l, now); !d.Routed() {
			b.Fatal(d.Reason)
		}
	}
}
