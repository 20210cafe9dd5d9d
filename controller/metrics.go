package controller

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"callbridge"
	"callbridge/billing"
	"callbridge/esl"

	"github.com/gin-gonic/gin"
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
}

// NewMetrics returns a registry holding the Go runtime and process
// collectors and the HTTP request metrics.
func NewMetrics() *Metrics {
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
	return m
}

// ObserveCallbackStatus is a CallbackEngineConfig.OnStatus hook counting
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

// ObserveWebhook is a WebhookDelivererConfig.OnOutcome hook.
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

// observe records every request by its route pattern (never the raw path,
// which would let clients create unbounded label values).
func (m *Metrics) observe() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := arrival(c.Request)
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		took := time.Since(start)
		m.httpRequests.WithLabelValues(c.Request.Method, route, strconv.Itoa(c.Writer.Status())).Inc()
		m.httpDuration.WithLabelValues(c.Request.Method, route).Observe(took.Seconds())
		timeout := m.DialplanTimeout
		if timeout <= 0 {
			timeout = 2 * time.Second
		}
		if route == dialplanRoute && took >= timeout {
			m.dialplanLate.Inc()
		}
	}
}

// dialplanRoute is the route mod_xml_curl calls.
const dialplanRoute = "/fs/dialplan"

type arrivalKey struct{}

// connArrival is when a connection was accepted; the first request read
// from it arrived then.
type connArrival struct {
	at   time.Time
	used atomic.Bool
}

// ConnArrival is an http.Server ConnContext hook noting when each
// connection was accepted. The HTTP metrics time the first request of a
// connection from then, not from when its handler first ran: FreeSWITCH's
// mod_xml_curl opens a connection per request and times it from the
// connect, so a controller slow to accept, read headers or schedule the
// handler (a saturated CPU, a stop) is seen as FreeSWITCH sees it. Later
// requests of a kept-alive connection are timed from their handler.
//
// The connection may have waited before it was accepted: in the listen
// backlog while the process was stopped or starved. Where the kernel tells
// (Linux TCP_INFO), the arrival is when it last received data on the
// connection, or completed its handshake, before the accept.
func ConnArrival(ctx context.Context, c net.Conn) context.Context {
	now := time.Now()
	return context.WithValue(ctx, arrivalKey{}, &connArrival{at: now.Add(-receivedAgo(c))})
}

// arrival is when r arrived, as far as the server can tell.
func arrival(r *http.Request) time.Time {
	if a, ok := r.Context().Value(arrivalKey{}).(*connArrival); ok && !a.used.Swap(true) {
		return a.at
	}
	return time.Now()
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// nodeCollector reports each FreeSWITCH node's connection state and
// counters at scrape time.
type nodeCollector struct {
	nodes                            func() []NodeStatus
	connected, redials, events, call *prometheus.Desc
	ready, jobTimeouts, probeFails   *prometheus.Desc
}

// WatchNodes exports the ESL state of the nodes nodes() reports:
// connection state, redials, events received and active calls per node.
func (m *Metrics) WatchNodes(nodes func() []NodeStatus) {
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
		up := 0.0
		if n.Connected {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, up, n.Name)
		ch <- prometheus.MustNewConstMetric(c.redials, prometheus.CounterValue, float64(n.Redials), n.Name)
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(n.Events), n.Name)
		ch <- prometheus.MustNewConstMetric(c.call, prometheus.GaugeValue, float64(n.Calls), n.Name)
		ready := 0.0
		if n.Ready {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, ready, n.Name)
		ch <- prometheus.MustNewConstMetric(c.jobTimeouts, prometheus.CounterValue, float64(n.JobTimeouts), n.Name)
		ch <- prometheus.MustNewConstMetric(c.probeFails, prometheus.CounterValue, float64(n.ProbeFailures), n.Name)
	}
}
