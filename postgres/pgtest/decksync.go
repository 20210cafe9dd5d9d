package pgtest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"callbridge/postgres"
	"callbridge/rating"
)

// RunDeckSync loads db's rate decks into a new registry and keeps it
// current by LISTEN/NOTIFY until the test ends, as serve does. It returns
// once the decks are loaded (within 10 s), with the sync for tests that
// refresh or inspect it. log may be nil.
func RunDeckSync(tb testing.TB, db *postgres.DB, log *slog.Logger) (*rating.Registry, *postgres.DeckSync) {
	tb.Helper()
	return RunDeckSyncWith(tb, db, log, nil)
}

// RunDeckSyncWith is RunDeckSync with the sync set up by tweak (if not
// nil) before it runs: its MaxDeckRates, say.
func RunDeckSyncWith(tb testing.TB, db *postgres.DB, log *slog.Logger, tweak func(*postgres.DeckSync)) (*rating.Registry, *postgres.DeckSync) {
	tb.Helper()
	reg := &rating.Registry{}
	sync := postgres.NewDeckSync(db, reg, log)
	sync.RetryDelay = 20 * time.Millisecond
	if tweak != nil {
		tweak(sync)
	}
	runSync(tb, "DeckSync", sync.Run)
	return reg, sync
}

// runSync runs a sync's Run until the test ends, failing the test if it
// returns an error, and returns once Run closed ready (within 10 s).
func runSync(tb testing.TB, name string, run func(ctx context.Context, ready chan<- struct{}) error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- run(ctx, ready) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("%s.Run: %v", name, err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		tb.Fatalf("%s.Run: %v", name, err)
	case <-time.After(10 * time.Second):
		tb.Fatalf("%s did not load within 10 s", name)
	}
}
