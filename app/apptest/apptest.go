// Package apptest runs controllers wired by app.New, the wiring of
// `callbridge serve`, for tests: the tests of the HTTP API build their
// server with it instead of wiring one by hand.
package apptest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"callbridge/app"
	"callbridge/billing"
	"callbridge/esl"
	"callbridge/esl/esltest"
	"callbridge/internal/wait"
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

// Options are what a test adds to a controller Run starts.
type Options struct {
	// Log receives the controller's log (nil: discarded).
	Log *slog.Logger
	// Switch, when set, is an unstarted simulator that becomes the
	// controller's one FreeSWITCH node: Run sends its dialplan requests
	// to the API's /fs/dialplan with the configuration's credentials
	// (unless the test set DialplanURL), starts it, and returns once the
	// node is connected and every component listens to its events.
	Switch *esltest.Server
	// Adjust changes the wired controller before it starts (a clock, a
	// store, a Server setting); nil changes nothing.
	Adjust func(*app.App)
}

// Controller is a test controller: the wired App, its API served over
// HTTP, and its simulated node when it has one.
type Controller struct {
	*app.App
	// API serves the App's HTTP handler.
	API *httptest.Server
	// Switch is Options.Switch, started.
	Switch *esltest.Server
}

// subscribers is how many components read a node's events in app.New:
// the callback engine, the CDR pipeline, the binding calls and the
// gateways' state watch.
const subscribers = 4

// Run starts a controller over db like Start, serves its API over HTTP
// and, with opts.Switch, gives it a simulated node. It returns once every
// node of the controller is connected and followed by every component, so
// no event of a call the test places next is missed. Everything stops
// with the test: the controller first, then the node, then the API.
func Run(tb testing.TB, db *postgres.DB, cfg app.Config, opts Options) *Controller {
	tb.Helper()
	// The node's dialplan requests need the API's address before the
	// node starts, and the controller needs the node's address: the API
	// listens first and serves the handler once it exists.
	var handler atomic.Pointer[http.Handler]
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := handler.Load()
		if h == nil {
			http.Error(w, "apptest: the controller is not started yet", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	}))
	tb.Cleanup(api.Close)
	c := &Controller{API: api, Switch: opts.Switch}
	if sim := opts.Switch; sim != nil {
		if sim.DialplanURL == "" {
			sim.DialplanURL = api.URL + "/fs/dialplan"
			sim.DialplanUser, sim.DialplanPassword = cfg.DialplanUser, cfg.DialplanPassword
		}
		sim.Start()
		tb.Cleanup(sim.Close)
		cfg.ESL = append(cfg.ESL, sim.Addr())
		if cfg.ESLPassword == "" {
			cfg.ESLPassword = sim.Password
		}
	}
	c.App = Start(tb, db, cfg, opts.Log, opts.Adjust)
	h := c.Server.Handler()
	handler.Store(&h)
	for _, node := range c.Nodes {
		wait.ForState(tb, "node "+node.Name()+" connected and followed by every component", func() (bool, string) {
			st := node.Stats()
			return st.State == esl.StateConnected && node.Ready() && len(st.QueueDepths) >= subscribers,
				fmt.Sprintf("state %v, ready %v, %d subscriptions", st.State, node.Ready(), len(st.QueueDepths))
		})
	}
	return c
}
