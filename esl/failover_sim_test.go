package esl_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"callbridge"
	"callbridge/dialplan"
	"callbridge/esl/esltest"
	"callbridge/esl/freeswitch"
)

// TestSimulatorBindingFailover runs realswitch's TestCarriers (checkBindingFailover) on the
// simulator: dialplan.Failover's sequential bridge goes on from a gateway
// whose carrier refuses (NORMAL_TEMPORARY_FAILURE) to the next, stops at
// a busy callee, and ends with the last attempt's cause when every
// carrier refuses; each attempt is a leg naming its gateway.
func TestSimulatorBindingFailover(t *testing.T) {
	causes := []string{"NORMAL_TEMPORARY_FAILURE", "GATEWAY_DOWN", "NO_ROUTE_DESTINATION", "RECOVERY_ON_TIMER_EXPIRE", "DESTINATION_OUT_OF_ORDER"}
	route := map[string][]string{ // X -> gateways
		"4930990001": {"carrier", "backup"},
		"4930990002": {"backup", "carrier"},
		"4930990003": {"carrier"},
	}
	target := map[string]callbridge.Number{"4930990001": "49300160200", "4930990002": "49300161486", "4930990003": "49300162200"}
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
		line := &dialplan.Line{X: req.Destination, AccountID: "acct-1", Gateway: route[x][0], Enabled: true, Bindings: []*callbridge.Binding{b}}
		doc, err := dialplan.Render(nil, req, dialplan.Decide(req, line, now).Failover(route[x], causes), &dialplan.Options{RingTimeout: 10 * time.Second})
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
	srv.Gateways = []esltest.Gateway{{Name: "carrier", Refuse: true}, {Name: "backup"}}
	srv.Script = &esltest.Script{Rules: []esltest.Rule{
		{Prefix: "49300160", RingMS: 100, Outcome: esltest.OutcomeAnswer, TalkMS: 1000},
		{Prefix: "49300161", RingMS: 100, Outcome: esltest.OutcomeBusy},
		{Prefix: "49300162", RingMS: 100, Outcome: esltest.OutcomeAnswer, TalkMS: 1000},
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

	a, legs := call("4930990001")
	if a.Get("Hangup-Cause") != "NORMAL_CLEARING" || len(legs) != 2 ||
		legs[0].Var("sip_gateway_name") != "carrier" || legs[0].Get("Hangup-Cause") != "NORMAL_TEMPORARY_FAILURE" ||
		legs[1].Var("sip_gateway_name") != "backup" || legs[1].Get("Hangup-Cause") != "NORMAL_CLEARING" {
		t.Errorf("503 then answer: inbound %s, legs %v", a.Get("Hangup-Cause"), summary(legs))
	}
	// The inbound leg lists the legs its bridge tried, as FreeSWITCH
	// 1.10.12's originate_causes does (realswitch TestCarriers), and each
	// leg carries its own dial string's variables: its gateway and
	// attempt.
	if len(legs) == 2 {
		want := "ARRAY::" + legs[0].Get("Unique-ID") + ";NORMAL_TEMPORARY_FAILURE|:" + legs[1].Get("Unique-ID") + ";NONE"
		if got := a.Var("originate_causes"); got != want {
			t.Errorf("originate_causes %q, want %q", got, want)
		}
		if tried := freeswitch.ParseOriginateCauses(a.Var("originate_causes")); len(tried) != 2 || tried[0].UUID != legs[0].Get("Unique-ID") || tried[1].Cause != "NONE" {
			t.Errorf("ParseOriginateCauses: %+v", tried)
		}
		for i, gw := range []string{"carrier", "backup"} {
			if legs[i].Var(callbridge.VarGateway) != gw || legs[i].Var(callbridge.VarAttempt) != string(rune('1'+i)) {
				t.Errorf("leg %d: %s=%q %s=%q, want %s and %d", i, callbridge.VarGateway, legs[i].Var(callbridge.VarGateway),
					callbridge.VarAttempt, legs[i].Var(callbridge.VarAttempt), gw, i+1)
			}
		}
	}
	// The refused leg says what the carrier answered, as FreeSWITCH's
	// does (sip_term_status, proto_specific_hangup_cause).
	if len(legs) > 0 && (legs[0].Var("sip_term_status") != "503" || legs[0].Var("proto_specific_hangup_cause") != "sip:503" || legs[0].Var("sip_term_cause") != "41") {
		t.Errorf("refused leg: sip_term_status %q proto %q term cause %q, want 503 sip:503 41",
			legs[0].Var("sip_term_status"), legs[0].Var("proto_specific_hangup_cause"), legs[0].Var("sip_term_cause"))
	}
	a, legs = call("4930990002")
	if len(legs) == 1 && a.Var("originate_causes") != legs[0].Get("Unique-ID")+";USER_BUSY" {
		t.Errorf("busy: originate_causes %q, want the one leg's USER_BUSY", a.Var("originate_causes"))
	}
	if a.Get("Hangup-Cause") != "USER_BUSY" || len(legs) != 1 || legs[0].Var("sip_gateway_name") != "backup" || legs[0].Get("Hangup-Cause") != "USER_BUSY" {
		t.Errorf("busy: inbound %s, legs %v; want USER_BUSY through backup only", a.Get("Hangup-Cause"), summary(legs))
	}
	if len(legs) > 0 && (legs[0].Var("sip_term_status") != "486" || legs[0].Var("sip_invite_failure_phrase") != "Busy Here") {
		t.Errorf("busy leg: sip_term_status %q phrase %q, want 486 Busy Here", legs[0].Var("sip_term_status"), legs[0].Var("sip_invite_failure_phrase"))
	}
	a, legs = call("4930990003")
	if a.Get("Hangup-Cause") != "NORMAL_TEMPORARY_FAILURE" || len(legs) != 1 {
		t.Errorf("every carrier refuses: inbound %s, legs %v", a.Get("Hangup-Cause"), summary(legs))
	}
}

func summary(legs []freeswitch.Event) []string {
	var out []string
	for _, e := range legs {
		out = append(out, e.Var("sip_gateway_name")+":"+e.Get("Hangup-Cause"))
	}
	return out
}
