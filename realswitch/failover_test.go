//go:build realswitch

package realswitch_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"callbridge"
	"callbridge/dialplan"
	"callbridge/esl/freeswitch"
	"callbridge/realswitch"
)

// carrierCauses are the causes on which a binding call fails over.
var carrierCauses = []string{"NORMAL_TEMPORARY_FAILURE", "GATEWAY_DOWN", "NO_ROUTE_DESTINATION", "RECOVERY_ON_TIMER_EXPIRE", "DESTINATION_OUT_OF_ORDER"}

// failoverSwitch is a FreeSWITCH with two carriers: "carrier", whose sipp
// refuses every INVITE with 503, and "backup", whose sipp answers as the
// number says. Its dialplan is dialplan.Render's, for an XB binding from
// the number called to the number the test gives, through gateways.
type failoverSwitch struct {
	sw               *realswitch.Switch
	refusing, backup *realswitch.Sipp

	mu       sync.Mutex
	target   map[string]callbridge.Number // X -> B
	gateways map[string][]string          // X -> gateways
	causes   map[string][]string          // X -> failover causes, carrierCauses when unset
	inbound  map[string]string            // X -> the inbound leg's uuid
}

// startFailoverSwitch starts it, with further gateways if any.
func startFailoverSwitch(t *testing.T, more ...realswitch.Gateway) *failoverSwitch {
	t.Helper()
	f := &failoverSwitch{target: map[string]callbridge.Number{}, gateways: map[string][]string{}, causes: map[string][]string{}, inbound: map[string]string{}}
	var err error
	if f.refusing, err = realswitch.StartCarrierWith(realswitch.CarrierConfig{Refuse: 503}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.refusing.Stop)
	if f.backup, err = realswitch.StartCarrier(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.backup.Stop)
	rules := callbridge.NumberRules{CountryCode: "49", TrunkPrefix: "0"}
	dp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req, err := dialplan.ParseRequest(r.PostForm, rules)
		if err != nil {
			w.Write(dialplan.NotFound())
			return
		}
		x := string(req.Destination)
		f.mu.Lock()
		target, gws, causes := f.target[x], f.gateways[x], f.causes[x]
		f.inbound[x] = req.UniqueID
		f.mu.Unlock()
		if causes == nil {
			causes = carrierCauses
		}
		now := time.Now()
		b := &callbridge.Binding{ID: "0f1e2d3c-4b5a-4697-8877-665544332211", AccountID: "acct-1", Mode: callbridge.ModeXB,
			X: req.Destination, B: target, Status: callbridge.StatusActive, ExpiresAt: now.Add(time.Hour), CallerDisplay: callbridge.DisplayX}
		line := &dialplan.Line{X: req.Destination, AccountID: "acct-1", Gateway: gws[0], Enabled: true, Bindings: []*callbridge.Binding{b}}
		d := dialplan.Decide(req, line, now).Failover(gws, causes)
		doc, err := dialplan.Render(nil, req, d, &dialplan.Options{RingTimeout: 10 * time.Second})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		w.Write(doc)
	}))
	t.Cleanup(dp.Close)
	f.sw, err = realswitch.StartSwitch(realswitch.SwitchConfig{
		DialplanURL: dp.URL, DialplanCredentials: "test:test",
		CarrierProxy: f.refusing.Addr,
		Gateways:     append([]realswitch.Gateway{{Name: "backup", Proxy: f.backup.Addr}}, more...),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(f.sw.LogTail(6000))
		}
		f.sw.Stop()
	})
	return f
}

