package metrics

import (
	"time"

	"callbridge/carrier"
	"callbridge/routing"

	"github.com/prometheus/client_golang/prometheus"
)

// Attempt outcomes, the outcome label of callbridge_gateway_attempts_total.
const (
	// AttemptAnswered: the far end answered (a seizure that became a
	// call).
	AttemptAnswered = "answered"
	// AttemptUnanswered: the carrier carried the call but the person
	// called did not take it (busy, no answer, rejected, unallocated), or
	// the caller gave up.
	AttemptUnanswered = "unanswered"
	// AttemptCarrierFailure: the carrier could not carry the call
	// (routing.Policy.Classify said Failover).
	AttemptCarrierFailure = "carrier_failure"
)

// gatewayMetrics are the per-gateway metrics the callers observe.
type gatewayMetrics struct {
	attempts  *prometheus.CounterVec
	failovers *prometheus.CounterVec
	pdd       *prometheus.HistogramVec
	refused   *prometheus.CounterVec
}

func newGatewayMetrics(reg *prometheus.Registry) gatewayMetrics {
	g := gatewayMetrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callbridge_gateway_attempts_total",
			Help: "Outbound attempts through each carrier gateway that this controller routed (placed the callback leg, or answered the binding call's dialplan request), by outcome (answered, unanswered, carrier_failure); each attempt is counted by one controller, so sum over them; the answer-seizure ratio is answered over all.",
		}, []string{"gateway", "outcome"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callbridge_gateway_failovers_total",
			Help: "Calls that went on from the gateway to the next of their route (it could not carry them, or refused the attempt: breaker, cap, down), by the gateway left.",
		}, []string{"gateway"}),
		pdd: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "callbridge_gateway_post_dial_delay_seconds",
			Help:    "Post-dial delay per gateway of the attempts this controller routed (each counted by one controller: sum over them): from sending the attempt to the carrier's first ringing, early media or answer.",
			Buckets: []float64{.1, .25, .5, 1, 1.5, 2, 3, 4, 6, 8, 10, 15, 20, 30},
		}, []string{"gateway"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callbridge_gateway_refused_total",
			Help: "Attempts this controller did not send through a gateway, by reason (sofia_down, circuit_open, circuit_probing, at_capacity, cps_limit).",
		}, []string{"gateway", "reason"}),
	}
	reg.MustRegister(g.attempts, g.failovers, g.pdd, g.refused)
	return g
}

// ObserveAttempt records one attempt through gateway when it ended, by
// its outcome (AttemptAnswered, AttemptUnanswered,
// AttemptCarrierFailure; anything else counts as "other"). serve calls
// it from the leg's CDR (cdr.Config.OnAttempt) for every leg a route
// plan's gateway carried, callback and binding calls alike, that this
// controller routed (callbridge.VarRouter): each attempt is counted by
// one controller of the cluster. Callers do not call it again.
func (m *Metrics) ObserveAttempt(gateway, outcome string) {
	switch outcome {
	case AttemptAnswered, AttemptUnanswered, AttemptCarrierFailure:
	default:
		outcome = "other"
	}
	m.gateways.attempts.WithLabelValues(gateway, outcome).Inc()
}

// ObservePostDialDelay records an attempt's post-dial delay through
// gateway: the time from sending it to the carrier's first ringing,
// early media or answer. serve calls it from the same CDRs as
// ObserveAttempt (callbridge.CDR.PostDialMS), for the attempts that got
// that far.
func (m *Metrics) ObservePostDialDelay(gateway string, pdd time.Duration) {
	m.gateways.pdd.WithLabelValues(gateway).Observe(pdd.Seconds())
}

// ObserveFailover records that a call went on from gateway to the next
// gateway of its route: gateway could not carry it, or refused the
// attempt (callback.Config.OnFailover in serve).
func (m *Metrics) ObserveFailover(gateway string) {
	m.gateways.failovers.WithLabelValues(gateway).Inc()
}

// ObserveGatewayRefused is a carrier.Config.OnRefused hook: an attempt
// Begin did not let through gateway, and why.
func (m *Metrics) ObserveGatewayRefused(gateway string, r routing.Reason) {
	m.gateways.refused.WithLabelValues(gateway, r.String()).Inc()
}

// WatchGateways exports each gateway's state from snapshot at each
// scrape: its sofia state and breaker state (one series per state, 1 for
// the current one), its calls across controllers, and its caps.
func (m *Metrics) WatchGateways(snapshot func(now time.Time) []carrier.Status) {
	m.Registry.MustRegister(&gatewayCollector{
		snapshot: snapshot,
		sofia:    prometheus.NewDesc("callbridge_gateway_sofia_state", "The switch's state of the gateway, combined over the connected nodes (up on any node: up; down on every node that has it: down; reported by none: unknown); 1 for the current state.", []string{"gateway", "state"}, nil),
		breaker:  prometheus.NewDesc("callbridge_gateway_breaker_state", "The gateway's circuit breaker on this controller, fed by every attempt in the cluster (closed, open, half_open, probing); 1 for the current state.", []string{"gateway", "state"}, nil),
		active:   prometheus.NewDesc("callbridge_gateway_active_calls", "Calls through the gateway now across controllers, as this controller last counted them.", []string{"gateway"}, nil),
		maxCalls: prometheus.NewDesc("callbridge_gateway_max_calls", "The gateway's concurrent-call cap (CALLBRIDGE_GATEWAY_LIMITS); 0 for none.", []string{"gateway"}, nil),
		maxCPS:   prometheus.NewDesc("callbridge_gateway_max_cps", "The gateway's calls-per-second cap (CALLBRIDGE_GATEWAY_LIMITS); 0 for none.", []string{"gateway"}, nil),
	})
}

type gatewayCollector struct {
	snapshot                                 func(now time.Time) []carrier.Status
	sofia, breaker, active, maxCalls, maxCPS *prometheus.Desc
}

func (c *gatewayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sofia, c.breaker, c.active, c.maxCalls, c.maxCPS} {
		ch <- d
	}
}

func (c *gatewayCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	oneOf := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, s := range c.snapshot(time.Now()) {
		for _, st := range []routing.SofiaState{routing.SofiaUp, routing.SofiaDown, routing.SofiaUnknown} {
			gauge(c.sofia, oneOf(s.Sofia == st), s.Gateway, st.String())
		}
		for _, st := range []routing.BreakerState{routing.BreakerClosed, routing.BreakerOpen, routing.BreakerHalfOpen, routing.BreakerProbing} {
			gauge(c.breaker, oneOf(s.Breaker == st), s.Gateway, st.String())
		}
		gauge(c.active, float64(s.Active), s.Gateway)
		gauge(c.maxCalls, float64(s.MaxActive), s.Gateway)
		gauge(c.maxCPS, float64(s.MaxCPS), s.Gateway)
	}
}
