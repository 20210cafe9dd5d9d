// Package app wires callbridge's packages into one controller: the HTTP
// server, the ESL clients, the binding index, the rate decks, the callback
// engine, the webhook deliverer, the CDR pipeline and the billing jobs.
// `callbridge serve` runs what New builds, and the controller tests build
// their server with it, so the tests exercise the wiring that runs in
// production. It opens no listener and reads no flags or environment.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"callbridge"
	"callbridge/billing"
	"callbridge/callback"
	"callbridge/carrier"
	"callbridge/cdr"
	"callbridge/controller"
	"callbridge/dialplan"
	"callbridge/esl"
	"callbridge/esl/freeswitch"
	"callbridge/metrics"
	"callbridge/postgres"
	"callbridge/privacy"
	"callbridge/rating"
	"callbridge/routing"
	"callbridge/webhook"
)

// Config is what New needs to know; `callbridge serve` fills it from its
// flags and environment (cmd/callbridge/config.go documents each
// setting).
type Config struct {
	// Version is reported by /healthz.
	Version string
	// Owner names this controller in callback leases and billing locks:
	// stable across restarts of the same instance, distinct between
	// controllers.
	Owner string
	// ESL lists the FreeSWITCH event sockets (host:port), one client each;
	// ESLPassword, MaxCPS, MaxCalls, ESLProbeInterval and ESLJobTimeout
	// configure every client.
	ESL              []string
	ESLPassword      string
	MaxCPS, MaxCalls int
	ESLProbeInterval time.Duration
	ESLJobTimeout    time.Duration
	// AdminToken is the operator's token for /v1/admin.
	AdminToken string
	// DialplanUser, DialplanPassword and DialplanAllow guard /fs/dialplan;
	// DialplanTimeout is FreeSWITCH's xml_curl timeout (late answers are
	// counted).
	DialplanUser     string
	DialplanPassword string
	DialplanAllow    []netip.Prefix
	DialplanTimeout  time.Duration
	// Rules normalise the numbers of the API and the dialplan.
	Rules callbridge.NumberRules
	// RingTimeout and RecordDir shape the dialplan's bridges; RecordDir is
	// also where callbacks and binding calls record.
	RingTimeout time.Duration
	RecordDir   string
	// BindingMaxTTL caps a binding's lifetime.
	BindingMaxTTL time.Duration
	// Gateway is the carrier gateway callbacks dial through; Prompts are
	// the prompts a callback request may name and FailurePrompts what A
	// hears when B cannot be reached (callback.Config).
	Gateway        string
	Prompts        map[string]string
	FailurePrompts map[callbridge.FailReason]string
	// GatewayLimits are the carrier gateways' caps, shared by every
	// controller through PostgreSQL; Breaker configures their circuit
	// breakers; GatewayPollInterval is how often each node is asked for
	// their sofia state (carrier.Config).
	GatewayLimits       map[string]routing.Limits
	Breaker             routing.BreakerConfig
	GatewayPollInterval time.Duration
	// MaxDeckRates caps the rates of one deck and MaxAccountRates those
	// of one account's decks together: imports past them are refused and
	// a deck over MaxDeckRates is not loaded (postgres.RateDeckService).
	// Zero: no cap.
	MaxDeckRates    int
	MaxAccountRates int
	// QueueWait and RefusedRetry shape the callback engine's admission and
	// its retries of refused legs (callback.Config).
	QueueWait    time.Duration
	RefusedRetry time.Duration
	// WebhookSecret signs webhooks; WebhookAllowPrivate lets them reach
	// non-public addresses.
	WebhookSecret       string
	WebhookAllowPrivate bool
	// SpoolDir is the CDR spool; ReportDir where billing reports go.
	SpoolDir  string
	ReportDir string
	// Location is the billing time zone; InvoiceGrace keeps a month open
	// to late CDRs; Issuer is printed on invoices; Schedules overrides the
	// billing jobs' schedules ("off" disables one).
	Location     *time.Location
	InvoiceGrace time.Duration
	Issuer       billing.Issuer
	Schedules    map[string]string
	// MetricsOnOwnListener keeps /metrics off the API listener.
	MetricsOnOwnListener bool
	// RateLimit and AuthFailureLimit limit API keys and failed
	// authentications (controller.Server).
	RateLimit        controller.RateLimit
	AuthFailureLimit controller.RateLimit
}

