// Package metrics is callbridge's Prometheus registry: the only package that
// imports the Prometheus client. Components do not register collectors
// themselves; they report through hooks (ObserveX) and snapshot funcs
// (WatchX) that this package turns into metrics at scrape time. It keeps
// no global state.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"callbridge"
	"callbridge/billing"
	"callbridge/cdr"
	"callbridge/esl"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is callbridge's Prometheus registry and the metrics the HTTP
// layer records itself. Components report their own figures by
// registering collectors or func-backed metrics on Registry; nothing here
// is global, so tests and several servers in one process do not collide.
type Metrics struct {
	Registry *prometheus.Registry
	// DialplanTimeout is FreeSWITCH's mod_xml_curl timeout
	// (FS_DIALPLAN_TIMEOUT; default 2 s): a /fs/dialplan request answered
	// later, counted from its arrival, is counted as late.
	DialplanTimeout time.Duration

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	eslJobs      *prometheus.HistogramVec
	callbacks    *prometheus.CounterVec
	jobRuns      *prometheus.CounterVec
	jobDuration  *prometheus.HistogramVec
	jobSuccess   *prometheus.GaugeVec
	webhooks     *prometheus.CounterVec
	eslProbes    *prometheus.HistogramVec
	dialplanLate prometheus.Counter
	gateways     gatewayMetrics
}

// New returns a registry holding the Go runtime and process
// collectors and the HTTP request metrics.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: reg,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callbridge_http_requests_total",
			Help: "HTTP requests by route and status.",
		}, []string{"method", "route", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "callbridge_http_request_duration_seconds",
			Help:    "HTTP request latency by route; the /fs/dialplan route is the dialplan lookup latency.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"method", "route"}),
	}
	m.eslJobs = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "callbridge_esl_job_seconds",
		Help:    "Time from sending a bgapi command to its result, per node, command and outcome; command=\"originate\" is the originate latency (until answer or early media).",
		Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"node", "command", "outcome"})
	m.callbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "callbridge_callback_status_changes_total",
		Help: "Callback status changes this controller's engine persisted, by new status and failure reason (reason=\"\" unless failed).",
	}, []string{"status", "reason"})
	m.jobRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "callbridge_job_runs_total",
		Help: "Scheduled job runs this process attempted, by job and outcome (ok, failed, cancelled, skipped: done or running elsewhere).",
	}, []string{"job", "outcome"})
	m.jobDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "callbridge_job_run_seconds",
		Help:    "Duration of the scheduled job runs this process made (outcome ok or failed).",
		Buckets: []float64{.01, .1, .5, 1, 5, 10, 30, 60, 120, 300, 600, 1800},
	}, []string{"job"})
	m.jobSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "callbridge_job_last_success_timestamp_seconds",
		Help: "Unix time this process last finished a run of the job successfully; across controllers, take the max.",
	}, []string{"job"})
	m.webhooks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "callbridge_webhook_attempts_total",
		Help: "Webhook delivery attempts this controller made, by outcome (delivered, retry, dead).",
	}, []string{"outcome"})
	m.eslProbes = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "callbridge_esl_probe_seconds",
		Help:    "Readiness probe latency per node and outcome (ok, failed): from sending bgapi with our Job-UUID to its BACKGROUND_JOB.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 15},
	}, []string{"node", "outcome"})
	m.dialplanLate = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "callbridge_dialplan_late_total",
		Help: "/fs/dialplan requests answered after FreeSWITCH's xml_curl timeout (CALLBRIDGE_DIALPLAN_TIMEOUT), timed from their arrival: calls FreeSWITCH sent to its fallback.",
	})
	reg.MustRegister(m.httpRequests, m.httpDuration, m.eslJobs, m.callbacks, m.jobRuns, m.jobDuration, m.jobSuccess, m.webhooks, m.dialplanLate, m.eslProbes)
	m.gateways = newGatewayMetrics(reg)
	return m
}

// ObserveCallbackStatus is a callback.Config.OnStatus hook counting
// the status changes the engine persists.
func (m *Metrics) ObserveCallbackStatus(status callbridge.CallbackStatus, reason callbridge.FailReason) {
	m.callbacks.WithLabelValues(string(status), string(reason)).Inc()
}

