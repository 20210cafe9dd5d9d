// Package apptest runs controllers wired by app.New, the wiring of
// `callbridge serve`, for tests: the tests of the HTTP API build their
// server with it instead of wiring one by hand.
package apptest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"callbridge/app"
	"callbridge/billing"
	"callbridge/postgres"
)

// Config is a configuration for a test controller: no FreeSWITCH nodes,
// callbacks through gateway "carrier",
// state in the test's temporary directories, UTC, and every billing job
// off (a test runs the jobs it wants itself, at the time it chooses).
// Other settings are left at their zero values, as a test sets them.
func Config(tb testing.TB) app.Config {
	tb.Helper()
	off := map[string]string{}
	for job := range billing.DefaultSchedules() {
		off[job] = "off"
	}
	return app.Config{
		Version:   "test",
		Owner:     "test",
		Gateway:   "carrier",
		SpoolDir:  tb.TempDir(),
		ReportDir: tb.TempDir(),
		Location:  time.UTC,
		Schedules: off,
	}
}

// Start wires a controller over db (migrated, e.g. by pgtest.New) with
// cfg, lets adjust change it before it starts (nil: no change), starts
// its clients and workers and waits until its binding index and rate
// decks are loaded. It stops with the test.
func Start(tb testing.TB, db *postgres.DB, cfg app.Config, log *slog.Logger, adjust func(*app.App)) *app.App {
	tb.Helper()
	ctx := context.Background()
	a, err := app.New(ctx, db, cfg, log)
	if err != nil {
		tb.Fatalf("app.New: %v", err)
	}
	if adjust != nil {
		adjust(a)
	}
	a.Start(ctx)
	tb.Cleanup(a.Stop)
	if err := a.WaitReady(ctx, 60*time.Second); err != nil {
		tb.Fatal(err)
	}
	return a
}
