package controller_test

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"callbridge"
	"callbridge/app"
	"callbridge/esl/esltest"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/routing"
)

// metricValue reads one sample of a scrape ("" when absent).
func metricValue(scrape, sample string) string {
	m := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(sample) + " (\\S+)$").FindStringSubmatch(scrape)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestCallbackThroughCappedGateways places a callback on a simulated node
// through a route plan whose first gateway refuses every leg (a carrier
// answering 503) and whose second is capped: the call completes through
// the second, the first's breaker opens after leg A's carrier failure
// there (Failures 1), so leg B, routed when it is placed, leaves the
// first gateway out and goes straight through the second; the metrics
// count the attempts by outcome (from the CDRs) and A's failover (B had
// none, and no attempt was refused: the route skipped the open breaker),
// and every slot the capped gateway's calls held in PostgreSQL is
// released when the call ends.
func TestCallbackThroughCappedGateways(t *testing.T) {
	t.Parallel()
	fs := esltest.NewUnstartedServer()
	fs.Gateways = []esltest.Gateway{{Name: "refusing", Refuse: true}, {Name: "backup"}}
	// The far ends talk 60 s of simulated time (3 s real): A must still be
	// up while B fails over, however slowly a loaded machine runs.
	script, err := esltest.ParseScript([]byte(`{"rules":[{"prefix":"49","ring_ms":200,"outcome":"answer","talk_ms":60000}]}`))
	if err != nil {
		t.Fatal(err)
	}
	fs.Script, fs.Speed = script, 20
	env := newEnv(t, envOptions{fs: fs, configure: func(c *app.Config) {
		c.Breaker = routing.BreakerConfig{Failures: 1, Cooldown: time.Hour}
		c.GatewayLimits = map[string]routing.Limits{"backup": {MaxActive: 10, MaxCPS: 50}}
		c.GatewayPollInterval = time.Hour
	}})
	acct := &callbridge.Account{Name: "carriers", ServiceNumber: "4930100100", Currency: "EUR"}
	key, err := postgres.NewAccountService(env.db).CreateAccount(context.Background(), acct)
	if err != nil {
		t.Fatal(err)
	}
	plan := env.mustCall(http.StatusCreated, "POST", "/v1/admin/route-plans", fullAdminToken,
		map[string]any{"name": "default", "default": true, "time_zone": "UTC", "currency": "EUR"}).json(t)
	id, _ := plan["id"].(string)
	if a := env.importRoutesCSV(id, "", "prefix,strategy,gateways\n49,priority,refusing;backup\n"); a.status != http.StatusOK {
		t.Fatalf("import: %d %s", a.status, a.body)
	}
	wait.For(t, "the plan in force", func() bool { return env.srv.Plans.For(acct.ID) != nil })

	var cb callbridge.Callback
	a := env.mustCall(http.StatusAccepted, "POST", "/v1/callbacks", key, `{"a":"4917011111","b":"4917022222"}`)
	if err := json.Unmarshal(a.body, &cb); err != nil {
		t.Fatal(err)
	}
	store := postgres.NewCallbackService(env.db)
	wait.ForState(t, "the callback to end", func() (bool, string) {
		got, err := store.Callback(context.Background(), acct.ID, cb.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.Status == callbridge.CallbackCompleted || got.Status == callbridge.CallbackFailed, string(got.Status) + "/" + string(got.Reason)
	}, wait.Within(30*time.Second))
	got, _ := store.Callback(context.Background(), acct.ID, cb.ID)
	if got.Status != callbridge.CallbackCompleted {
		t.Errorf("callback %s/%s, want completed through backup", got.Status, got.Reason)
	}

	wait.ForState(t, "the slots released and the attempts counted", func() (bool, string) {
		var live int
		if err := env.db.QueryRowContext(context.Background(), `SELECT count(*) FROM gateway_slots WHERE NOT ended`).Scan(&live); err != nil {
			t.Fatal(err)
		}
		scrape := string(env.mustCall(http.StatusOK, "GET", "/metrics", fullAdminToken, nil).body)
		answered, _ := strconv.Atoi(metricValue(scrape, `callbridge_gateway_attempts_total{gateway="backup",outcome="answered"}`))
		state := "live slots " + strconv.Itoa(live) + ", backup answered " + strconv.Itoa(answered) +
			", refusing failed " + metricValue(scrape, `callbridge_gateway_attempts_total{gateway="refusing",outcome="carrier_failure"}`) +
			", failovers " + metricValue(scrape, `callbridge_gateway_failovers_total{gateway="refusing"}`) +
			", refused " + metricValue(scrape, `callbridge_gateway_refused_total{gateway="refusing",reason="circuit_open"}`) +
			", refusing breaker open " + metricValue(scrape, `callbridge_gateway_breaker_state{gateway="refusing",state="open"}`) +
			", backup active " + metricValue(scrape, `callbridge_gateway_active_calls{gateway="backup"}`) +
			", backup pdd count " + metricValue(scrape, `callbridge_gateway_post_dial_delay_seconds_count{gateway="backup"}`) +
			", backup pdd sum " + metricValue(scrape, `callbridge_gateway_post_dial_delay_seconds_sum{gateway="backup"}`) +
			", refusing pdd count " + metricValue(scrape, `callbridge_gateway_post_dial_delay_seconds_count{gateway="refusing"}`)
		ok := live == 0 && answered == 2 &&
			metricValue(scrape, `callbridge_gateway_attempts_total{gateway="refusing",outcome="carrier_failure"}`) == "1" &&
			metricValue(scrape, `callbridge_gateway_failovers_total{gateway="refusing"}`) == "1" &&
			metricValue(scrape, `callbridge_gateway_refused_total{gateway="refusing",reason="circuit_open"}`) == "" &&
			metricValue(scrape, `callbridge_gateway_breaker_state{gateway="refusing",state="open"}`) == "1" &&
			metricValue(scrape, `callbridge_gateway_active_calls{gateway="backup"}`) == "0" &&
			// Both legs rang 200 ms (simulated) through backup: each got
			// a post-dial delay; the refused leg got none.
			metricValue(scrape, `callbridge_gateway_post_dial_delay_seconds_count{gateway="backup"}`) == "2" &&

			metricValue(scrape, `callbridge_gateway_post_dial_delay_seconds_count{gateway="refusing"}`) == ""
		return ok, state
	}, wait.Every(50*time.Millisecond))
	var claimed int
	if err := env.db.QueryRowContext(context.Background(), `SELECT count(*) FROM gateway_slots WHERE gateway = 'backup'`).Scan(&claimed); err != nil {
		t.Fatal(err)
	}
	scrape := string(env.mustCall(http.StatusOK, "GET", "/metrics", fullAdminToken, nil).body)
	t.Logf("backup post-dial delay sum %s s", metricValue(scrape, `callbridge_gateway_post_dial_delay_seconds_sum{gateway="backup"}`))
	t.Logf("backup slots left in the table, ended, for the next claim through it to delete: %d", claimed)
}