// ObserveJobRun is a billing.Scheduler OnRun hook: runs by outcome, the
// duration of those that ran, and the time of the last success.
func (m *Metrics) ObserveJobRun(job, outcome string, took time.Duration) {
	m.jobRuns.WithLabelValues(job, outcome).Inc()
	if outcome == billing.JobOK || outcome == billing.JobFailed {
		m.jobDuration.WithLabelValues(job).Observe(took.Seconds())
	}
	if outcome == billing.JobOK {
		m.jobSuccess.WithLabelValues(job).SetToCurrentTime()
	}
}

// ObserveWebhook is a webhook.Config.OnOutcome hook.
func (m *Metrics) ObserveWebhook(outcome string) {
	m.webhooks.WithLabelValues(outcome).Inc()
}

// Backlog is the work waiting in the database, shared by every
// controller.
type Backlog struct {
	// QueuedCallbacks are callbacks not yet placed (due or later).
	QueuedCallbacks int64
	// PendingWebhooks are webhooks neither delivered nor dead, and
	// OldestPendingWebhook when the oldest of them was made (zero: none).
	PendingWebhooks      int64
	OldestPendingWebhook time.Time
}

// WatchBacklog exports the backlog read reports at each scrape (bounded
// by 2 s; a failed read leaves the figures out of that scrape):
// callbridge_callbacks_queued, callbridge_webhooks_pending and
// callbridge_webhook_oldest_pending_seconds.
func (m *Metrics) WatchBacklog(read func(ctx context.Context) (Backlog, error)) {
	m.Registry.MustRegister(&backlogCollector{
		read:    read,
		queued:  prometheus.NewDesc("callbridge_callbacks_queued", "Callbacks waiting to be placed, across controllers.", nil, nil),
		pending: prometheus.NewDesc("callbridge_webhooks_pending", "Webhooks waiting for delivery (not delivered, not dead), across controllers.", nil, nil),
		oldest:  prometheus.NewDesc("callbridge_webhook_oldest_pending_seconds", "Age of the oldest pending webhook; 0 when none.", nil, nil),
	})
}

type backlogCollector struct {
	read                    func(ctx context.Context) (Backlog, error)
	queued, pending, oldest *prometheus.Desc
}

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queued
	ch <- c.pending
	ch <- c.oldest
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, err := c.read(ctx)
	if err != nil {
		return
	}
	age := 0.0
	if !b.OldestPendingWebhook.IsZero() {
		age = max(time.Since(b.OldestPendingWebhook).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(b.QueuedCallbacks))
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(b.PendingWebhooks))
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age)
}

// WatchCallbacks exports the number of callbacks live() reports as being
// driven by this controller's engine.
func (m *Metrics) WatchCallbacks(live func() int) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "callbridge_callbacks_live",
		Help: "Callbacks this controller's engine is driving now (claimed and not yet ended).",
	}, func() float64 { return float64(live()) }))
}

// WatchRefusedDecks exports the number of rate decks refused() reports
// this controller holds refused: over CALLBRIDGE_MAX_DECK_RATES, so they
// price nothing (their calls are unrated) until cut down.
func (m *Metrics) WatchRefusedDecks(refused func() int) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "callbridge_rate_decks_refused",
		Help: "Rate decks not loaded because they hold more rates than CALLBRIDGE_MAX_DECK_RATES; calls they would price are unrated.",
	}, func() float64 { return float64(refused()) }))
}

// WatchPacing exports the callback engine's pacing: the placements per
// second it allows now, the originates the nodes refused before a session
// existed, and the callbacks the admission bound refused with 503.
func (m *Metrics) WatchPacing(pacing func() (rate float64, refused, shed int64)) {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "callbridge_callback_pacing_rate",
			Help: "Callback placements per second the engine allows now: the nodes' MaxCPS, lowered while they refuse sessions.",
		}, func() float64 { r, _, _ := pacing(); return r }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "callbridge_originates_refused_total",
			Help: "Callback legs a node refused before a session existed (max-sessions, sessions-per-second, min-idle-cpu, congestion); each is placed again within its deadline.",
		}, func() float64 { _, n, _ := pacing(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "callbridge_callbacks_shed_total",
			Help: "POST /v1/callbacks answered 503 because the due queue was past what the nodes place in CALLBRIDGE_QUEUE_WAIT.",
		}, func() float64 { _, _, n := pacing(); return float64(n) }),
	)
}