// call dials x from a phone on the inside network, bridged to target
// through gateways, holding 1 s once answered; it returns what the phone
// saw and FreeSWITCH's CHANNEL_HANGUP_COMPLETE of the inbound leg.
func (f *failoverSwitch) call(t *testing.T, ctx context.Context, x string, target callbridge.Number, gateways ...string) (realswitch.Call, freeswitch.Event) {
	t.Helper()
	f.mu.Lock()
	f.target[x], f.gateways[x] = target, gateways
	f.mu.Unlock()
	phone, err := realswitch.Dial(ctx, f.sw.InternalSIP, "4930555000", x, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	a := f.inbound[x]
	f.mu.Unlock()
	if a == "" {
		t.Fatalf("FreeSWITCH never asked for the dialplan of %s", x)
	}
	hc, err := f.sw.Hangup(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return phone, hc
}

// attempts returns the CHANNEL_HANGUP_COMPLETE of every outbound leg the
// inbound leg's bridge created, in order.
func (f *failoverSwitch) attempts(t *testing.T, ctx context.Context, a freeswitch.Event) []freeswitch.Event {
	t.Helper()
	legs, err := f.sw.Attempts(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if len(legs) == 0 {
		t.Fatalf("no attempts in originate_causes %q", a.Var("originate_causes"))
	}
	return legs
}

// checkBindingFailover proves dialplan.Failover on a real FreeSWITCH
// 1.10.12 with two sipp carriers (TestCarriers runs it): the first
// carrier's 503 makes the call go out through the second, which connects
// it; a busy callee ends the call with USER_BUSY at once, never trying the
// other carrier; when every carrier refuses, the caller gets the last
// refusal. Every attempt keeps its CDR record.
func checkBindingFailover(t *testing.T, ctx context.Context, f *failoverSwitch) {
	// kept: leg uuid -> the gateway its CDR record must name; attemptOf:
	// leg uuid -> its attempt's number, as its record must hold it.
	kept, attemptOf := map[string]string{}, map[string]string{}

	t.Run("503 fails over", func(t *testing.T) {
		const x = "4930990001"
		target := callbridge.Number(realswitch.Digits(realswitch.Number(160, realswitch.Answer)))
		phone, a := f.call(t, ctx, x, target, "carrier", "backup")
		if fin, ok := phone.Final(); !ok || fin.Status != 200 {
			t.Errorf("the phone got %v, want 200: the call connected through backup", fin.Status)
		}
		refused, err := f.refusing.WaitCall(ctx, string(target), realswitch.Call.Ended)
		if err != nil {
			t.Fatal(err)
		}
		if fin, _ := refused.Final(); fin.Status != 503 {
			t.Errorf("carrier answered %d, want 503", fin.Status)
		}
		answered, err := f.backup.WaitCall(ctx, string(target), realswitch.Call.Ended)
		if err != nil {
			t.Fatal(err)
		}
		if fin, _ := answered.Final(); fin.Status != 200 {
			t.Errorf("backup answered %d, want 200", fin.Status)
		}
		if inv, _ := answered.Invite(); inv.At.Before(refused.Messages[len(refused.Messages)-1].At.Add(-time.Second)) {
			t.Errorf("backup was dialled before carrier refused")
		}
		legs := f.attempts(t, ctx, a)
		if len(legs) != 2 {
			t.Fatalf("%d attempts, want 2", len(legs))
		}
		first, second := legs[0], legs[1]
		kept[first.Get("Unique-ID")], kept[second.Get("Unique-ID")] = "carrier", "backup"
		attemptOf[first.Get("Unique-ID")], attemptOf[second.Get("Unique-ID")] = "1", "2"
		// Each dial string's own variables reached its leg only.
		if first.Var(callbridge.VarGateway) != "carrier" || first.Var(callbridge.VarAttempt) != "1" ||
			second.Var(callbridge.VarGateway) != "backup" || second.Var(callbridge.VarAttempt) != "2" {
			t.Errorf("attempt variables: first %q/%q, second %q/%q; want carrier/1, backup/2",
				first.Var(callbridge.VarGateway), first.Var(callbridge.VarAttempt), second.Var(callbridge.VarGateway), second.Var(callbridge.VarAttempt))
		}
		t.Logf("attempt 1: gateway %s cause %s q850 %s sip_term_status %s proto %s; attempt 2: gateway %s cause %s billmsec %s; inbound: cause %s originate_causes %s bridge_uuid %s last_bridge_hangup_cause %s",
			first.Var("sip_gateway_name"), first.Get("Hangup-Cause"), first.Var("hangup_cause_q850"), first.Var("sip_term_status"), first.Var("proto_specific_hangup_cause"),
			second.Var("sip_gateway_name"), second.Get("Hangup-Cause"), second.Var("billmsec"),
			a.Get("Hangup-Cause"), a.Var("originate_causes"), a.Var("bridge_uuid"), a.Var("last_bridge_hangup_cause"))
		if first.Var("sip_gateway_name") != "carrier" || first.Get("Hangup-Cause") != "NORMAL_TEMPORARY_FAILURE" || first.Var("hangup_cause_q850") != "41" ||
			first.Var("sip_term_status") != "503" || first.Var("proto_specific_hangup_cause") != "sip:503" || first.Var("billmsec") != "0" {
			t.Errorf("first attempt: gateway %q cause %q q850 %q sip %q %q billmsec %q; want carrier NORMAL_TEMPORARY_FAILURE 41 503 sip:503 0",
				first.Var("sip_gateway_name"), first.Get("Hangup-Cause"), first.Var("hangup_cause_q850"), first.Var("sip_term_status"), first.Var("proto_specific_hangup_cause"), first.Var("billmsec"))
		}
		if second.Var("sip_gateway_name") != "backup" || second.Get("Hangup-Cause") != "NORMAL_CLEARING" || second.Var("endpoint_disposition") != "ANSWER" {
			t.Errorf("second attempt: gateway %q cause %q disposition %q; want backup NORMAL_CLEARING ANSWER", second.Var("sip_gateway_name"), second.Get("Hangup-Cause"), second.Var("endpoint_disposition"))
		}
		// Which gateway connected: the inbound leg's bridge_uuid is the
		// connected leg, whose sip_gateway_name names it.
		if a.Var("bridge_uuid") != second.Get("Unique-ID") || a.Var("originate_disposition") != "SUCCESS" || a.Get("Hangup-Cause") != "NORMAL_CLEARING" {
			t.Errorf("inbound leg: bridge_uuid %q (want %s), originate_disposition %q, cause %q", a.Var("bridge_uuid"), second.Get("Unique-ID"), a.Var("originate_disposition"), a.Get("Hangup-Cause"))
		}
		if want := "ARRAY::" + first.Get("Unique-ID") + ";NORMAL_TEMPORARY_FAILURE|:" + second.Get("Unique-ID") + ";NONE"; a.Var("originate_causes") != want {
			t.Errorf("originate_causes %q, want %q", a.Var("originate_causes"), want)
		}
	})

	t.Run("busy does not fail over", func(t *testing.T) {
		const x = "4930990002"
		target := callbridge.Number(realswitch.Digits(realswitch.Number(161, realswitch.Busy)))
		phone, a := f.call(t, ctx, x, target, "backup", "carrier")
		if fin, ok := phone.Final(); !ok || fin.Status != 486 {
			t.Errorf("the phone got %v, want 486", fin.Status)
		}
		if a.Get("Hangup-Cause") != "USER_BUSY" {
			t.Errorf("inbound leg ended %q, want USER_BUSY", a.Get("Hangup-Cause"))
		}
		legs := f.attempts(t, ctx, a)
		if len(legs) != 1 || legs[0].Var("sip_gateway_name") != "backup" || legs[0].Get("Hangup-Cause") != "USER_BUSY" {
			t.Errorf("attempts %d, first through %q ending %q; want 1 through backup, USER_BUSY", len(legs), legs[0].Var("sip_gateway_name"), legs[0].Get("Hangup-Cause"))
		}
		kept[legs[0].Get("Unique-ID")], attemptOf[legs[0].Get("Unique-ID")] = "backup", "1"
		calls, err := f.refusing.Calls()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range calls {
			if c.Number == string(target) {
				t.Errorf("carrier was dialled after the callee was busy: %+v", c.Messages)
			}
		}
	})

	t.Run("every carrier refuses", func(t *testing.T) {
		const x = "4930990003"
		target := callbridge.Number(realswitch.Digits(realswitch.Number(162, realswitch.Answer)))
		phone, a := f.call(t, ctx, x, target, "carrier")
		if fin, ok := phone.Final(); !ok || fin.Status != 503 {
			t.Errorf("the phone got %v, want 503", fin.Status)
		}
		if a.Get("Hangup-Cause") != "NORMAL_TEMPORARY_FAILURE" {
			t.Errorf("inbound leg ended %q, want the last attempt's NORMAL_TEMPORARY_FAILURE", a.Get("Hangup-Cause"))
		}
	})

	// Every attempt, failed or not, keeps its CDR record (the bridge's
	// execute_on_originate sets the hook on each leg), naming its gateway
	// and, as signal_bond, the inbound leg.
	out, err := f.sw.API(ctx, "hash_dump db callbridge_cdr")
	if err != nil {
		t.Fatal(err)
	}
	records := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "D/callbridge_cdr_"), "/"); ok {
			records[k] = v
		}
	}
	for id, gw := range kept {
		f := strings.Split(records[id], ";")
		if len(f) != 20 || f[0] != "v2" || f[16] != gw || f[18] == "" || f[19] != attemptOf[id] {
			t.Errorf("leg %s (through %s): record %q, want one naming %s and the inbound leg", id, gw, records[id], gw)
		}
	}
}
