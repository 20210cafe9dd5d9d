package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"callbridge"
	"callbridge/billing"
	"callbridge/callback"
	"callbridge/cdr"
	"callbridge/controller"
	"callbridge/dialplan"
	"callbridge/esl"
	"callbridge/metrics"
	"callbridge/postgres"
	"callbridge/privacy"
	"callbridge/rating"
	"callbridge/webhook"
)

// runServe runs the controller until ctx is cancelled (SIGTERM), then
// drains: it stops taking new calls (routes that start calls answer 503),
// runs every drain step (live calls finish up to the drain timeout, CDRs
// are flushed), stops background workers and the ESL clients, and shuts
// the HTTP server down with a fresh timeout.
func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig("serve", args, getenv, stderr)
	if err != nil {
		return usageError{err}
	}
	log := newLogger(cfg, stderr)
	log.Info("starting callbridge", "version", version, "http", cfg.HTTPAddr, "esl_nodes", len(cfg.ESL))

	db, err := postgres.Open(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		return err
	}

	// work is the lifetime of background workers: it outlives ctx so they
	// can drain, and is cancelled once draining is over.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	var workers sync.WaitGroup
	goWork := func(name string, fn func(context.Context) error) {
		workers.Add(1)
		go func() {
			defer workers.Done()
			if err := fn(work); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("worker stopped", "worker", name, "error", err)
			}
		}()
	}
	// drain steps run in order after SIGTERM, under the drain timeout.
	var drain []func(context.Context)

	mtr := metrics.New()
	mtr.DialplanTimeout = cfg.DialplanTimeout
	var draining atomic.Bool
	srv := &controller.Server{
		Metrics:              mtr,
		MetricsOnOwnListener: cfg.MetricsAddr != "",
		Logger:               log,
		Version:              version,
		Accounts:             postgres.NewAccountService(db),
		AdminToken:           cfg.AdminToken,
		DB:                   db,
		Draining:             draining.Load,
		// security
		RateLimit:        controller.RateLimit{PerSecond: cfg.RateLimit, Burst: cfg.RateBurst},
		AuthFailureLimit: authFailureLimit(cfg),
	}

	// esl: one client per node; they stay connected while calls drain and
	// stop last, after the workers that use them.
	eslCtx, stopESL := context.WithCancel(context.WithoutCancel(ctx))
	defer stopESL()
	var eslRunning sync.WaitGroup
	var nodes []*esl.Client
	for _, addr := range cfg.ESL {
		c := esl.NewClient(esl.Config{
			Name: addr, Addr: addr, Password: cfg.ESLPassword,
			MaxCPS: cfg.MaxCPS, MaxCalls: cfg.MaxCalls,
			ProbeInterval: cfg.ESLProbeInterval, JobTimeout: cfg.ESLJobTimeout,
			OnJobDone: mtr.ObserveJob(addr),
			OnProbe:   mtr.ObserveProbe(addr),
			Logger:    log.With("component", "esl"), // the client names its node on every line
		})
		nodes = append(nodes, c)
		eslRunning.Add(1)
		go func() {
			defer eslRunning.Done()
			if err := c.Run(eslCtx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("esl client stopped", "node", c.Name(), "error", err)
			}
		}()
	}
	pool := esl.NewPool(nodes...)
	srv.Nodes = func() []controller.NodeStatus { return controller.NodeStatuses(pool.Clients()) }
	mtr.WatchNodes(pool.Clients)

	// rating: one registry of compiled rate decks per process, which
	// quotes, CDR pricing and prepaid authorisation all read; the deck
	// sync loads it and keeps it current by LISTEN/NOTIFY (a deck written
	// on any controller applies to the next quote and the next CDR), and
	// reloads a deck at once after this controller's own writes.
	decks := &rating.Registry{}
	deckSync := postgres.NewDeckSync(db, decks, log.With("component", "rate-decks"))
	decksReady := make(chan struct{})
	goWork("rate decks", func(ctx context.Context) error { return deckSync.Run(ctx, decksReady) })
	srv.Decks, srv.DeckSync = decks, deckSync

	// prepaid: calls of prepaid accounts (inbound binding calls and each
	// callback leg) are authorised against the balance before they are
	// placed, priced by the account's sell deck in force; each holds a
	// reservation its CDR settles and is capped in FreeSWITCH at the grant.
	callAuthorizer := &billing.Authorizer{
		Store: postgres.NewBillingStore(db, time.UTC, callbackOwner(cfg)),
		Decks: billing.RegistryDecks(decks),
	}

	// privacy numbers: the binding index answers /fs/dialplan from memory,
	// kept coherent across controllers by LISTEN/NOTIFY.
	bindings := postgres.NewBindingService(db)
	bindings.MaxTTL = cfg.BindingMaxTTL
	index := privacy.NewIndex(bindings, log)
	indexReady := make(chan struct{})
	goWork("binding index", func(ctx context.Context) error { return index.Run(ctx, indexReady) })
	srv.Privacy = &controller.PrivacyNumbers{
		Bindings: bindings,
		Numbers:  postgres.NewNumberService(db),
		Lines:    index,
		Dialplan: controller.DialplanConfig{
			User:           cfg.DialplanUser,
			Password:       cfg.DialplanPassword,
			AllowedSources: cfg.DialplanAllow,
			Routing: privacy.Routing{
				Rules:      cfg.NumberRules(),
				Options:    dialplan.Options{RingTimeout: cfg.RingTimeout, RecordDir: cfg.RecordDir},
				Authorizer: callAuthorizer,
				Prepaid:    privacy.NewPrepaidAccounts(srv.Accounts, 0),
			},
		},
		Rules:  cfg.NumberRules(),
		Logger: log,
	}
	// Binding calls: webhooks of each call (start, answer, end) into the
	// outbox, and ?hangup=true, from every node's events.
	if len(nodes) > 0 {
		bindingCalls := privacy.NewCalls(pool, privacy.CallsConfig{
			Bindings:  bindings,
			Webhooks:  postgres.NewWebhookService(db),
			RecordDir: cfg.RecordDir,
			Logger:    log.With("component", "binding-calls"),
		})
		srv.Privacy.Calls = bindingCalls
		goWork("binding calls", bindingCalls.Run)
	}

	// callbacks: the engine claims queued callbacks from the database and
	// drives them over the ESL pool; live calls drain on SIGTERM and any
	// still up afterwards are adopted by another controller (or this one
	// after its restart, under the same owner name). The deliverer posts
	// the webhook outbox every feature writes to.
	callbacks := postgres.NewCallbackService(db)
	webhooks := postgres.NewWebhookService(db)
	engine, err := callback.NewEngine(callbacks, pool, callback.Config{
		Owner:          callbackOwner(cfg),
		Gateway:        cfg.Gateway,
		Prompts:        callbackPrompts(cfg),
		FailurePrompts: callbackFailurePrompts(cfg),
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
		return err
	}
	mtr.WatchCallbacks(engine.Live)
	mtr.WatchPacing(engine.Pacing)
	srv.Callbacks, srv.Webhooks, srv.CallbackEngine = callbacks, webhooks, engine
	srv.CallbackNumberRules = cfg.NumberRules()
	goWork("callbacks", engine.Run)
	drain = append(drain, engine.Drain)
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
	goWork("webhooks", deliverer.Run)

	// cdrs: every node's hangups become priced CDRs through an fsync'ed
	// spool. The pipeline reads until the workers stop (after calls have
	// drained), then writes what it can and leaves the rest in the spool
	// for the next start; the ESL clients stop after it. The billing
	// store gives the sweep each account's missing-hangup policy.
	billLoc, err := time.LoadLocation(cfg.TimeZone)
	if err != nil {
		return err
	}
	billStore := postgres.NewBillingStore(db, billLoc, callbackOwner(cfg))
	billStore.Grace = cfg.InvoiceGrace
	srv.Billing, srv.Issuer = billStore, cfg.Issuer

	cdrStore := postgres.NewCDRStore(db)
	if err := cdrStore.EnsurePartitions(ctx, time.Now()); err != nil {
		return err
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
	})
	if err != nil {
		return err
	}
	mtr.WatchCDRs(cdrPipeline.Stats, pricer.Stats)
	srv.CDRs, srv.CDRNumberRules = cdrStore, cfg.NumberRules()
	goWork("cdrs", func(ctx context.Context) error { return cdrPipeline.Run(ctx, nodes...) })

	// billing: the scheduled jobs (rollups, invoices, binding expiry,
	// partitions, reservations, low-balance webhooks), each run under an
	// advisory lock so one controller runs it; missed slots are caught up
	// at start. The scheduler stops with the workers.
	billJobs := &billing.Jobs{
		Store:     billStore,
		Location:  billLoc,
		Grace:     cfg.InvoiceGrace,
		Log:       log.With("component", "billing"),
		ReportDir: cfg.ReportDir,
		Issuer:    cfg.Issuer,
		Webhooks:  webhooks,
		ExpireBindings: func(ctx context.Context) (int, error) {
			return bindings.ExpireBindings(ctx, time.Now())
		},
		SweepStale: func(ctx context.Context) (int, error) { return cdrPipeline.Sweep(ctx), nil },
	}
	scheduler, err := billing.NewScheduler(billStore, billLoc, log.With("component", "jobs"), billJobs.List(cfg.Schedules))
	if err != nil {
		return usageError{err}
	}
	scheduler.OnRun = mtr.ObserveJobRun
	invoiceSpec := billing.DefaultSchedules()[billing.JobInvoice]
	if v, ok := billingSchedules(getenv)[billing.JobInvoice]; ok {
		invoiceSpec = v
	}
	if late := billing.LateInvoiceMonths(invoiceSpec, billLoc, cfg.InvoiceGrace, time.Now()); len(late) > 0 {
		log.Warn("the invoice schedule runs before the grace for late CDRs ends: these months will be invoiced a month late",
			"schedule", invoiceSpec, "grace", cfg.InvoiceGrace, "months", late,
			"fix", "move CALLBRIDGE_SCHEDULE_INVOICE after CALLBRIDGE_INVOICE_GRACE, or shorten the grace")
	}
	goWork("billing jobs", func(ctx context.Context) error {
		scheduler.Start(ctx)
		<-ctx.Done()
		scheduler.Stop()
		return nil
	})

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	httpSrv := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return work },
		ConnContext:       controller.ConnArrival,
	}
	loadLimit := time.After(60 * time.Second)
	for name, ready := range map[string]chan struct{}{"the binding index": indexReady, "the rate decks": decksReady} {
		select {
		case <-ready:
		case <-loadLimit:
			return fmt.Errorf("%s did not load within 60s", name)
		case <-ctx.Done():
			return nil
		}
	}
	errc := make(chan error, 2)
	go func() { errc <- httpSrv.Serve(ln) }()
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", cfg.MetricsAddr, err)
		}
		metricsSrv := &http.Server{Handler: mtr.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- metricsSrv.Serve(mln) }()
		defer metricsSrv.Close()
		log.Info("metrics listening", "addr", mln.Addr().String())
	}
	log.Info("listening", "addr", ln.Addr().String())
	fmt.Fprintf(stdout, "callbridge listening on %s\n", ln.Addr())

	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}

	// A second SIGTERM (or Ctrl-C) cuts the drain short: what is unwritten
	// stays in the spool for the next start. It is watched for before new
	// calls are refused, so any signal after a 503 counts as the second.
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	drainCtx, stopSignals := signal.NotifyContext(drainCtx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	draining.Store(true) // before the log line: once it is logged, new calls are refused
	log.Info("shutting down: draining", "drain_timeout", cfg.DrainTimeout.String())
	for _, step := range drain {
		step(drainCtx)
	}
	cancelDrain()
	stopWork()
	workers.Wait()
	stopESL()
	eslRunning.Wait()

	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("http shutdown", "error", err)
	}
	log.Info("stopped")
	return nil
}

