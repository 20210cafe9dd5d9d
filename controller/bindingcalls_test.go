package controller_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"callbridge"
	"callbridge/app"
	"callbridge/app/apptest"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/privacy"
)

// hookReceiver is an account's webhook endpoint: it checks every
// signature and keeps the bodies in arrival order.
type hookReceiver struct {
	t      *testing.T
	secret []byte
	mu     sync.Mutex
	hooks  []map[string]any
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if !callbridge.VerifyWebhook(h.secret, body, r.Header.Get(callbridge.SignatureHeader)) {
		h.t.Errorf("webhook with a bad signature: %s", body)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		h.t.Errorf("webhook body is not JSON: %s", body)
	}
	if m["type"] != r.Header.Get("X-Callbridge-Event") {
		h.t.Errorf("event header %q, body type %v", r.Header.Get("X-Callbridge-Event"), m["type"])
	}
	h.mu.Lock()
	h.hooks = append(h.hooks, m)
	h.mu.Unlock()
}

// got returns the webhooks of one call, in arrival order.
func (h *hookReceiver) got(call string) []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]any
	for _, m := range h.hooks {
		if m["call_id"] == call {
			out = append(out, m)
		}
	}
	return out
}

// callsScript answers A (4917011...) and B (4917022...) after 200 ms and
// keeps them up; C (4917033...) is busy.
const callsScript = `{"rules":[
	{"prefix":"4917011","ring_ms":200,"outcome":"answer","talk_ms":0},
	{"prefix":"4917022","ring_ms":200,"outcome":"answer","talk_ms":0},
	{"prefix":"4917033","ring_ms":100,"outcome":"busy"}]}`

// callsEnv is the fully wired controller on a simulated node: binding
// calls record under /recordings and report to a receiver through the
// webhook outbox and its deliverer.
type callsEnv struct {
	*privacyEnv
	account  string
	calls    *privacy.Calls
	webhooks *postgres.WebhookService
	recv     *hookReceiver
	hookURL  string
	cfg      app.Config
}

func newCallsEnv(t *testing.T) *callsEnv {
	t.Helper()
	env := &callsEnv{recv: &hookReceiver{t: t, secret: []byte("hook-secret")}}
	rs := httptest.NewServer(env.recv)
	t.Cleanup(rs.Close)
	env.hookURL = rs.URL + "/hooks"
	env.privacyEnv = newPrivacyEnvWith(t, callsScript, func(c *app.Config) {
		c.RecordDir = "/recordings"
		c.WebhookSecret = string(env.recv.secret)
		c.WebhookAllowPrivate = true // the receiver is an httptest server on loopback
		env.cfg = *c
	})
	acct, err := env.srv.Accounts.Authenticate(context.Background(), env.key)
	if err != nil {
		t.Fatal(err)
	}
	env.account = acct.ID
	env.calls = env.srv.Privacy.Calls.(*privacy.Calls)
	env.webhooks = postgres.NewWebhookService(env.db)
	return env
}

// bind creates an AXB binding of tA and tB on tX that records and reports
// to the receiver.
func (env *callsEnv) bind(t *testing.T) callbridge.Binding {
	t.Helper()
	if code := env.do(t, "POST", "/v1/numbers", map[string]any{"number": string(tX), "gateway": "carrier-1"}, nil); code != http.StatusCreated {
		t.Fatalf("create number: %d", code)
	}
	var b callbridge.Binding
	if code := env.do(t, "POST", "/v1/bindings", map[string]any{
		"mode": "AXB", "a": string(tA), "b": string(tB), "x": string(tX), "ttl": 3600,
		"record": true, "external_id": "order-42", "webhook_url": env.hookURL,
	}, &b); code != http.StatusCreated {
		t.Fatalf("create binding: %d %+v", code, b)
	}
	wait.For(t, "the index to hold the binding", func() bool {
		l := env.line(tX)
		return l != nil && len(l.Bindings) == 1
	})
	return b
}

// alive reports whether the simulator still has channel uuid.
func (env *callsEnv) alive(uuid string) bool {
	for _, ch := range env.fs.Channels() {
		if ch.UUID == uuid {
			return true
		}
	}
	return false
}

