package privacy

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"callbridge"
	"callbridge/dialplan"
)

// LineStore is what Index needs from storage (postgres.BindingService
// implements it).
type LineStore interface {
	// RoutableBindings streams every number with its routable bindings.
	RoutableBindings(ctx context.Context, fn func(n *callbridge.VirtualNumber, bs []*callbridge.Binding) error) error
	// RoutableLine returns one number with its routable bindings, or a nil
	// number when it is in no pool.
	RoutableLine(ctx context.Context, x callbridge.Number) (*callbridge.VirtualNumber, []*callbridge.Binding, error)
	// ListenBindings reports changed numbers until ctx ends; resync means
	// notifications may have been lost.
	ListenBindings(ctx context.Context, changed func(callbridge.Number), resync func(), ready chan<- struct{}) error
}

// Index is the in-memory map from virtual number X to its pool entry
// and routable bindings that the dialplan endpoint answers from. Run keeps
// it coherent with the database through LISTEN/NOTIFY; a miss falls back
// to the database. Lookups never block on the database when they hit.
type Index struct {
	store  LineStore
	logger *slog.Logger

	mu    sync.RWMutex
	lines map[callbridge.Number]*dialplan.Line
	// seq counts applied changes, so a fallback lookup that raced with a
	// change does not store what it read.
	seq uint64
}

// NewIndex returns an empty index over store.
func NewIndex(store LineStore, logger *slog.Logger) *Index {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Index{store: store, logger: logger, lines: map[callbridge.Number]*dialplan.Line{}}
}

// NewLine builds the dialplan line of a number and its bindings.
func NewLine(n *callbridge.VirtualNumber, bs []*callbridge.Binding) *dialplan.Line {
	return &dialplan.Line{X: n.Number, AccountID: n.AccountID, Gateway: n.Gateway, Enabled: n.Enabled, Bindings: bs}
}

// Run listens for changes, rebuilds the index, then applies every change
// until ctx ends. ready, if not nil, is closed after the first rebuild.
// It returns the listener's error, or nil when ctx ends.
func (ix *Index) Run(ctx context.Context, ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes := make(chan callbridge.Number, 4096)
	resync := make(chan struct{}, 1)
	signal := func() {
		select {
		case resync <- struct{}{}:
		default:
		}
	}
	listening := make(chan struct{})
	lerr := make(chan error, 1)
	go func() {
		lerr <- ix.store.ListenBindings(ctx, func(x callbridge.Number) {
			select {
			case changes <- x:
			default:
				signal() // too far behind: start over
			}
		}, signal, listening)
	}()
	select {
	case <-listening:
	case err := <-lerr:
		return err
	case <-ctx.Done():
		return nil
	}
	// Listening before rebuilding: a change committed during the rebuild
	// is queued and applied after it.
	if err := ix.Rebuild(ctx); err != nil {
		return err
	}
	if ready != nil {
		close(ready)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-lerr:
			return err
		case <-resync:
			if err := ix.Rebuild(ctx); err != nil {
				ix.logger.Error("binding index rebuild", "err", err)
				signal()
			}
		case x := <-changes:
			if err := ix.Reload(ctx, x); err != nil {
				ix.logger.Error("binding index reload", "x", x, "err", err)
				ix.Forget(x)
			}
		}
	}
}

// Rebuild replaces the index with the database's current state.
func (ix *Index) Rebuild(ctx context.Context) error {
	lines := make(map[callbridge.Number]*dialplan.Line)
	err := ix.store.RoutableBindings(ctx, func(n *callbridge.VirtualNumber, bs []*callbridge.Binding) error {
		lines[n.Number] = NewLine(n, bs)
		return nil
	})
	if err != nil {
		return err
	}
	ix.mu.Lock()
	ix.lines = lines
	ix.seq++
	ix.mu.Unlock()
	ix.logger.Info("binding index rebuilt", "numbers", len(lines))
	return nil
}

// Reload reads one number from the database into the index.
func (ix *Index) Reload(ctx context.Context, x callbridge.Number) error {
	n, bs, err := ix.store.RoutableLine(ctx, x)
	if err != nil {
		return err
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.seq++
	if n == nil {
		delete(ix.lines, x)
		return nil
	}
	ix.lines[x] = NewLine(n, bs)
	return nil
}

// Forget drops x from the index, so the next lookup asks the database.
func (ix *Index) Forget(x callbridge.Number) {
	ix.mu.Lock()
	delete(ix.lines, x)
	ix.seq++
	ix.mu.Unlock()
}

// Set puts a line in the index directly (for benchmarks and tests that
// build an index without a database).
func (ix *Index) Set(l *dialplan.Line) {
	ix.mu.Lock()
	ix.lines[l.X] = l
	ix.seq++
	ix.mu.Unlock()
}

// Len returns the number of indexed numbers.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.lines)
}

// Line returns what the index knows of x, asking the database on a miss.
// It returns nil, nil when x is in no pool. Lines returned are shared:
// callers must not modify them.
func (ix *Index) Line(ctx context.Context, x callbridge.Number) (*dialplan.Line, error) {
	ix.mu.RLock()
	l, ok := ix.lines[x]
	seq := ix.seq
	ix.mu.RUnlock()
	if ok {
		return l, nil
	}
	if ix.store == nil {
		return nil, nil
	}
	n, bs, err := ix.store.RoutableLine(ctx, x)
	if err != nil {
		return nil, fmt.Errorf("privacy: binding index fallback: %w", err)
	}
	if n == nil {
		return nil, nil
	}
	l = NewLine(n, bs)
	ix.mu.Lock()
	if ix.seq == seq {
		ix.lines[x] = l
	}
	ix.mu.Unlock()
	return l, nil
}