func newLogger(cfg *Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// callbackOwner names this controller in callback leases: stable across
// restarts of the same instance (so it adopts its own calls at once) and
// distinct between controllers on different hosts or ports.
func callbackOwner(cfg *Config) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "callbridge"
	}
	return host + "/" + cfg.HTTPAddr
}

// callbackPrompts is the allow-list of prompts a callback request may
// name: the ringback tone, and "hold" when CALLBRIDGE_PROMPT_HOLD is a file.
func callbackPrompts(cfg *Config) map[string]string {
	p := map[string]string{"ringback": esl.ToneRingbackUS}
	if cfg.PromptHold != promptNone {
		p["hold"] = cfg.PromptHold
	}
	return p
}

// callbackFailurePrompts are played to A when B cannot be reached; a
// reason whose setting is "none" hangs A up at once.
func callbackFailurePrompts(cfg *Config) map[callbridge.FailReason]string {
	p := map[callbridge.FailReason]string{}
	for reason, path := range map[callbridge.FailReason]string{
		callbridge.ReasonBBusy:     cfg.PromptBBusy,
		callbridge.ReasonBNoAnswer: cfg.PromptBNoAnswer,
		"":                         cfg.PromptCallFailed,
	} {
		if path == promptNone {
			path = ""
		}
		p[reason] = path
	}
	return p
}

// authFailureLimit is the controller's limit on failed authentications:
// off (a negative rate) when the setting is 0.
func authFailureLimit(cfg *Config) controller.RateLimit {
	if cfg.AuthFailureLimit == 0 {
		return controller.RateLimit{PerSecond: -1}
	}
	return controller.RateLimit{PerSecond: cfg.AuthFailureLimit, Burst: cfg.AuthFailureBurst}
}