// App is a wired controller. New builds it; Start runs its clients and
// workers; Drain and Stop end them.
type App struct {
	// Server is the HTTP API; its Handler is built on first use, so a
	// caller may adjust it before.
	Server *controller.Server
	// Metrics is the process's Prometheus registry.
	Metrics *metrics.Metrics
	// Nodes are the ESL clients, one per configured node.
	Nodes []*esl.Client
	// Gateways is the carrier gateways' live state: their sofia state on
	// the nodes, their caps across controllers and their breakers. Every
	// outbound attempt is claimed with Gateways.Begin and ended with
	// Gateways.End.
	Gateways *carrier.Gateways
	// Callbacks is the callback engine; CDRs the CDR pipeline.
	Callbacks *callback.Engine
	CDRs      *cdr.Pipeline

	log        *slog.Logger
	draining   atomic.Bool
	workers    []worker
	drain      []func(context.Context)
	indexReady chan struct{}
	decksReady chan struct{}

	stopESL, stopWork context.CancelFunc
	eslRunning        sync.WaitGroup
	working           sync.WaitGroup
}

type worker struct {
	name string
	run  func(context.Context) error
}

// New wires a controller over db (migrated) from cfg. It starts nothing:
// Start does.
func New(ctx context.Context, db *postgres.DB, cfg Config, log *slog.Logger) (*App, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	loc := cfg.Location
	if loc == nil {
		loc = time.UTC
	}
	a := &App{log: log, indexReady: make(chan struct{}), decksReady: make(chan struct{})}

	mtr := metrics.New()
	mtr.DialplanTimeout = cfg.DialplanTimeout
	a.Metrics = mtr
	srv := &controller.Server{
		Metrics:              mtr,
		MetricsOnOwnListener: cfg.MetricsOnOwnListener,
		Logger:               log,
		Version:              cfg.Version,
		Accounts:             postgres.NewAccountService(db),
		AdminToken:           cfg.AdminToken,
		DB:                   db,
		Draining:             a.draining.Load,
		// security
		RateLimit:        cfg.RateLimit,
		AuthFailureLimit: cfg.AuthFailureLimit,
	}
	a.Server = srv

	// esl: one client per node; they stay connected while calls drain and
	// stop last, after the workers that use them.
	for _, addr := range cfg.ESL {
		c := esl.NewClient(esl.Config{
			Name: addr, Addr: addr, Password: cfg.ESLPassword,
			MaxCPS: cfg.MaxCPS, MaxCalls: cfg.MaxCalls,
			ProbeInterval: cfg.ESLProbeInterval, JobTimeout: cfg.ESLJobTimeout,
			OnJobDone: mtr.ObserveJob(addr),
			OnProbe:   mtr.ObserveProbe(addr),
			// The gateways' state changes (carrier.Gateways.Watch).
			Subclasses: []string{freeswitch.GatewayStateSubclass},
			Logger:     log.With("component", "esl"), // the client names its node on every line
		})
		a.Nodes = append(a.Nodes, c)
	}
	pool := esl.NewPool(a.Nodes...)
	srv.Nodes = func() []controller.NodeStatus { return controller.NodeStatuses(pool.Clients()) }
	mtr.WatchNodes(pool.Clients)

	// rating: one registry of compiled rate decks per process, which
	// quotes, CDR pricing and prepaid authorisation all read; the deck
	// sync loads it and keeps it current by LISTEN/NOTIFY (a deck written
	// on any controller applies to the next quote and the next CDR), and
	// reloads a deck at once after this controller's own writes.
	decks := &rating.Registry{}
	// The caps bound what any tenant can make every controller hold.
	deckSync := postgres.NewDeckSync(db, decks, log.With("component", "rate-decks"))
	deckSync.MaxDeckRates = cfg.MaxDeckRates
	a.goWork("rate decks", func(ctx context.Context) error { return deckSync.Run(ctx, a.decksReady) })
	deckStore := postgres.NewRateDeckService(db)
	deckStore.MaxDeckRates, deckStore.MaxAccountRates = cfg.MaxDeckRates, cfg.MaxAccountRates
	srv.RateDecks, srv.Decks, srv.DeckSync = deckStore, decks, deckSync
	mtr.WatchRefusedDecks(func() int { return len(decks.Refused()) })

	// carrier gateways: each node's sofia view of them (polled and
	// followed by events), their caps counted across controllers in
	// PostgreSQL, and their breakers. Resolution reads them; every
	// outbound attempt claims and ends through them.
	gateways := carrier.New(carrier.Config{
		Breaker:      cfg.Breaker,
		Limits:       cfg.GatewayLimits,
		Slots:        postgres.NewGatewaySlots(db),
		Owner:        cfg.Owner,
		PollInterval: cfg.GatewayPollInterval,
		OnRefused:    mtr.ObserveGatewayRefused,
		Logger:       log.With("component", "gateways"),
	})
	a.Gateways = gateways
	srv.GatewayHealth = gateways
	mtr.WatchGateways(gateways.Snapshot)
	a.goWork("gateway slots", gateways.Run)
	a.goWork("gateway state", func(ctx context.Context) error { return gateways.Watch(ctx, a.Nodes...) })

	// carrier routing: the route plans, compiled once per version in this
	// process and kept current by LISTEN/NOTIFY like the decks; each is
	// joined with its gateways' buy decks into a table that the sync
	// keeps fresh. The admin API manages and explains them.
	plans := &routing.Plans{}
	planSync := postgres.NewPlanSync(db, plans, decks, log.With("component", "route-plans"))
	a.goWork("route plans", func(ctx context.Context) error { return planSync.Run(ctx, nil) })
	srv.RoutePlans, srv.Plans, srv.PlanSync = postgres.NewRoutePlanService(db), plans, planSync
	// Every attempt in the cluster feeds each gateway's circuit breaker
	// here, from its CDR (cdr.Config.OnAttempt below, through the
	// gateways above) or when this controller ends it, so a carrier that
	// keeps refusing is skipped by every controller until its cool-down
	// ends.

	// prepaid: calls of prepaid accounts (inbound binding calls and each
	// callback leg) are authorised against the balance before they are
	// placed, priced by the account's sell deck in force; each holds a
	// reservation its CDR settles and is capped in FreeSWITCH at the grant.
	callAuthorizer := &billing.Authorizer{
		Store: postgres.NewBillingStore(db, time.UTC, cfg.Owner),
		Decks: billing.RegistryDecks(decks),
	}

	// privacy numbers: the binding index answers /fs/dialplan from memory,
	// kept coherent across controllers by LISTEN/NOTIFY.
	bindings := postgres.NewBindingService(db)
	bindings.MaxTTL = cfg.BindingMaxTTL
	index := privacy.NewIndex(bindings, log)
	// router names this controller in the binding-call legs it routes
	// (dialplan.Options.Router, privacy.CallsConfig.Router): its slot
	// holder, unique per process.
	router := callbridge.RouterName(gateways.Holder())
	a.goWork("binding index", func(ctx context.Context) error { return index.Run(ctx, a.indexReady) })
	srv.Privacy = &controller.PrivacyNumbers{
		Bindings: bindings,
		Numbers:  postgres.NewNumberService(db),
		Lines:    index,
		Dialplan: controller.DialplanConfig{
			User:           cfg.DialplanUser,
			Password:       cfg.DialplanPassword,
			AllowedSources: cfg.DialplanAllow,
			Routing: privacy.Routing{
				Rules: cfg.Rules,
				// Router: the legs it dials name this controller, the
				// only one that holds their gateway slots.
				Options:    dialplan.Options{RingTimeout: cfg.RingTimeout, RecordDir: cfg.RecordDir, Router: router},
				Authorizer: callAuthorizer,
				Prepaid:    privacy.NewPrepaidAccounts(srv.Accounts, 0),
				// Route plans pick the carriers of each binding call
				// (least cost from the buy decks, failover); accounts
				// without a plan and without a default plan keep the
				// number's gateway.
				Carriers: &privacy.Carriers{Plans: plans, Prices: decks, Health: gateways},
			},
		},
		Rules:  cfg.Rules,
		Logger: log,
	}
	// Binding calls: webhooks of each call (start, answer, end) into the
	// outbox, and ?hangup=true, from every node's events.
	if len(a.Nodes) > 0 {
		bindingCalls := privacy.NewCalls(pool, privacy.CallsConfig{
			Bindings:  bindings,
			Webhooks:  postgres.NewWebhookService(db),
			RecordDir: cfg.RecordDir,
			Logger:    log.With("component", "binding-calls"),
			// Each attempt leg of a route plan holds a slot of its
			// gateway while it lasts, counted across controllers.
			Gateways:   gateways,
			OnFailover: mtr.ObserveFailover,
			Router:     router,
		})
		srv.Privacy.Calls = bindingCalls
		a.goWork("binding calls", bindingCalls.Run)
	}

	// callbacks: the engine claims queued callbacks from the database and
	// drives them over the ESL pool; live calls drain on SIGTERM and any
	// still up afterwards are adopted by another controller (or this one
	// after its restart, under the same owner name). The deliverer posts
	// the webhook outbox every feature writes to.
	callbacks := postgres.NewCallbackService(db)
	webhooks := postgres.NewWebhookService(db)
	engine, err := callback.NewEngine(callbacks, pool, callback.Config{
		Owner:   cfg.Owner,
		Gateway: cfg.Gateway,
		// Each leg is routed by the account's plan (else the default
		// plan; neither: cfg.Gateway) and fails over on carrier failures.
		Routes:         callback.PlanRouter(plans, routing.Sources{Prices: decks, Health: gateways}),
		Gateways:       gateways,
		Router:         router,
		OnFailover:     func(from, _ string) { mtr.ObserveFailover(from) },
		Prompts:        cfg.Prompts,
		FailurePrompts: cfg.FailurePrompts,
		RecordDir:      cfg.RecordDir,
		QueueWait:      cfg.QueueWait,
		RefusedRetry:   cfg.RefusedRetry,
		CallAuthorizer: func(limit time.Duration) callbridge.CallAuthorizer {
			a := *callAuthorizer
			a.MaxCall = limit
			return &a
		},
		Logger:   log.With("component", "callbacks"),
		OnStatus: mtr.ObserveCallbackStatus,
	})
	if err != nil {
		return nil, err
	}
	a.Callbacks = engine
	mtr.WatchCallbacks(engine.Live)
	mtr.WatchPacing(engine.Pacing)
	srv.Callbacks, srv.Webhooks, srv.CallbackEngine = callbacks, webhooks, engine
	srv.CallbackNumberRules = cfg.Rules
	a.goWork("callbacks", engine.Run)
	a.drain = append(a.drain, engine.Drain)
	deliverer := webhook.NewDeliverer(webhooks, webhook.Config{
		Secret:       []byte(cfg.WebhookSecret),
		AllowPrivate: cfg.WebhookAllowPrivate,
		Logger:       log.With("component", "webhooks"),
		OnOutcome:    mtr.ObserveWebhook,
	})
	mtr.WatchBacklog(func(ctx context.Context) (metrics.Backlog, error) {
		var b metrics.Backlog
		var err error
		b.QueuedCallbacks, b.PendingWebhooks, b.OldestPendingWebhook, err = db.Backlog(ctx)
		return b, err
	})
	a.goWork("webhooks", deliverer.Run)

	// cdrs: every node's hangups become priced CDRs through an fsync'ed
	// spool. The pipeline reads until the workers stop (after calls have
	// drained), then writes what it can and leaves the rest in the spool
	// for the next start; the ESL clients stop after it. The billing
	// store gives the sweep each account's missing-hangup policy.
	billStore := postgres.NewBillingStore(db, loc, cfg.Owner)
	billStore.Grace = cfg.InvoiceGrace
	srv.Billing, srv.Issuer = billStore, cfg.Issuer

	cdrStore := postgres.NewCDRStore(db)
	if _, err := cdrStore.EnsurePartitions(ctx, time.Now(), 1); err != nil {
		return nil, err
	}
	cdrLog := log.With("component", "cdrs")
	pricer := cdr.NewPricer(decks, cdrLog)
	cdrPipeline, err := cdr.NewPipeline(cdr.Config{
		Store:    cdrStore,
		Pricer:   pricer,
		SpoolDir: cfg.SpoolDir,
		Policies: billStore,
		Logger:   cdrLog,
		// The "stale-calls" job below sweeps, once per minute cluster-wide.
		SweepInterval: -1,
		OnAttempt:     attemptOutcome(plans, gateways, router, mtr),
	})
	if err != nil {
		return nil, err
	}
	a.CDRs = cdrPipeline
	mtr.WatchCDRs(cdrPipeline.Stats, pricer.Stats)
	srv.CDRs, srv.CDRNumberRules = cdrStore, cfg.Rules
	a.goWork("cdrs", func(ctx context.Context) error { return cdrPipeline.Run(ctx, a.Nodes...) })

	// billing: the scheduled jobs (rollups, invoices, binding expiry,
	// partitions, reservations, low-balance webhooks), each run under an
	// advisory lock so one controller runs it; missed slots are caught up
	// at start. The scheduler stops with the workers.
	billJobs := &billing.Jobs{
		Store:         billStore,
		CDRPartitions: cdrStore,
		Location:      loc,
		Grace:         cfg.InvoiceGrace,
		Log:           log.With("component", "billing"),
		ReportDir:     cfg.ReportDir,
		Issuer:        cfg.Issuer,
		Webhooks:      webhooks,
		ExpireBindings: func(ctx context.Context) (int, error) {
			return bindings.ExpireBindings(ctx, time.Now())
		},
		SweepStale: func(ctx context.Context) (int, error) { return cdrPipeline.Sweep(ctx), nil },
	}
	scheduler, err := billing.NewScheduler(billStore, loc, log.With("component", "jobs"), billJobs.List(cfg.Schedules))
	if err != nil {
		return nil, &ConfigError{err}
	}
	scheduler.OnRun = mtr.ObserveJobRun
	a.goWork("billing jobs", func(ctx context.Context) error {
		scheduler.Start(ctx)
		<-ctx.Done()
		scheduler.Stop()
		return nil
	})
	return a, nil
}

