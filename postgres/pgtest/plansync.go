package pgtest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"callbridge/postgres"
	"callbridge/routing"
)

// RunPlanSync loads db's route plans into a new set and keeps it current
// by LISTEN/NOTIFY until the test ends, pricing their tables with prices
// (nil: none). It returns once the plans are loaded (within 10 s).
func RunPlanSync(tb testing.TB, db *postgres.DB, prices routing.PriceSource, log *slog.Logger) (*routing.Plans, *postgres.PlanSync) {
	tb.Helper()
	plans := &routing.Plans{}
	sync := postgres.NewPlanSync(db, plans, prices, log)
	sync.RetryDelay = 20 * time.Millisecond
	sync.RefreshEvery = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- sync.Run(ctx, ready) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("PlanSync.Run: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		tb.Fatalf("PlanSync.Run: %v", err)
	case <-time.After(10 * time.Second):
		tb.Fatal("PlanSync did not load within 10 s")
	}
	return plans, sync
}
