package controller_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/app"
	"callbridge/app/apptest"
	"callbridge/esl/esltest"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/privacy"
	"callbridge/routing"
)

// TestBindingCallSlotHeldByRouterOnly runs two wired controllers on one
// database following one simulated node, whose dialplan requests go to
// the first. A binding call fails over from "carrier" (refuses every
// leg) to "backup" (capped at one call): the backup leg names the first
// controller in callbridge.VarRouter, so it holds exactly one slot in
// gateway_slots (the first controller's), not one per controller, and
// the failover is counted once across both controllers' metrics.
func TestBindingCallSlotHeldByRouterOnly(t *testing.T) {
	fs := esltest.NewUnstartedServer()
	sc, err := esltest.ParseScript([]byte(callsScript))
	if err != nil {
		t.Fatal(err)
	}
	fs.Script, fs.Speed = sc, 10
	fs.Gateways = []esltest.Gateway{{Name: "carrier", Refuse: true}, {Name: "backup"}}
	var cfg app.Config
	env := &privacyEnv{fullEnv: newEnv(t, envOptions{fs: fs, configure: func(c *app.Config) {
		c.GatewayPollInterval = time.Hour
		c.GatewayLimits = map[string]routing.Limits{"backup": {MaxActive: 1}}
		cfg = *c
	}})}
	cfg2 := cfg
	cfg2.Owner, cfg2.SpoolDir, cfg2.ReportDir = "test-2", t.TempDir(), t.TempDir()
	cfg2.ESL, cfg2.ESLPassword = []string{env.fs.Addr()}, env.fs.Password
	second := apptest.Run(t, env.db, cfg2, apptest.Options{})

	env.key, err = postgres.NewAccountService(env.db).CreateAccount(context.Background(), &callbridge.Account{Name: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	calls := env.srv.Privacy.Calls.(*privacy.Calls)
	calls2 := second.Server.Privacy.Calls.(*privacy.Calls)
	slots := postgres.NewGatewaySlots(env.db)
	ctx := context.Background()

	plan := env.mustCall(http.StatusCreated, "POST", "/v1/admin/route-plans", fullAdminToken,
		map[string]any{"name": "default", "default": true, "time_zone": "UTC", "currency": "EUR"}).json(t)
	id, _ := plan["id"].(string)
	if a := env.importRoutesCSV(id, "", "prefix,strategy,gateways\n49,priority,carrier;backup\n"); a.status != http.StatusOK {
		t.Fatalf("import: %d %s", a.status, a.body)
	}
	if code := env.do(t, "POST", "/v1/numbers", map[string]any{"number": string(tX), "gateway": "carrier"}, nil); code != http.StatusCreated {
		t.Fatalf("create number: %d", code)
	}
	var b callbridge.Binding
	if code := env.do(t, "POST", "/v1/bindings", map[string]any{"mode": "AXB", "a": string(tA), "b": string(tB), "x": string(tX), "ttl": 3600}, &b); code != http.StatusCreated {
		t.Fatalf("create binding: %d", code)
	}
	wait.For(t, "the index to hold the binding", func() bool {
		l := env.line(tX)
		return l != nil && len(l.Bindings) == 1
	})
	active := func() int {
		loads, err := slots.Loads(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range loads {
			if l.Gateway == "backup" {
				return l.Active
			}
		}
		return 0
	}

	leg := env.call(t, tA, tX)
	if leg == nil {
		t.Fatal("the call was not bridged")
	}
	if gw := leg.Variables[callbridge.VarGateway]; gw != "backup" {
		t.Fatalf("the call was bridged through %q, want backup", gw)
	}
	if r := leg.Variables[callbridge.VarRouter]; r == "" || callbridge.ValidateRouter(r) != nil {
		t.Fatalf("the backup leg's %s is %q, want the first controller's name", callbridge.VarRouter, r)
	}
	var inbound string
	for _, ch := range env.fs.Channels() {
		if ch.BridgedTo == leg.UUID {
			inbound = ch.UUID
		}
	}
	// Both controllers follow the call (its inbound and backup legs);
	// only the router holds the backup leg's slot.
	wait.ForState(t, "both controllers to follow the call, one slot held", func() (bool, string) {
		n, l1, l2 := active(), calls.LiveCalls(b.ID), calls2.LiveCalls(b.ID)
		return n == 1 && calls.HeldSlots() == 1 && l1 == 2 && l2 == 2,
			fmt.Sprintf("%d active, held %d/%d, live %d/%d", n, calls.HeldSlots(), calls2.HeldSlots(), l1, l2)
	}, wait.Every(20*time.Millisecond))
	if n, h2 := active(), calls2.HeldSlots(); n != 1 || h2 != 0 {
		t.Errorf("backup's live slots: %d (second controller holds %d), want 1 (0)", n, h2)
	}

	if err := env.fs.Hangup(inbound, "NORMAL_CLEARING"); err != nil {
		t.Fatal(err)
	}
	wait.ForState(t, "the slot released and both controllers past the call", func() (bool, string) {
		n := active()
		return n == 0 && calls.HeldSlots() == 0 && calls.LiveCalls(b.ID) == 0 && calls2.LiveCalls(b.ID) == 0,
			fmt.Sprintf("%d active, held %d/%d", n, calls.HeldSlots(), calls2.HeldSlots())
	}, wait.Every(20*time.Millisecond))

	// The failover is counted once, by the router.
	first := string(env.mustCall(http.StatusOK, "GET", "/metrics", fullAdminToken, nil).body)
	if want := `callbridge_gateway_failovers_total{gateway="carrier"} 1`; !strings.Contains(first, want) {
		t.Errorf("the router's /metrics lacks %s", want)
	}
	req, err := http.NewRequest("GET", second.API.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+fullAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the second controller's /metrics: %d %v", resp.StatusCode, err)
	}
	if strings.Contains(string(body), `callbridge_gateway_failovers_total{gateway="carrier"}`) {
		t.Errorf("the second controller counts the router's failover too")
	}
}
