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
	"syscall"
	"time"

	"callbridge"
	"callbridge/app"
	"callbridge/billing"
	"callbridge/controller"
	"callbridge/esl/freeswitch"
	"callbridge/postgres"
	"callbridge/routing"
)

// runServe runs the controller until ctx is cancelled (SIGTERM), then
// drains: it stops taking new calls (routes that start calls answer 503),
// runs every drain step (live calls finish up to the drain timeout, CDRs
// are flushed), stops background workers and the ESL clients, and shuts
// the HTTP server down with a fresh timeout. The wiring is app.New's.
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

	appCfg, err := appConfig(cfg)
	if err != nil {
		return err
	}
	a, err := app.New(ctx, db, appCfg, log)
	var cfgErr *app.ConfigError
	if errors.As(err, &cfgErr) {
		return usageError{cfgErr.Err}
	}
	if err != nil {
		return err
	}
	warnLateInvoices(log, cfg, appCfg.Location, getenv)

	// The workers outlive ctx so they can drain; Stop ends them, then the
	// ESL clients.
	a.Start(ctx)
	defer a.Stop()

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	// work is the lifetime of requests' base context: it outlives ctx so
	// requests in flight can finish, and ends once draining is over.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	httpSrv := &http.Server{
		Handler:           a.Server.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return work },
		ConnContext:       controller.ConnArrival,
	}
	if err := a.WaitReady(ctx, 60*time.Second); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- httpSrv.Serve(ln) }()
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", cfg.MetricsAddr, err)
		}
		metricsSrv := &http.Server{Handler: a.Metrics.Handler(), ReadHeaderTimeout: 10 * time.Second}
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
	a.RefuseCalls() // before the log line: once it is logged, new calls are refused
	log.Info("shutting down: draining", "drain_timeout", cfg.DrainTimeout.String())
	a.Drain(drainCtx)
	cancelDrain()
	stopWork()
	a.Stop()

	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("http shutdown", "error", err)
	}
	log.Info("stopped")
	return nil
}

// appConfig is the wiring's part of the configuration.
func appConfig(cfg *Config) (app.Config, error) {
	loc, err := time.LoadLocation(cfg.TimeZone)
	if err != nil {
		return app.Config{}, err
	}
	return app.Config{
		Version:              version,
		Owner:                callbackOwner(cfg),
		ESL:                  cfg.ESL,
		ESLPassword:          cfg.ESLPassword,
		MaxCPS:               cfg.MaxCPS,
		MaxCalls:             cfg.MaxCalls,
		ESLProbeInterval:     cfg.ESLProbeInterval,
		ESLJobTimeout:        cfg.ESLJobTimeout,
		AdminToken:           cfg.AdminToken,
		DialplanUser:         cfg.DialplanUser,
		DialplanPassword:     cfg.DialplanPassword,
		DialplanAllow:        cfg.DialplanAllow,
		DialplanTimeout:      cfg.DialplanTimeout,
		Rules:                cfg.NumberRules(),
		RingTimeout:          cfg.RingTimeout,
		RecordDir:            cfg.RecordDir,
		BindingMaxTTL:        cfg.BindingMaxTTL,
		Gateway:              cfg.Gateway,
		GatewayLimits:        cfg.GatewayLimits,
		Breaker:              routing.BreakerConfig{Failures: cfg.BreakerFailures, Cooldown: cfg.BreakerCooldown},
		GatewayPollInterval:  cfg.GatewayPollInterval,
		MaxDeckRates:         cfg.MaxDeckRates,
		MaxAccountRates:      cfg.MaxAccountRates,
		Prompts:              callbackPrompts(cfg),
		FailurePrompts:       callbackFailurePrompts(cfg),
		QueueWait:            cfg.QueueWait,
		RefusedRetry:         cfg.RefusedRetry,
		WebhookSecret:        cfg.WebhookSecret,
		WebhookAllowPrivate:  cfg.WebhookAllowPrivate,
		SpoolDir:             cfg.SpoolDir,
		ReportDir:            cfg.ReportDir,
		Location:             loc,
		InvoiceGrace:         cfg.InvoiceGrace,
		Issuer:               cfg.Issuer,
		Schedules:            cfg.Schedules,
		MetricsOnOwnListener: cfg.MetricsAddr != "",
		RateLimit:            controller.RateLimit{PerSecond: cfg.RateLimit, Burst: cfg.RateBurst},
		AuthFailureLimit:     authFailureLimit(cfg),
	}, nil
}

// warnLateInvoices warns when the invoice schedule runs before the grace
// for late CDRs ends.
func warnLateInvoices(log *slog.Logger, cfg *Config, loc *time.Location, getenv func(string) string) {
	invoiceSpec := billing.DefaultSchedules()[billing.JobInvoice]
	if v, ok := billingSchedules(getenv)[billing.JobInvoice]; ok {
		invoiceSpec = v
	}
	if late := billing.LateInvoiceMonths(invoiceSpec, loc, cfg.InvoiceGrace, time.Now()); len(late) > 0 {
		log.Warn("the invoice schedule runs before the grace for late CDRs ends: these months will be invoiced a month late",
			"schedule", invoiceSpec, "grace", cfg.InvoiceGrace, "months", late,
			"fix", "move CALLBRIDGE_SCHEDULE_INVOICE after CALLBRIDGE_INVOICE_GRACE, or shorten the grace")
	}
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
	p := map[string]string{"ringback": freeswitch.ToneRingbackUS}
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
