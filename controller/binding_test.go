package controller_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/app"
	"callbridge/dialplan"
	"callbridge/esl/esltest"
	"callbridge/internal/wait"
	"callbridge/postgres"
)

// privacyScript answers every mobile (49 17...) after 200 ms and keeps
// it up.
const privacyScript = `{"rules":[{"prefix":"4917","ring_ms":200,"outcome":"answer","talk_ms":0}]}`

// privacyEnv is the fully wired controller with an account, and a
// simulated FreeSWITCH node (10 times real time) that asks the
// controller's dialplan endpoint for every inbound call.
type privacyEnv struct {
	*fullEnv
	key string
}

func newPrivacyEnv(t *testing.T) *privacyEnv {
	t.Helper()
	return newPrivacyEnvWith(t, privacyScript, nil)
}

// newPrivacyEnvWith is newPrivacyEnv with the far ends' script, when
// given an adjusted configuration, and the node's gateways.
func newPrivacyEnvWith(t *testing.T, script string, configure func(*app.Config), gateways ...esltest.Gateway) *privacyEnv {
	t.Helper()
	fs := esltest.NewUnstartedServer()
	sc, err := esltest.ParseScript([]byte(script))
	if err != nil {
		t.Fatal(err)
	}
	fs.Script, fs.Speed = sc, 10
	fs.Gateways = gateways
	env := &privacyEnv{fullEnv: newEnv(t, envOptions{fs: fs, configure: configure})}
	env.key, err = postgres.NewAccountService(env.db).CreateAccount(context.Background(), &callbridge.Account{Name: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// line is what the controller's binding index holds for x.
func (env *privacyEnv) line(x callbridge.Number) *dialplan.Line {
	l, err := env.srv.Privacy.Lines.Line(context.Background(), x)
	if err != nil {
		env.t.Fatal(err)
	}
	return l
}

// do calls the API with the account's key and decodes the answer into out.
func (env *privacyEnv) do(t *testing.T, method, path string, in, out any) int {
	t.Helper()
	r := request{method: method, path: path, auth: "Bearer " + env.key}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		r.body, r.contentType = bytes.NewReader(b), "application/json"
	}
	a := env.send(r)
	if out != nil && len(a.body) > 0 {
		if err := json.Unmarshal(a.body, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, a.status, a.body, err)
		}
	}
	return a.status
}

// call places an inbound call from caller to x and returns the B leg the
// dialplan bridged it to, or nil if the call ended without one.
func (env *privacyEnv) call(t *testing.T, caller, x callbridge.Number) *esltest.ChannelInfo {
	t.Helper()
	id, err := env.fs.Inbound(context.Background(), string(caller), string(x))
	if err != nil {
		t.Fatal(err)
	}
	var leg *esltest.ChannelInfo
	wait.For(t, "the call to be bridged or to end", func() bool {
		alive := false
		for _, ch := range env.fs.Channels() {
			if ch.UUID == id {
				alive = true
				if ch.BridgedTo == "" {
					continue
				}
				for _, o := range env.fs.Channels() {
					if o.UUID == ch.BridgedTo {
						leg = &o
						return true
					}
				}
			}
		}
		return !alive
	})
	return leg
}

func TestPrivacyNumbersEndToEnd(t *testing.T) {
	env := newPrivacyEnv(t)
	const x2 = callbridge.Number("4930100200")
	var nums struct{ Numbers []callbridge.VirtualNumber }
	if code := env.do(t, "POST", "/v1/numbers", map[string]any{"numbers": []map[string]any{
		{"number": "+" + string(tX), "gateway": "carrier-1", "area": "berlin"},
		{"number": string(x2), "gateway": "carrier-2", "area": "hamburg"},
	}}, &nums); code != http.StatusCreated || len(nums.Numbers) != 2 {
		t.Fatalf("create numbers: %d %+v", code, nums)
	}

	var axb callbridge.Binding
	if code := env.do(t, "POST", "/v1/bindings", map[string]any{
		"mode": "AXB", "a": "+" + string(tA), "b": string(tB), "area": "berlin", "ttl": 3600, "external_id": "order-1",
	}, &axb); code != http.StatusCreated || axb.X != tX || axb.Status != callbridge.StatusActive {
		t.Fatalf("create AXB: %d %+v", code, axb)
	}
	var xb callbridge.Binding
	if code := env.do(t, "POST", "/v1/bindings", map[string]any{
		"mode": "XB", "b": string(tB), "x": string(x2), "expires_at": time.Now().Add(time.Hour),
	}, &xb); code != http.StatusCreated {
		t.Fatalf("create XB: %d %+v", code, xb)
	}
	// This controller's index holds a binding as soon as the API answered
	// 201, without waiting for NOTIFY: a call placed right away is routed.
	l1, l2 := env.line(tX), env.line(x2)
	if l1 == nil || len(l1.Bindings) != 1 || l2 == nil || len(l2.Bindings) != 1 {
		t.Fatalf("index right after 201: %+v, %+v; want one binding on each X", l1, l2)
	}

	tests := []struct {
		name      string
		caller, x callbridge.Number
		target    callbridge.Number // "" for a refusal
		present   callbridge.Number
		gateway   string
		direction string
		binding   string
	}{
		{"axb a to b", tA, tX, tB, tX, "carrier-1", callbridge.DirectionAToB, axb.ID},
		{"axb b to a", tB, tX, tA, tX, "carrier-1", callbridge.DirectionBToA, axb.ID},
		{"axb stranger refused", tC, tX, "", "", "", "", ""},
		{"xb anyone to b", tC, x2, tB, x2, "carrier-2", callbridge.DirectionAnyToB, xb.ID},
		{"unknown x refused", tA, "4930100999", "", "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leg := env.call(t, tt.caller, tt.x)
			if tt.target == "" {
				if leg != nil {
					t.Fatalf("got a bridge to %s, want a refusal", leg.Destination)
				}
				return
			}
			if leg == nil {
				t.Fatal("call ended without a bridge")
			}
			if leg.Destination != string(tt.target) || leg.CallerID != string(tt.present) {
				t.Errorf("got %s seeing %s, want %s seeing %s", leg.Destination, leg.CallerID, tt.target, tt.present)
			}
			if want := "sofia/gateway/" + tt.gateway + "/" + string(tt.target); leg.Name != want && leg.Variables["channel_name"] != want {
				t.Errorf("b leg name %q, channel_name %q: want the route through %s", leg.Name, leg.Variables["channel_name"], want)
			}
			v := leg.Variables
			if v[callbridge.VarBindingID] != tt.binding || v[callbridge.VarDirection] != tt.direction || v[callbridge.VarX] != string(tt.x) || v[callbridge.VarAccount] == "" {
				t.Errorf("b leg variables %v, want binding %s direction %s x %s", v, tt.binding, tt.direction, tt.x)
			}
		})
	}

	// Rebinding while a call is up: the call goes on, new calls follow the
	// new binding.
	up := env.call(t, tA, tX)
	if up == nil || up.Destination != string(tB) {
		t.Fatalf("call before rebinding: %+v", up)
	}
	var moved callbridge.Binding
	if code := env.do(t, "PATCH", "/v1/bindings/"+axb.ID, map[string]any{"b": string(tC)}, &moved); code != http.StatusOK || moved.B != tC {
		t.Fatalf("patch: %d %+v", code, moved)
	}
	wait.For(t, "the index to see the new b", func() bool {
		l := env.line(tX)
		return l != nil && len(l.Bindings) == 1 && l.Bindings[0].B == tC
	})
	stillUp := false
	for _, ch := range env.fs.Channels() {
		if ch.UUID == up.UUID && ch.BridgedTo != "" {
			stillUp = true
		}
	}
	if !stillUp {
		t.Error("the call in progress ended when the binding changed")
	}
	if leg := env.call(t, tA, tX); leg == nil || leg.Destination != string(tC) {
		t.Errorf("call after rebinding: got %+v, want a bridge to %s", leg, tC)
	}
	if leg := env.call(t, tB, tX); leg != nil {
		t.Errorf("old b still reaches the binding: bridged to %s", leg.Destination)
	}

	// Unbind with hangup=true: the binding's calls are cut, routing stops.
	var gone callbridge.Binding
	if code := env.do(t, "DELETE", "/v1/bindings/"+axb.ID+"?hangup=true", nil, &gone); code != http.StatusOK || gone.Status != callbridge.StatusUnbound {
		t.Fatalf("delete: %d %+v", code, gone)
	}
	bindingCalls := func(id string) int {
		n := 0
		for _, ch := range env.fs.Channels() {
			if ch.Variables[callbridge.VarBindingID] == id {
				n++
			}
		}
		return n
	}
	wait.ForState(t, "every call of the unbound binding to end", func() (bool, string) {
		n := bindingCalls(axb.ID)
		return n == 0, fmt.Sprintf("%d channels of it up", n)
	})
	if bindingCalls(xb.ID) == 0 {
		t.Error("hangup=true on one binding cut the calls of another")
	}
	wait.For(t, "the index to drop the binding", func() bool {
		l := env.line(tX)
		return l != nil && len(l.Bindings) == 0
	})
	if leg := env.call(t, tA, tX); leg != nil {
		t.Errorf("unbound binding still routes to %s", leg.Destination)
	}
	var evs struct{ Events []callbridge.BindingEvent }
	env.do(t, "GET", "/v1/bindings/"+axb.ID+"/events", nil, &evs)
	var got []string
	for _, e := range evs.Events {
		got = append(got, string(e.To)+":"+e.Detail)
	}
	if want := "binding:created active:created active:updated: b unbinding:unbind unbound:unbind"; strings.Join(got, " ") != want {
		t.Errorf("got events %q, want %q", got, want)
	}
}

