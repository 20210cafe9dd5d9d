package privacy_test

import (
	"context"
	"testing"
	"time"

	"callbridge"
	"callbridge/dialplan"
	"callbridge/internal/wait"
	"callbridge/privacy"
	"callbridge/privacy/privacytest"
)

// tX is the virtual number of the index tests.
const tX = callbridge.Number("4930100100")

// fakeStore is a LineStore of func fields.
type fakeStore struct {
	all    func(fn func(*callbridge.VirtualNumber, []*callbridge.Binding) error) error
	line   func(x callbridge.Number) (*callbridge.VirtualNumber, []*callbridge.Binding, error)
	listen func(ctx context.Context, changed func(callbridge.Number), resync func(), ready chan<- struct{}) error
}

var _ privacy.LineStore = (*fakeStore)(nil)

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
	ix := privacy.NewIndex(store, nil)
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
	wait.For(t, "the change to reach the index", func() bool { return ix.Len() == 1 })
	if l, _ := ix.Line(ctx, tX); l == nil || l.Gateway != "carrier-2" {
		t.Errorf("after change: got %+v, want gateway carrier-2", l)
	}
	delete(db, tX)
	changes <- tX
	wait.For(t, "the deletion to reach the index", func() bool { return ix.Len() == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// BenchmarkDecide is the routing decision alone on a line of four pairs.
func BenchmarkDecide(b *testing.B) {
	ix, probes := privacytest.Lines(4)
	l, _ := ix.Line(context.Background(), probes[0][0])
	req := &dialplan.Request{Destination: l.X, DestinationRaw: string(l.X), Caller: probes[0][1], Context: "public", UniqueID: "0f1e2d3c-4b5a-4697-8877-665544332211"}
	now := time.Now()
	for b.Loop() {
		if d := dialplan.Decide(req, l, now); !d.Routed() {
			b.Fatal(d.Reason)
		}
	}
}