// ObserveJob returns an esl.Config.OnJobDone hook for node that records
// each command's latency and outcome (ok, error, closed).
func (m *Metrics) ObserveJob(node string) func(command string, took time.Duration, err error) {
	return func(command string, took time.Duration, err error) {
		outcome := "ok"
		var re *esl.ReplyError
		switch {
		case err == nil:
		case errors.As(err, &re):
			outcome = "error"
		default:
			outcome = "closed"
		}
		m.eslJobs.WithLabelValues(node, command, outcome).Observe(took.Seconds())
	}
}

// ObserveProbe returns an esl.Config.OnProbe hook for node that records
// each readiness probe's latency and outcome.
func (m *Metrics) ObserveProbe(node string) func(took time.Duration, err error) {
	return func(took time.Duration, err error) {
		outcome := "ok"
		if err != nil {
			outcome = "failed"
		}
		m.eslProbes.WithLabelValues(node, outcome).Observe(took.Seconds())
	}
}

// ObserveRequest records an HTTP request by its route pattern (never the
// raw path, which would let clients create unbounded label values; ""
// is counted as "unmatched") and the time it took since it arrived. A
// /fs/dialplan request answered after DialplanTimeout is counted as late.
func (m *Metrics) ObserveRequest(method, route string, status int, took time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.httpRequests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.httpDuration.WithLabelValues(method, route).Observe(took.Seconds())
	timeout := m.DialplanTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	if route == DialplanRoute && took >= timeout {
		m.dialplanLate.Inc()
	}
}

// DialplanRoute is the route mod_xml_curl calls.
const DialplanRoute = "/fs/dialplan"

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// nodeCollector reports each FreeSWITCH node's connection state and
// counters at scrape time.
type nodeCollector struct {
	nodes                            func() []*esl.Client
	connected, redials, events, call *prometheus.Desc
	ready, jobTimeouts, probeFails   *prometheus.Desc
}

// WatchNodes exports the ESL state of the clients nodes() returns:
// connection state, readiness, redials, events received, job timeouts,
// probe failures and active calls per node.
func (m *Metrics) WatchNodes(nodes func() []*esl.Client) {
	m.Registry.MustRegister(&nodeCollector{
		nodes:     nodes,
		connected: prometheus.NewDesc("callbridge_esl_connected", "1 when both ESL connections to the node are up.", []string{"node"}, nil),
		redials:   prometheus.NewDesc("callbridge_esl_redials_total", "ESL dial attempts after the first, per node.", []string{"node"}, nil),
		events:    prometheus.NewDesc("callbridge_esl_events_received_total", "ESL events received per node.", []string{"node"}, nil),
		call:      prometheus.NewDesc("callbridge_active_calls", "Calls placed through the node and not yet released.", []string{"node"}, nil),
		ready: prometheus.NewDesc("callbridge_esl_node_ready",
			"1 when the node is connected and its commands complete (last readiness probe passed, no job timed out since); calls go only to ready nodes.", []string{"node"}, nil),
		jobTimeouts: prometheus.NewDesc("callbridge_esl_job_timeouts_total",
			"bgapi jobs (probes included) whose BACKGROUND_JOB did not come within the job timeout, per node.", []string{"node"}, nil),
		probeFails: prometheus.NewDesc("callbridge_esl_probe_failures_total", "Failed readiness probes per node.", []string{"node"}, nil),
	})
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.connected
	ch <- c.redials
	ch <- c.events
	ch <- c.call
	ch <- c.ready
	ch <- c.jobTimeouts
	ch <- c.probeFails
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, n := range c.nodes() {
		st, name := n.Stats(), n.Name()
		up := 0.0
		if st.State == esl.StateConnected {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, up, name)
		ch <- prometheus.MustNewConstMetric(c.redials, prometheus.CounterValue, float64(st.Redials), name)
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(st.EventsReceived), name)
		ch <- prometheus.MustNewConstMetric(c.call, prometheus.GaugeValue, float64(st.ActiveCalls), name)
		ready := 0.0
		if st.Ready {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, ready, name)
		ch <- prometheus.MustNewConstMetric(c.jobTimeouts, prometheus.CounterValue, float64(st.JobTimeouts), name)
		ch <- prometheus.MustNewConstMetric(c.probeFails, prometheus.CounterValue, float64(st.ProbeFailures), name)
	}
}