// attemptOutcome handles the CDR of every leg a route plan's gateway
// carried (callback and binding calls), judged by the failover policy of
// the account's route plan (the default policy when it has none): a
// carrier failure, or anything else the carrier did.
//
// Every controller's CDR pipeline reads every node, so each sees every
// attempt of the cluster once. The gateway metrics (attempts by outcome,
// post-dial delay) count it only on the controller that routed it (its
// callbridge.VarRouter, router here), so that they add up across
// controllers like the failovers; a leg that names no router is counted
// by every controller. The breaker of every controller is fed with it,
// so a gateway's breaker opens on every controller after N consecutive
// carrier failures anywhere in the cluster, and a probe's outcome closes
// or reopens it everywhere (routing.Gateways.Record takes an outcome
// that arrives while the breaker is half-open or probing as the
// probe's). Only the callback legs this controller placed (or adopted:
// the adopter names itself in the leg) are left out: the callback engine
// ends their attempts itself (carrier.Gateways.End), which fed the
// breaker already, at the hangup. (An attempt the node refused before
// there was a channel, or a leg lost with its node, says nothing of the
// carrier: the engine releases it without telling the breaker.)
func attemptOutcome(plans *routing.Plans, gateways *carrier.Gateways, router string, mtr *metrics.Metrics) func(*callbridge.CDR) {
	fallback, _ := routing.NewPolicy(nil, nil)
	return func(c *callbridge.CDR) {
		policy := fallback
		if p := plans.For(c.AccountID); p != nil {
			policy = p.Policy()
		}
		failed := policy.Classify(c.HangupCause, c.SIPStatus) == routing.Failover
		mine := c.Router == "" || c.Router == router
		if mine {
			switch {
			case !c.AnswerAt.IsZero():
				mtr.ObserveAttempt(c.Gateway, metrics.AttemptAnswered)
			case failed:
				mtr.ObserveAttempt(c.Gateway, metrics.AttemptCarrierFailure)
			default:
				mtr.ObserveAttempt(c.Gateway, metrics.AttemptUnanswered)
			}
			if c.PostDialMS > 0 {
				mtr.ObservePostDialDelay(c.Gateway, time.Duration(c.PostDialMS)*time.Millisecond)
			}
		}
		if (c.Leg == callbridge.LegCallbackA || c.Leg == callbridge.LegCallbackB) && c.Router == router {
			return
		}
		gateways.Record(c.Gateway, c.EndAt, failed)
	}
}