func TestBindingCallWebhooks(t *testing.T) {
	env := newCallsEnv(t)
	b := env.bind(t)

	// A second controller, wired the same way, follows the same node and
	// hears the same calls: the outbox still holds each event once, and
	// each is delivered once.
	cfg2 := env.cfg
	cfg2.Owner, cfg2.SpoolDir, cfg2.ReportDir = "test-2", t.TempDir(), t.TempDir()
	cfg2.ESL, cfg2.ESLPassword = []string{env.fs.Addr()}, env.fs.Password
	apptest.Run(t, env.db, cfg2, apptest.Options{})

	// A calls X, B answers, A hangs up.
	leg := env.call(t, tA, tX)
	if leg == nil {
		t.Fatal("the call was not bridged")
	}
	var inbound string
	for _, ch := range env.fs.Channels() {
		if ch.BridgedTo == leg.UUID {
			inbound = ch.UUID
		}
	}
	wait.For(t, "the answered webhook", func() bool { return len(env.recv.got(inbound)) >= 2 })
	env.fs.Jump(2 * time.Second)
	if err := env.fs.Hangup(inbound, "NORMAL_CLEARING"); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the ended webhook", func() bool { return len(env.recv.got(inbound)) >= 3 })

	// B moves to a number that is busy; A's next call fails.
	if code := env.do(t, "PATCH", "/v1/bindings/"+b.ID, map[string]any{"b": string(tC)}, nil); code != http.StatusOK {
		t.Fatalf("patch: %d", code)
	}
	wait.For(t, "the index to see the new b", func() bool {
		l := env.line(tX)
		return l != nil && len(l.Bindings) == 1 && l.Bindings[0].B == tC
	})
	busy, err := env.fs.Inbound(context.Background(), string(tA), string(tX))
	if err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the busy call's webhooks", func() bool { return len(env.recv.got(busy)) >= 2 })

	hooks := env.recv.got(inbound)
	wantTypes := []string{privacy.EventBindingCallStarted, privacy.EventBindingCallAnswered, privacy.EventBindingCallEnded}
	for i, h := range hooks {
		if i >= len(wantTypes) || h["type"] != wantTypes[i] {
			t.Errorf("webhook %d: got %v, want %v", i, h["type"], wantTypes)
			continue
		}
		if h["binding_id"] != b.ID || h["external_id"] != "order-42" || h["x"] != string(tX) ||
			h["direction"] != callbridge.DirectionAToB || h["from"] != string(tA) || h["event_id"] != inbound+":"+wantTypes[i] {
			t.Errorf("webhook %d: %v", i, h)
		}
	}
	end := hooks[len(hooks)-1]
	if end["cause"] != "NORMAL_CLEARING" || end["answered"] != true {
		t.Errorf("ended: got cause %v answered %v, want NORMAL_CLEARING, true", end["cause"], end["answered"])
	}
	if ms, _ := end["duration_ms"].(float64); ms < 1000 {
		t.Errorf("ended: duration_ms %v, want at least the 2 s of talk", end["duration_ms"])
	}
	if rec, _ := end["recording"].(map[string]any); rec == nil || rec["file"] != "/recordings/"+b.ID+"/"+inbound+".wav" {
		t.Errorf("ended: recording %v, want /recordings/%s/%s.wav", end["recording"], b.ID, inbound)
	}

	bh := env.recv.got(busy)
	if len(bh) != 2 || bh[0]["type"] != privacy.EventBindingCallStarted || bh[1]["type"] != privacy.EventBindingCallEnded {
		t.Fatalf("busy call webhooks: %v, want started, ended", bh)
	}
	if bh[1]["cause"] != "USER_BUSY" || bh[1]["answered"] != false || bh[1]["duration_ms"] != float64(0) || bh[1]["recording"] != nil {
		t.Errorf("busy call ended: %v", bh[1])
	}

	// Exactly once: the outbox holds five entries of the binding's key,
	// in order, every one delivered; the busy call's events were handled
	// after every event of the first call.
	wait.For(t, "every entry to be delivered", func() bool {
		ws, _, err := env.webhooks.Webhooks(context.Background(), env.account, callbridge.WebhookFilter{Key: "binding:" + b.ID})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			if w.Status != callbridge.WebhookDelivered {
				return false
			}
		}
		return len(ws) >= 5
	})
	ws, _, _ := env.webhooks.Webhooks(context.Background(), env.account, callbridge.WebhookFilter{Key: "binding:" + b.ID})
	var types []string
	for i := len(ws) - 1; i >= 0; i-- {
		types = append(types, ws[i].EventType)
	}
	want := []string{privacy.EventBindingCallStarted, privacy.EventBindingCallAnswered, privacy.EventBindingCallEnded, privacy.EventBindingCallStarted, privacy.EventBindingCallEnded}
	if len(types) != len(want) {
		t.Fatalf("outbox: got %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("outbox: got %v, want %v", types, want)
		}
	}
}

func TestBindingHangupCutsLiveCalls(t *testing.T) {
	env := newCallsEnv(t)
	b := env.bind(t)
	leg := env.call(t, tA, tX)
	if leg == nil {
		t.Fatal("the call was not bridged")
	}
	var inbound string
	for _, ch := range env.fs.Channels() {
		if ch.BridgedTo == leg.UUID {
			inbound = ch.UUID
		}
	}
	wait.For(t, "both legs to be known live", func() bool { return env.calls.LiveCalls(b.ID) == 2 })

	// Without hangup the binding changes and the call goes on.
	if code := env.do(t, "PATCH", "/v1/bindings/"+b.ID, map[string]any{"record": false}, nil); code != http.StatusOK {
		t.Fatalf("patch: %d", code)
	}
	if !env.alive(inbound) || !env.alive(leg.UUID) {
		t.Fatal("a change without hangup=true ended the call")
	}

	req, err := http.NewRequest("DELETE", env.api.URL+"/v1/bindings/"+b.ID+"?hangup=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+env.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Calls-Hung-Up") != "1" {
		t.Fatalf("delete: got %d with %q calls hung up, want 200 and 1", resp.StatusCode, resp.Header.Get("X-Calls-Hung-Up"))
	}
	wait.For(t, "both legs to end", func() bool { return !env.alive(inbound) && !env.alive(leg.UUID) })
	wait.For(t, "the ended webhook", func() bool { return len(env.recv.got(inbound)) == 3 })
	if end := env.recv.got(inbound)[2]; end["type"] != privacy.EventBindingCallEnded || end["cause"] != "NORMAL_CLEARING" {
		t.Errorf("ended: %v", end)
	}
	wait.For(t, "the legs to be forgotten", func() bool { return env.calls.LiveCalls(b.ID) == 0 })

	// A second cut finds nothing to kill.
	n, err := env.calls.KillBindingCalls(context.Background(), b.ID)
	if err != nil || n != 0 {
		t.Errorf("second kill: got %d, %v, want 0, nil", n, err)
	}
}
