package esl_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"callbridge"
	"callbridge/dialplan"
	"callbridge/esl/esltest"
	"callbridge/esl/freeswitch"
)

// TestSimulatorBindingPostDialBudget runs realswitch's
// TestBindingPostDialBudget on the simulator: dialplan.Render's
// post-dial budget (6 s) over a sequential bridge through carrier then
// backup. Both ringing 4 s before refusing, the caller's leg is hung up
// NO_ANSWER at the budget and the second attempt cancelled; an answered
// call outlives the budget; a call capped at 10 s after its answer is
// still cut there (ALLOTTED_TIMEOUT), the budget's sched_cancel running
// before the cap's sched_hangup, also when the first carrier refused it
// (503) and the second answered.
func TestSimulatorBindingPostDialBudget(t *testing.T) {
	const budget = 6 * time.Second
	causes := []string{"NORMAL_TEMPORARY_FAILURE", "GATEWAY_DOWN", "NO_ROUTE_DESTINATION", "RECOVERY_ON_TIMER_EXPIRE", "DESTINATION_OUT_OF_ORDER"}
	target := map[string]callbridge.Number{"4930990021": "49300740503", "4930990022": "49300741209", "4930990023": "49300742220", "4930990024": "49300743220"}
	capped := map[string]time.Duration{"4930990023": 10 * time.Second, "4930990024": 10 * time.Second}
	gateways := map[string][]string{"4930990024": {"refuser", "backup"}}
	rules := callbridge.NumberRules{CountryCode: "49", TrunkPrefix: "0"}
	dp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		req, err := dialplan.ParseRequest(r.PostForm, rules)
		if err != nil {
			w.Write(dialplan.NotFound())
			return
		}
		x := string(req.Destination)
		now := time.Now()
		b := &callbridge.Binding{ID: "0f1e2d3c-4b5a-4697-8877-665544332211", AccountID: "acct-1", Mode: callbridge.ModeXB,
			X: req.Destination, B: target[x], Status: callbridge.StatusActive, ExpiresAt: now.Add(time.Hour), CallerDisplay: callbridge.DisplayX}
		line := &dialplan.Line{X: req.Destination, AccountID: "acct-1", Gateway: "carrier", Enabled: true, Bindings: []*callbridge.Binding{b}}
		gws := gateways[x]
		if gws == nil {
			gws = []string{"carrier", "backup"}
		}
		d := dialplan.Decide(req, line, now).Failover(gws, causes)
		d.PostDial, d.MaxDuration = budget, capped[x]
		doc, err := dialplan.Render(nil, req, d, &dialplan.Options{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(doc)
	}))
	defer dp.Close()
	srv := esltest.NewUnstartedServer()
	srv.Speed = 20
	srv.DialplanURL = dp.URL
	srv.Gateways = []esltest.Gateway{{Name: "carrier"}, {Name: "backup"}, {Name: "refuser", Refuse: true}}
	srv.Script = &esltest.Script{Rules: []esltest.Rule{
		{Prefix: "49300740", RingMS: 4000, Outcome: esltest.OutcomeFail},
		{Prefix: "49300741", RingMS: 300, Outcome: esltest.OutcomeAnswer, TalkMS: 9000},
		{Prefix: "49300742", RingMS: 300, Outcome: esltest.OutcomeAnswer, TalkMS: 20000},
		{Prefix: "49300743", RingMS: 300, Outcome: esltest.OutcomeAnswer, TalkMS: 20000},
	}}
	srv.Start()
	defer srv.Close()
	_, sub := runClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	call := func(x string) (freeswitch.Event, []freeswitch.Event) {
		t.Helper()
		return inboundCall(ctx, t, srv, sub, x)
	}
	at := func(e freeswitch.Event, h string) time.Time {
		t.Helper()
		n, err := strconv.ParseInt(e.Get(h), 10, 64)
		if err != nil || n == 0 {
			t.Fatalf("%s of %s: %q", h, e.Get("Unique-ID"), e.Get(h))
		}
		return time.UnixMicro(n)
	}

	a, legs := call("4930990021")
	if len(legs) != 2 {
		t.Fatalf("budget spent: %d attempts %v, want 2", len(legs), summary(legs))
	}
	spent := at(a, "Caller-Channel-Hangup-Time").Sub(at(legs[0], "Caller-Channel-Created-Time"))
	// The causes tell what ended the call (without the budget, the
	// second refusal at 8 s: NORMAL_TEMPORARY_FAILURE); only lower bounds
	// on simulated time, which a loaded machine can only stretch.
	if a.Get("Hangup-Cause") != "NO_ANSWER" || spent < budget-time.Second ||
		legs[0].Get("Hangup-Cause") != "NORMAL_TEMPORARY_FAILURE" || legs[1].Var("sip_gateway_name") != "backup" || legs[1].Get("Hangup-Cause") != "ORIGINATOR_CANCEL" {
		t.Errorf("budget spent: inbound %s after %v, attempts %v; want NO_ANSWER at the %v budget, the second attempt cancelled",
			a.Get("Hangup-Cause"), spent, summary(legs), budget)
	}

	for _, tt := range []struct {
		x        string
		cause    string
		talk     time.Duration
		attempts int
	}{
		{"4930990022", "NORMAL_CLEARING", 9 * time.Second, 1},
		// The callee would hang up at 20 s, NORMAL_CLEARING.
		{"4930990023", "ALLOTTED_TIMEOUT", 10 * time.Second, 1},
		// refuser fails the first attempt at once, backup answers.
		{"4930990024", "ALLOTTED_TIMEOUT", 10 * time.Second, 2},
	} {
		a, legs := call(tt.x)
		talk := at(a, "Caller-Channel-Hangup-Time").Sub(at(a, "Caller-Channel-Answered-Time"))
		if a.Get("Hangup-Cause") != tt.cause || talk < tt.talk-500*time.Millisecond || len(legs) != tt.attempts {
			t.Errorf("%s: inbound %s after %v answered, attempts %v; want %s after %v, %d attempts", tt.x, a.Get("Hangup-Cause"), talk, summary(legs), tt.cause, tt.talk, tt.attempts)
		}
		if tt.attempts == 2 && len(legs) == 2 && (legs[0].Var("sip_gateway_name") != "refuser" || legs[0].Get("Hangup-Cause") != "NORMAL_TEMPORARY_FAILURE" || legs[1].Var("sip_gateway_name") != "backup") {
			t.Errorf("%s: attempts %v; want refuser NORMAL_TEMPORARY_FAILURE, then backup", tt.x, summary(legs))
		}
	}
}