func TestBindingsAPIErrors(t *testing.T) {
	env := newPrivacyEnv(t)
	env.do(t, "POST", "/v1/numbers", map[string]any{"number": string(tX), "gateway": "carrier-1"}, nil)
	tests := []struct {
		name  string
		body  map[string]any
		code  int
		field string
		ecode string
	}{
		{"no expiry", map[string]any{"mode": "XB", "b": string(tB)}, 400, "expires_at", "invalid"},
		{"ttl too short", map[string]any{"mode": "XB", "b": string(tB), "ttl": 10}, 400, "ttl", "invalid"},
		{"both expiry forms", map[string]any{"mode": "XB", "b": string(tB), "ttl": 100, "expires_at": time.Now().Add(time.Hour)}, 400, "ttl", "invalid"},
		{"bad mode", map[string]any{"mode": "AB", "b": string(tB), "ttl": 100}, 400, "mode", "invalid"},
		{"b not a number", map[string]any{"mode": "XB", "b": "sip:evil", "ttl": 100}, 400, "b", "invalid"},
		{"axb without a", map[string]any{"mode": "AXB", "b": string(tB), "ttl": 100}, 400, "a", "invalid"},
		{"unknown field", map[string]any{"mode": "XB", "b": string(tB), "ttl": 100, "color": "red"}, 400, "color", "invalid"},
		{"x of no pool", map[string]any{"mode": "XB", "b": string(tB), "ttl": 100, "x": "4930999999"}, 404, "", "not_found"},
		{"ok", map[string]any{"mode": "XB", "b": string(tB), "ttl": 100}, 201, "", ""},
		{"pool exhausted", map[string]any{"mode": "XB", "b": string(tC), "ttl": 100}, 409, "", "no_number_available"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out struct {
				Error struct{ Code, Field string }
			}
			if code := env.do(t, "POST", "/v1/bindings", tt.body, &out); code != tt.code || out.Error.Field != tt.field || out.Error.Code != tt.ecode {
				t.Errorf("got %d %+v, want %d %s %s", code, out.Error, tt.code, tt.ecode, tt.field)
			}
		})
	}
}
