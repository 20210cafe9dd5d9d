package controller_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"callbridge/app"
	"callbridge/carrier"
	"callbridge/esl/esltest"
	"callbridge/internal/wait"
	"callbridge/metrics"
	"callbridge/routing"
)

// TestResolveShowsGatewayHealth runs the serve wiring against a simulated
// node with two gateways: resolve shows the switch's state of each
// (polled at connect, then a DOWN by sofia::gateway_state, as the poll
// interval is an hour), a gateway at its cap, and a breaker opened by a
// carrier failure; /metrics shows the same, and the attempt a caller
// reports.
func TestResolveShowsGatewayHealth(t *testing.T) {
	t.Parallel()
	fs := esltest.NewUnstartedServer()
	fs.Gateways = []esltest.Gateway{{Name: "carrier"}, {Name: "backup"}}
	fs.Start()
	t.Cleanup(fs.Close)
	env := newFullEnvWith(t, func(c *app.Config) {
		c.ESL, c.ESLPassword = []string{fs.Addr()}, "ClueCon"
		c.GatewayPollInterval = time.Hour
		c.Breaker = routing.BreakerConfig{Failures: 1, Cooldown: time.Hour}
		c.GatewayLimits = map[string]routing.Limits{"backup": {MaxActive: 1, MaxCPS: 10}}
	}, nil)
	gws, ok := env.srv.GatewayHealth.(*carrier.Gateways)
	if !ok {
		t.Fatalf("the server's gateway health is %T, want the app's *carrier.Gateways", env.srv.GatewayHealth)
	}
	plan := env.mustCall(http.StatusCreated, "POST", "/v1/admin/route-plans", fullAdminToken,
		map[string]any{"name": "default", "default": true, "time_zone": "UTC", "currency": "EUR"}).json(t)
	id, _ := plan["id"].(string)
	if a := env.importRoutesCSV(id, "", "prefix,strategy,gateways\n49,priority,carrier;backup;other\n"); a.status != http.StatusOK {
		t.Fatalf("import: %d %s", a.status, a.body)
	}
	until := func(what, want string) {
		t.Helper()
		wait.ForState(t, what, func() (bool, string) {
			r := env.resolve("number=%2B4930123456")
			var parts []string
			for _, c := range r.Resolution.Candidates {
				parts = append(parts, c.Gateway+":"+c.Reason+"/"+c.Health.Sofia+"/"+c.Health.Breaker)
			}
			got := strings.Join(parts, " ")
			return got == want, got
		}, wait.Every(20*time.Millisecond))
	}
	until("both gateways up", "carrier:unpriced/up/closed backup:unpriced/up/closed other:unpriced/unknown/closed")

	if err := fs.SetGatewayStatus("carrier", "DOWN"); err != nil {
		t.Fatal(err)
	}
	until("carrier down", "backup:unpriced/up/closed other:unpriced/unknown/closed carrier:sofia_down/down/closed")

	ctx := context.Background()
	if r := gws.Begin(ctx, "backup", time.Now()); r != routing.ReasonOK {
		t.Fatalf("Begin through backup: %s", r)
	}
	until("backup at its cap", "other:unpriced/unknown/closed carrier:sofia_down/down/closed backup:at_capacity/up/closed")
	gws.End("backup", time.Now(), true)
	until("backup's breaker open", "other:unpriced/unknown/closed carrier:sofia_down/down/closed backup:circuit_open/up/open")
	if r := gws.Begin(ctx, "backup", time.Now()); r != routing.ReasonCircuitOpen {
		t.Errorf("Begin through backup with its breaker open: %s", r)
	}
	env.srv.Metrics.ObserveAttempt("backup", metrics.AttemptCarrierFailure)
	env.srv.Metrics.ObservePostDialDelay("backup", 1500*time.Millisecond)
	env.srv.Metrics.ObserveFailover("backup")

	body := string(env.mustCall(http.StatusOK, "GET", "/metrics", fullAdminToken, nil).body)
	for _, want := range []string{
		`callbridge_gateway_sofia_state{gateway="carrier",state="down"} 1`,
		`callbridge_gateway_sofia_state{gateway="backup",state="up"} 1`,
		`callbridge_gateway_breaker_state{gateway="backup",state="open"} 1`,
		`callbridge_gateway_breaker_state{gateway="carrier",state="closed"} 1`,
		`callbridge_gateway_max_calls{gateway="backup"} 1`,
		`callbridge_gateway_max_cps{gateway="backup"} 10`,
		`callbridge_gateway_active_calls{gateway="backup"} 0`,
		`callbridge_gateway_refused_total{gateway="backup",reason="circuit_open"} 1`,
		`callbridge_gateway_attempts_total{gateway="backup",outcome="carrier_failure"} 1`,
		`callbridge_gateway_failovers_total{gateway="backup"} 1`,
		`callbridge_gateway_post_dial_delay_seconds_bucket{gateway="backup",le="1.5"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