// WatchCDRs exports the CDR pipeline's figures, read from stats and
// pricer at each scrape: hangups received, CDRs inserted and duplicate,
// records spooled and dead-lettered (alert on any), estimated CDRs, legs
// priced by a default rate or left unrated, the spool's depth and whether
// the database is unavailable.
func (m *Metrics) WatchCDRs(stats func() cdr.Stats, pricer func() cdr.PricerStats) {
	desc := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	m.Registry.MustRegister(&cdrCollector{
		stats: stats, pricer: pricer,
		hangups:        desc("callbridge_cdr_hangups_total", "CHANNEL_HANGUP_COMPLETE events received."),
		inserted:       desc("callbridge_cdr_inserted_total", "CDRs stored."),
		duplicates:     desc("callbridge_cdr_duplicates_total", "CDRs already stored (redelivery, replay, other controllers)."),
		spooled:        desc("callbridge_cdr_spooled_records_total", "Records written to the fsync'ed spool."),
		dead:           desc("callbridge_cdr_dead_letters_total", "Records dead-lettered; any is an alert."),
		estimated:      desc("callbridge_cdr_estimated_total", "CDRs estimated for legs whose hangup never arrived."),
		kept:           desc("callbridge_cdr_kept_records_total", "CDR records FreeSWITCH kept, collected after no controller listened."),
		refused:        desc("callbridge_cdr_refused_legs_total", "Legs FreeSWITCH refused at originate, closed by their job's -ERR."),
		overflows:      desc("callbridge_cdr_subscription_overflows_total", "Event subscriptions lost to a full queue."),
		unratedDefault: desc("callbridge_cdr_unrated_default_total", "Legs priced by a deck's default rate."),
		unrated:        desc("callbridge_cdr_unrated_total", "Legs of an account no rate priced."),
		batches:        desc("callbridge_cdr_spool_batches", "Batches waiting for the database."),
		unavailable:    desc("callbridge_cdr_database_unavailable", "1 while CDR batches cannot reach the database."),
	})
}

type cdrCollector struct {
	stats                                         func() cdr.Stats
	pricer                                        func() cdr.PricerStats
	hangups, inserted, duplicates, spooled, dead  *prometheus.Desc
	estimated, kept, refused, overflows           *prometheus.Desc
	unratedDefault, unrated, batches, unavailable *prometheus.Desc
}

func (c *cdrCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hangups, c.inserted, c.duplicates, c.spooled, c.dead, c.estimated,
		c.kept, c.refused, c.overflows, c.unratedDefault, c.unrated, c.batches, c.unavailable} {
		ch <- d
	}
}

func (c *cdrCollector) Collect(ch chan<- prometheus.Metric) {
	s, p := c.stats(), c.pricer()
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(c.hangups, s.Hangups)
	counter(c.inserted, s.Inserted)
	counter(c.duplicates, s.Duplicates)
	counter(c.spooled, s.Spooled)
	counter(c.dead, s.DeadLetters)
	counter(c.estimated, s.Estimated)
	counter(c.kept, s.Kept)
	counter(c.refused, s.Refused)
	counter(c.overflows, s.Overflows)
	counter(c.unratedDefault, p.UnratedDefault)
	counter(c.unrated, p.Unrated)
	ch <- prometheus.MustNewConstMetric(c.batches, prometheus.GaugeValue, float64(s.QueuedBatches))
	unavailable := 0.0
	if s.Unavailable {
		unavailable = 1
	}
	ch <- prometheus.MustNewConstMetric(c.unavailable, prometheus.GaugeValue, unavailable)
}
