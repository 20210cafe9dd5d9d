package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/app"
	"callbridge/app/apptest"
	"callbridge/esl/esltest"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/routing"
)

// scrapeMetrics reads a controller's /metrics.
func scrapeMetrics(t testing.TB, baseURL string) string {
	t.Helper()
	req, err := http.NewRequest("GET", baseURL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+fullAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s/metrics: %d %v", baseURL, resp.StatusCode, err)
	}
	return string(body)
}

// TestCallbackGatewayAttemptsTwoControllers runs two wired controllers
// on one database, both following one simulated node, and places a
// callback through a route plan whose first gateway refuses every leg
// (a carrier answering 503) and whose second answers; the breakers open
// after 2 consecutive carrier failures. Whichever controller places the
// callback, leg A fails over from "refusing" to "backup", then leg B
// does the same: two carrier failures, which open refusing's breaker on
// both controllers (the placer's from its attempts' ends, the other's
// from their CDRs), each counted once on the placer (counted twice
// there, the breaker would open at A's failure and B's attempt would be
// refused). The four attempts are counted once across the two
// controllers' metrics, so their sum is right.
func TestCallbackGatewayAttemptsTwoControllers(t *testing.T) {
	fs := esltest.NewUnstartedServer()
	fs.Gateways = []esltest.Gateway{{Name: "refusing", Refuse: true}, {Name: "backup"}}
	// The far ends talk 60 s of simulated time (3 s real): A is still up
	// while B fails over.
	script, err := esltest.ParseScript([]byte(`{"rules":[{"prefix":"49","ring_ms":200,"outcome":"answer","talk_ms":60000}]}`))
	if err != nil {
		t.Fatal(err)
	}
	fs.Script, fs.Speed = script, 20
	var cfg app.Config
	env := newEnv(t, envOptions{fs: fs, configure: func(c *app.Config) {
		c.Breaker = routing.BreakerConfig{Failures: 2, Cooldown: time.Hour}
		c.GatewayPollInterval = time.Hour
		cfg = *c
	}})
	cfg2 := cfg
	cfg2.Owner, cfg2.SpoolDir, cfg2.ReportDir = "test-2", t.TempDir(), t.TempDir()
	cfg2.ESL, cfg2.ESLPassword = []string{fs.Addr()}, fs.Password
	logs2 := &syncBuffer{}
	second := apptest.Run(t, env.db, cfg2, apptest.Options{Log: slog.New(slog.NewJSONHandler(logs2, nil))})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("first controller's log:\n%s\nsecond controller's log:\n%s", env.logs, logs2)
			for _, c := range fs.Commands() {
				if strings.Contains(c, "originate ") {
					t.Logf("command: %.600s", c)
				}
			}
		}
	})

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
	wait.For(t, "the plan in force on both controllers", func() bool {
		return env.srv.Plans.For(acct.ID) != nil && second.Server.Plans.For(acct.ID) != nil
	})

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
		return got.Status.Terminal(), string(got.Status) + "/" + string(got.Reason)
	}, wait.Within(30*time.Second))
	if got, _ := store.Callback(context.Background(), acct.ID, cb.ID); got.Status != callbridge.CallbackCompleted {
		t.Errorf("callback %s/%s, want completed through backup", got.Status, got.Reason)
	}

	// Four attempt legs (A and B, each through refusing, then backup),
	// each written once, and handled by both controllers' pipelines.
	wait.ForState(t, "both pipelines past the four attempts' CDRs", func() (bool, string) {
		var n int
		if err := env.db.QueryRowContext(context.Background(), `SELECT count(*) FROM cdrs WHERE callback_id = $1 AND attempt > 0`, cb.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		s1, s2 := env.app.CDRs.Stats(), second.CDRs.Stats()
		return n == 4 && s1.Inserted+s1.Duplicates >= 4 && s2.Inserted+s2.Duplicates >= 4,
			fmt.Sprintf("%d attempt CDRs; first wrote %d+%d, second %d+%d", n, s1.Inserted, s1.Duplicates, s2.Inserted, s2.Duplicates)
	}, wait.Within(30*time.Second))

	scrapes := []string{scrapeMetrics(t, env.api.URL), scrapeMetrics(t, second.API.URL)}
	sum := func(sample string) (n int, each []string) {
		for _, s := range scrapes {
			v := metricValue(s, sample)
			each = append(each, v)
			i, _ := strconv.Atoi(v)
			n += i
		}
		return n, each
	}
	for _, c := range []struct {
		sample string
		want   int
	}{
		{`callbridge_gateway_attempts_total{gateway="refusing",outcome="carrier_failure"}`, 2},
		{`callbridge_gateway_attempts_total{gateway="backup",outcome="answered"}`, 2},
		{`callbridge_gateway_post_dial_delay_seconds_count{gateway="backup"}`, 2},
		{`callbridge_gateway_failovers_total{gateway="refusing"}`, 2},
		{`callbridge_gateway_refused_total{gateway="refusing",reason="circuit_open"}`, 0},
	} {
		if got, each := sum(c.sample); got != c.want {
			t.Errorf("%s summed over the controllers: %d %q, want %d", c.sample, got, each, c.want)
		}
	}
	for i, s := range scrapes {
		if v := metricValue(s, `callbridge_gateway_breaker_state{gateway="refusing",state="open"}`); v != "1" {
			t.Errorf("controller %d: refusing's breaker open = %q, want 1 after two carrier failures in the cluster", i+1, v)
		}
		if v := metricValue(s, `callbridge_gateway_breaker_state{gateway="backup",state="closed"}`); v != "1" {
			t.Errorf("controller %d: backup's breaker closed = %q, want 1", i+1, v)
		}
	}
	for i, g := range []interface {
		Health(string, time.Time) routing.Health
	}{env.app.Gateways, second.Gateways} {
		if h := g.Health("refusing", time.Now()); h.Breaker != routing.BreakerOpen {
			t.Errorf("controller %d: refusing's breaker is %s, want open", i+1, h.Breaker)
		}
	}
}
