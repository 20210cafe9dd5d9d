package controller_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/app"
	"callbridge/carrier"
	"callbridge/esl/esltest"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/privacy"
	"callbridge/routing"
)

// TestBindingCallsHoldGatewaySlots runs the serve wiring against a
// simulated node whose default route plan sends binding calls through
// "carrier" (which refuses every leg) and then "backup" (capped at one
// concurrent call): the first binding call fails over to backup, counted
// in failovers_total, and its backup leg holds backup's slot in
// gateway_slots while it lasts: resolve shows backup at_capacity, a
// callback leg's Begin through it is refused at_capacity, and a second
// binding call meanwhile is not sent through backup. After the hangup
// the slot is released and backup takes calls again.
func TestBindingCallsHoldGatewaySlots(t *testing.T) {
	env := newSlotsEnv(t)
	gws := env.srv.GatewayHealth.(*carrier.Gateways)
	calls := env.calls
	ctx := context.Background()
	backup := func() string {
		for _, c := range env.resolve("number=%2B" + string(tB)).Resolution.Candidates {
			if c.Gateway == "backup" {
				return c.Reason
			}
		}
		return "missing"
	}
	active := func() int { return env.backupActive(t) }

	if r := backup(); r == "at_capacity" {
		t.Fatalf("backup before any call: %s", r)
	}

	// The first call: carrier refuses, backup answers.
	leg := env.call(t, tA, tX)
	if leg == nil {
		t.Fatal("the first call was not bridged")
	}
	if gw := leg.Variables[callbridge.VarGateway]; gw != "backup" {
		t.Fatalf("the first call was bridged through %q, want backup", gw)
	}
	var inbound string
	for _, ch := range env.fs.Channels() {
		if ch.BridgedTo == leg.UUID {
			inbound = ch.UUID
		}
	}
	wait.ForState(t, "the backup leg to hold backup's only slot", func() (bool, string) {
		n, r := active(), backup()
		return n == 1 && r == "at_capacity", fmt.Sprintf("%d active, resolve says %s, %d held", n, r, calls.HeldSlots())
	}, wait.Every(20*time.Millisecond))
	if r := gws.Begin(ctx, "backup", time.Now()); r != routing.ReasonAtCapacity {
		t.Errorf("a callback leg's Begin through backup during the binding call: %s, want at_capacity", r)
	}

	// The second call meanwhile: backup is full, so only carrier is
	// tried, which refuses: the call is not bridged and backup's count
	// stays one.
	if second := env.call(t, tA, tX); second != nil {
		t.Errorf("the second call was bridged through %q while backup was full", second.Variables[callbridge.VarGateway])
	}
	if n := active(); n != 1 {
		t.Errorf("backup's slots during the second call: %d, want 1", n)
	}

	// The first call ends: its slot is released once.
	if err := env.fs.Hangup(inbound, "NORMAL_CLEARING"); err != nil {
		t.Fatal(err)
	}
	wait.ForState(t, "backup's slot released", func() (bool, string) {
		n, r := active(), backup()
		return n == 0 && r != "at_capacity" && calls.HeldSlots() == 0, fmt.Sprintf("%d active, resolve says %s, %d held", n, r, calls.HeldSlots())
	}, wait.Every(20*time.Millisecond))
	if r := gws.Begin(ctx, "backup", time.Now()); r != routing.ReasonOK {
		t.Errorf("Begin through backup after the binding call: %s, want ok", r)
	}
	gws.End("backup", time.Now(), false)

	body := string(env.mustCall(http.StatusOK, "GET", "/metrics", fullAdminToken, nil).body)
	for _, want := range []string{
		`callbridge_gateway_failovers_total{gateway="carrier"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, `callbridge_gateway_failovers_total{gateway="backup"}`) {
		t.Errorf("/metrics counts a failover from backup, which answered")
	}

	// A third call takes the slot again, and ends while the controller
	// is cut off from the node: the hangup's events are lost, and the
	// reconciliation after the reconnection gives the slot back.
	third := env.call(t, tA, tX)
	if third == nil {
		t.Fatal("the third call was not bridged")
	}
	wait.ForState(t, "the third call's backup leg to hold the slot", func() (bool, string) {
		n, r := active(), backup()
		return n == 1 && r == "at_capacity", fmt.Sprintf("%d active, resolve says %s, %d held", n, r, calls.HeldSlots())
	}, wait.Every(20*time.Millisecond))
	env.fs.SetRefuseAuth(true)
	env.fs.DropConnections()
	for _, ch := range env.fs.Channels() {
		if ch.BridgedTo == third.UUID {
			if err := env.fs.Hangup(ch.UUID, "NORMAL_CLEARING"); err != nil {
				t.Fatal(err)
			}
		}
	}
	wait.For(t, "the third call to end on the node", func() bool { return !env.alive(third.UUID) })
	env.fs.SetRefuseAuth(false)
	wait.ForState(t, "the reconciliation to release the slot", func() (bool, string) {
		n, r := active(), backup()
		return n == 0 && r != "at_capacity" && calls.HeldSlots() == 0, fmt.Sprintf("%d active, resolve says %s, %d held", n, r, calls.HeldSlots())
	}, wait.Every(20*time.Millisecond))
}

// slotsEnv is a wired controller following a simulated node whose
// default route plan sends calls to 49 through "carrier" (which refuses
// every leg) and then "backup" (capped at one concurrent call), with an
// AXB binding of tA and tB on tX in its index.
type slotsEnv struct {
	*privacyEnv
	cfg     app.Config // the controller's, for a second one beside it
	binding callbridge.Binding
	calls   *privacy.Calls
	slots   *postgres.GatewaySlots
}

func newSlotsEnv(t *testing.T) *slotsEnv {
	t.Helper()
	env := &slotsEnv{}
	env.privacyEnv = newPrivacyEnvWith(t, callsScript, func(c *app.Config) {
		c.GatewayPollInterval = time.Hour
		c.GatewayLimits = map[string]routing.Limits{"backup": {MaxActive: 1}}
		env.cfg = *c
	}, esltest.Gateway{Name: "carrier", Refuse: true}, esltest.Gateway{Name: "backup"})
	env.calls = env.srv.Privacy.Calls.(*privacy.Calls)
	env.slots = postgres.NewGatewaySlots(env.db)
	plan := env.mustCall(http.StatusCreated, "POST", "/v1/admin/route-plans", fullAdminToken,
		map[string]any{"name": "default", "default": true, "time_zone": "UTC", "currency": "EUR"}).json(t)
	id, _ := plan["id"].(string)
	if a := env.importRoutesCSV(id, "", "prefix,strategy,gateways\n49,priority,carrier;backup\n"); a.status != http.StatusOK {
		t.Fatalf("import: %d %s", a.status, a.body)
	}
	if code := env.do(t, "POST", "/v1/numbers", map[string]any{"number": string(tX), "gateway": "carrier"}, nil); code != http.StatusCreated {
		t.Fatalf("create number: %d", code)
	}
	if code := env.do(t, "POST", "/v1/bindings", map[string]any{"mode": "AXB", "a": string(tA), "b": string(tB), "x": string(tX), "ttl": 3600}, &env.binding); code != http.StatusCreated {
		t.Fatalf("create binding: %d", code)
	}
	wait.For(t, "the index to hold the binding", func() bool {
		l := env.line(tX)
		return l != nil && len(l.Bindings) == 1
	})
	return env
}

// backupActive returns how many calls hold backup's slots in
// gateway_slots.
func (env *slotsEnv) backupActive(t *testing.T) int {
	t.Helper()
	loads, err := env.slots.Loads(context.Background())
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

// alive reports whether the simulator still has channel uuid.
func (env *privacyEnv) alive(uuid string) bool {
	for _, ch := range env.fs.Channels() {
		if ch.UUID == uuid {
			return true
		}
	}
	return false
}
