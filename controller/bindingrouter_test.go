package controller_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/app/apptest"
	"callbridge/internal/wait"
	"callbridge/privacy"
)

// TestBindingCallSlotHeldByRouterOnly runs two wired controllers on one
// database following one simulated node, whose dialplan requests go to
// the first. A binding call fails over from "carrier" (refuses every
// leg) to "backup" (capped at one call): the backup leg names the first
// controller in callbridge.VarRouter, so it holds exactly one slot in
// gateway_slots (the first controller's), not one per controller, and
// the failover and the two attempts (their outcomes and post-dial
// delays) are counted once across both controllers' metrics, by the
// router, though both read the attempts' hangups.
func TestBindingCallSlotHeldByRouterOnly(t *testing.T) {
	env := newSlotsEnv(t)
	cfg2 := env.cfg
	cfg2.Owner, cfg2.SpoolDir, cfg2.ReportDir = "test-2", t.TempDir(), t.TempDir()
	cfg2.ESL, cfg2.ESLPassword = []string{env.fs.Addr()}, env.fs.Password
	second := apptest.Run(t, env.db, cfg2, apptest.Options{})
	calls, calls2 := env.calls, second.Server.Privacy.Calls.(*privacy.Calls)
	b := env.binding
	active := func() int { return env.backupActive(t) }

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

	// The attempts: counted by the router alone, once both pipelines have
	// handled the call's three CDRs (the caller's leg and two attempts).
	wait.ForState(t, "both pipelines past the call's CDRs", func() (bool, string) {
		s1, s2 := env.app.CDRs.Stats(), second.CDRs.Stats()
		return s1.Inserted+s1.Duplicates >= 3 && s2.Inserted+s2.Duplicates >= 3,
			fmt.Sprintf("first wrote %d+%d, second %d+%d", s1.Inserted, s1.Duplicates, s2.Inserted, s2.Duplicates)
	})
	first = scrapeMetrics(t, env.api.URL)
	other := scrapeMetrics(t, second.API.URL)
	for _, sample := range []string{
		`callbridge_gateway_attempts_total{gateway="carrier",outcome="carrier_failure"}`,
		`callbridge_gateway_attempts_total{gateway="backup",outcome="answered"}`,
	} {
		if v := metricValue(first, sample); v != "1" {
			t.Errorf("the router's %s = %q, want 1", sample, v)
		}
		if v := metricValue(other, sample); v != "" {
			t.Errorf("the second controller's %s = %q, want none: the router counts it", sample, v)
		}
	}
	if strings.Contains(other, `callbridge_gateway_post_dial_delay_seconds_count{gateway="backup"}`) {
		t.Errorf("the second controller counts the router's post-dial delay too")
	}
}
