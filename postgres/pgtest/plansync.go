package pgtest

import (
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
	runSync(tb, "PlanSync", sync.Run)
	return plans, sync
}