// ConfigError is an error of New that is the configuration's fault.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// goWork adds a background worker Start runs.
func (a *App) goWork(name string, run func(context.Context) error) {
	a.workers = append(a.workers, worker{name, run})
}

// Start runs the ESL clients and the background workers until Stop. ctx
// only carries values: the workers outlive its cancellation, so that they
// can drain.
func (a *App) Start(ctx context.Context) {
	eslCtx, stopESL := context.WithCancel(context.WithoutCancel(ctx))
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	a.stopESL, a.stopWork = stopESL, stopWork
	for _, c := range a.Nodes {
		a.eslRunning.Add(1)
		go func() {
			defer a.eslRunning.Done()
			if err := c.Run(eslCtx); err != nil && !errors.Is(err, context.Canceled) {
				a.log.Error("esl client stopped", "node", c.Name(), "error", err)
			}
		}()
	}
	for _, w := range a.workers {
		a.working.Add(1)
		go func() {
			defer a.working.Done()
			if err := w.run(work); err != nil && !errors.Is(err, context.Canceled) {
				a.log.Error("worker stopped", "worker", w.name, "error", err)
			}
		}()
	}
}

// WaitReady waits until the binding index and the rate decks are loaded,
// for at most limit; it returns ctx's error if ctx ends first.
func (a *App) WaitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.After(limit)
	for _, r := range []struct {
		name  string
		ready chan struct{}
	}{{"the binding index", a.indexReady}, {"the rate decks", a.decksReady}} {
		select {
		case <-r.ready:
		case <-deadline:
			return fmt.Errorf("%s did not load within %s", r.name, limit)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// RefuseCalls stops taking new calls: from its return, routes that start
// calls answer 503.
func (a *App) RefuseCalls() { a.draining.Store(true) }

// Drain refuses new calls and runs every drain step under ctx: live calls
// finish, up to ctx's deadline.
func (a *App) Drain(ctx context.Context) {
	a.RefuseCalls()
	for _, step := range a.drain {
		step(ctx)
	}
}

// Stop ends the workers (the CDR pipeline writes what it can and spools
// the rest), then the ESL clients, and waits for them.
func (a *App) Stop() {
	if a.stopWork == nil {
		return
	}
	a.stopWork()
	a.working.Wait()
	a.stopESL()
	a.eslRunning.Wait()
}
