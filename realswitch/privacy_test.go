//go:build realswitch

package realswitch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"callbridge"
	"callbridge/internal/wait"
	"callbridge/realswitch"
)

// hooks is a webhook receiver on loopback: it records every body POSTed
// to it.
type hooks struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []map[string]any
	more chan struct{}
}

func newHooks(t *testing.T) *hooks {
	h := &hooks{more: make(chan struct{}, 1)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.got = append(h.got, v)
		h.mu.Unlock()
		select {
		case h.more <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// wait returns the webhooks received for binding once pred holds for them.
func (h *hooks) wait(ctx context.Context, binding string, pred func([]map[string]any) bool) ([]map[string]any, error) {
	for {
		h.mu.Lock()
		var mine []map[string]any
		for _, v := range h.got {
			if v["binding_id"] == binding {
				mine = append(mine, v)
			}
		}
		h.mu.Unlock()
		if pred(mine) {
			return mine, nil
		}
		select {
		case <-h.more:
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return mine, ctx.Err()
		}
	}
}

// bind puts x in the account's pool and binds it.
func bind(ctx context.Context, t *testing.T, acct *realswitch.Client, x string, req map[string]any) callbridge.Binding {
	t.Helper()
	numbers := map[string]any{"numbers": []map[string]any{{"number": x, "gateway": "carrier"}}}
	if err := acct.Do(ctx, "POST", "/v1/numbers", numbers, http.StatusCreated, nil); err != nil {
		t.Fatal(err)
	}
	req["x"], req["ttl"] = x, 3600
	var b callbridge.Binding
	if err := acct.Do(ctx, "POST", "/v1/bindings", req, http.StatusCreated, &b); err != nil {
		t.Fatal(err)
	}
	if string(b.X) != realswitch.Digits(x) || b.Status != callbridge.StatusActive {
		t.Fatalf("binding %+v, want x %s active", b, x)
	}
	return b
}

// presented checks the INVITE the callee's carrier received for a binding
// call: X in From and in P-Asserted-Identity, and the caller's real number
// nowhere in it.
func presented(t *testing.T, who string, call realswitch.Call, x, caller string) {
	t.Helper()
	inv, ok := call.Invite()
	if !ok {
		t.Errorf("%s: the carrier got no INVITE", who)
		return
	}
	user := "sip:" + realswitch.Digits(x) + "@"
	t.Logf("%s: the callee's carrier got From: %s, P-Asserted-Identity: %s", who, inv.Header("From"), inv.Header("P-Asserted-Identity"))
	if from := inv.Header("From"); !strings.Contains(from, user) {
		t.Errorf("%s: From %q, want X %s", who, from, realswitch.Digits(x))
	}
	if pai := inv.Header("P-Asserted-Identity"); !strings.Contains(pai, user) {
		t.Errorf("%s: P-Asserted-Identity %q, want X %s", who, pai, realswitch.Digits(x))
	}
	if strings.Contains(inv.Text, realswitch.Digits(caller)) {
		t.Errorf("%s: the caller's number %s is in the INVITE the callee got:\n%s", who, realswitch.Digits(caller), inv.Text)
	}
}

// webhooksOf checks a binding's webhooks: started, answered and ended for
// every answered call, in that order per call, ended with its cause.
func webhooksOf(ctx context.Context, t *testing.T, h *hooks, b callbridge.Binding, calls int) {
	t.Helper()
	got, err := h.wait(ctx, b.ID, func(v []map[string]any) bool { return len(v) >= 3*calls })
	if err != nil {
		t.Errorf("binding %s: %d webhooks, want %d: %v", b.Mode, len(got), 3*calls, err)
		return
	}
	byCall := map[string][]string{}
	for _, v := range got {
		id, _ := v["call_id"].(string)
		typ, _ := v["type"].(string)
		byCall[id] = append(byCall[id], typ)
		if v["x"] != string(b.X) {
			t.Errorf("binding %s: webhook %s has x %v, want %s", b.Mode, typ, v["x"], b.X)
		}
		if typ == "binding.call.ended" && (v["answered"] != true || v["cause"] == "") {
			t.Errorf("binding %s: ended webhook %v, want answered with a cause", b.Mode, v)
		}
	}
	want := []string{"binding.call.started", "binding.call.answered", "binding.call.ended"}
	t.Logf("binding %s: webhooks by call: %v", b.Mode, byCall)
	if len(byCall) != calls {
		t.Errorf("binding %s: webhooks of %d calls, want %d: %v", b.Mode, len(byCall), calls, byCall)
	}
	for id, types := range byCall {
		if !slices.Equal(types, want) {
			t.Errorf("binding %s: call %s webhooks %v, want %v", b.Mode, id, types, want)
		}
	}
}

// bindingCDRs waits for the binding's CDRs, two legs per call, and checks
// what callbridge recorded of each call's leg to its callee: the callee's
// real number called, X presented, answered and billed.
func bindingCDRs(ctx context.Context, t *testing.T, acct *realswitch.Client, b callbridge.Binding, callees ...string) {
	t.Helper()
	var cdrs []*callbridge.CDR
	wait.ForState(t, fmt.Sprintf("the %d CDRs of binding %s", 2*len(callees), b.Mode), func() (bool, string) {
		var err error
		if cdrs, err = env.Admin.AccountCDRs(ctx, acct.AccountID, url.Values{"binding_id": {b.ID}}); err != nil {
			t.Fatal(err)
		}
		return len(cdrs) >= 2*len(callees), fmt.Sprintf("%d CDRs", len(cdrs))
	}, wait.Every(200*time.Millisecond))
	if len(cdrs) != 2*len(callees) {
		t.Errorf("binding %s: %d CDRs, want %d", b.Mode, len(cdrs), 2*len(callees))
	}
	for _, callee := range callees {
		found := false
		for _, c := range cdrs {
			if c.Direction != "outbound" || c.Callee != realswitch.Digits(callee) {
				continue
			}
			found = true
			t.Logf("binding %s: CDR of the leg to %s: presented %s, caller %s, %s q850 %d, bill %d ms", b.Mode, c.Callee, c.Presented, c.Caller, c.HangupCause, c.Q850, c.BillMS)
			if c.Presented != string(b.X) || c.BillMS < 1500 {
				t.Errorf("binding %s: the leg to %s presented %s and billed %d ms, want X %s and about 2 s", b.Mode, c.Callee, c.Presented, c.BillMS, b.X)
			}
		}
		if !found {
			t.Errorf("binding %s: no CDR of an outbound leg to %s", b.Mode, callee)
		}
	}
}

// TestBindingAXB: A and B reach each other through X both ways, each
// seeing only X (From and P-Asserted-Identity); a stranger calling X is
// refused with 603; the binding's webhooks report both calls.
func TestBindingAXB(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	acct, err := env.NewAccount(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	h := newHooks(t)
	x := realswitch.Number(510, "901")
	a, b := realswitch.Number(511, realswitch.Hold(2)), realswitch.Number(512, realswitch.Hold(2))
	binding := bind(ctx, t, acct, x, map[string]any{"mode": "AXB", "a": a, "b": b, "webhook_url": h.srv.URL})

	for _, c := range []struct{ who, from, to string }{{"A calls X", a, b}, {"B calls X", b, a}} {
		phone, err := realswitch.Dial(ctx, env.Switch.ExternalSIP, c.from, x, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if f, ok := phone.Final(); !ok || f.Status != 200 {
			t.Errorf("%s: the caller got %d (%v), want 200", c.who, f.Status, ok)
		}
		callee, err := env.Carrier.WaitCall(ctx, realswitch.Digits(c.to), realswitch.Call.Ended)
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := callee.Talk(); !ok || d < 1900*time.Millisecond {
			t.Errorf("%s: the callee talked %v (%v), want 2 s", c.who, d, ok)
		}
		presented(t, c.who, callee, x, c.from)
	}

	stranger, err := realswitch.Dial(ctx, env.Switch.ExternalSIP, realswitch.Number(513, "999"), x, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := stranger.Final(); !ok || f.Status != 603 {
		t.Errorf("a stranger calling X got %d (%v), want 603", f.Status, ok)
	}
	webhooksOf(ctx, t, h, binding, 2)
	bindingCDRs(ctx, t, acct, binding, b, a)
}

// TestBindingXB: anyone calling an XB number reaches B, who sees X, never
// the caller; the binding's webhooks report the call.
func TestBindingXB(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	acct, err := env.NewAccount(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	h := newHooks(t)
	x, b := realswitch.Number(520, "902"), realswitch.Number(521, realswitch.Hold(2))
	caller := realswitch.Number(522, "999")
	binding := bind(ctx, t, acct, x, map[string]any{"mode": "XB", "b": b, "webhook_url": h.srv.URL})

	phone, err := realswitch.Dial(ctx, env.Switch.ExternalSIP, caller, x, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := phone.Final(); !ok || f.Status != 200 {
		t.Errorf("the caller got %d (%v), want 200", f.Status, ok)
	}
	callee, err := env.Carrier.WaitCall(ctx, realswitch.Digits(b), realswitch.Call.Ended)
	if err != nil {
		t.Fatal(err)
	}
	presented(t, "a caller calls X", callee, x, caller)
	webhooksOf(ctx, t, h, binding, 1)
	bindingCDRs(ctx, t, acct, binding, b)
}
