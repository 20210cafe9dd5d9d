package controller_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"callbridge"
	"callbridge/postgres/pgtest"
)

// TestCallbackAPIInput refuses every malformed or hostile callback
// request with a 400 naming the field, and stores none of them.
func TestCallbackAPIInput(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	tn := env.newTenant("crm")
	tests := []struct {
		name, body, field string
	}{
		{"unknown field", `{"a":"4917011111","b":"4917022222","c":"1"}`, "c"},
		{"identical numbers", `{"a":"4917011111","b":"+49 170 11111"}`, "b"},
		{"missing a", `{"b":"4917022222"}`, "a"},
		{"ring timeout too short", `{"a":"4917011111","b":"4917022222","ring_timeout_a":1}`, "ring_timeout_a"},
		{"ring timeout too long", `{"a":"4917011111","b":"4917022222","ring_timeout_b":121}`, "ring_timeout_b"},
		{"max duration", `{"a":"4917011111","b":"4917022222","max_duration":0}`, "max_duration"},
		{"unknown prompt", `{"a":"4917011111","b":"4917022222","prompt":"welcome"}`, "prompt"},
		{"prompt path", `{"a":"4917011111","b":"4917022222","prompt":"../../etc/passwd"}`, "prompt"},
		{"webhook not http", `{"a":"4917011111","b":"4917022222","webhook_url":"file:///etc/passwd"}`, "webhook_url"},
		{"metadata not object", `{"a":"4917011111","b":"4917022222","metadata":[1]}`, "metadata"},
		{"timeout wrong type", `{"a":"4917011111","b":"4917022222","ring_timeout_a":"5"}`, "ring_timeout_a"},
		{"bad caller id", `{"a":"4917011111","b":"4917022222","caller_id_b":"anonymous"}`, "caller_id_b"},
	}
	hostile := []string{
		"4917011111 &park()", "4917011111}sofia/gateway/x/1", "${system(reboot)}", "4917011111\n\napi hupall",
		"4917011111,origination_uuid=x", "sip:4917011111@evil", "4917011111|4917022222", "4917011111^a",
		"٤٩١٧٠١١١١١", "4917011111\x00", "4917011111'", "4917011111\"", "4917011111:_:user/1000", "4917011111;x",
		"+4917011111@host", "4917011111%0a", "4917011111\\",
	}
	for _, h := range hostile {
		b, _ := json.Marshal(map[string]string{"a": h, "b": "4917022222"})
		tests = append(tests, struct{ name, body, field string }{"hostile " + h, string(b), "a"})
		b, _ = json.Marshal(map[string]string{"a": "4917022222", "b": h})
		tests = append(tests, struct{ name, body, field string }{"hostile b " + h, string(b), "b"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := env.call("POST", "/v1/callbacks", tn.key, tt.body)
			if _, field := a.errorCode(); a.status != http.StatusBadRequest || field != tt.field {
				t.Errorf("got %d %s, want 400 naming %q", a.status, a.body, tt.field)
			}
		})
	}
	var n int
	if err := pgtest.Get(context.Background(), env.db, &n, `SELECT count(*) FROM callbacks`); err != nil || n != 0 {
		t.Errorf("%d callbacks stored from bad input (%v)", n, err)
	}
}

// TestCallbackAPIIdempotencyAndQueue: a repeated Idempotency-Key answers
// the same callback (another body under it conflicts), a full queue
// answers 429 with Retry-After, and the list validates its query.
func TestCallbackAPIIdempotencyAndQueue(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	tn := env.newTenant("crm")
	post := func(body, key string) answer {
		t.Helper()
		r := request{method: "POST", path: "/v1/callbacks", auth: "Bearer " + tn.key, contentType: "application/json",
			body: strings.NewReader(body)}
		if key != "" {
			r.header = map[string]string{"Idempotency-Key": key}
		}
		return env.send(r)
	}
	body := `{"a":"4917011111","b":"4917022222","metadata":{"x":1,"y":2}}`
	first := post(body, "abc")
	if first.status != http.StatusAccepted {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	again := post(`{ "b":"4917022222", "a":"4917011111", "metadata":{"y":2,"x":1}}`, "abc")
	var c1, c2 callbridge.Callback
	json.Unmarshal(first.body, &c1)
	json.Unmarshal(again.body, &c2)
	if again.status != http.StatusAccepted || c1.ID != c2.ID {
		t.Fatalf("repeat: %d %s, want same id as %s", again.status, again.body, c1.ID)
	}
	if a := post(`{"a":"4917011111","b":"4917022223"}`, "abc"); a.status != http.StatusConflict {
		t.Errorf("other body: %d %s", a.status, a.body)
	}

	if _, err := env.db.Exec(`UPDATE accounts SET callback_queue_limit = 1 WHERE id = $1`, tn.id); err != nil {
		t.Fatal(err)
	}
	if a := post(body, ""); a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" {
		t.Errorf("queue full: %d %s %v", a.status, a.body, a.header)
	}

	a := env.call("GET", "/v1/callbacks?status=queued&limit=10", tn.key, nil)
	var list struct {
		Callbacks  []*callbridge.Callback
		NextCursor string `json:"next_cursor"`
	}
	if json.Unmarshal(a.body, &list); a.status != 200 || len(list.Callbacks) != 1 || list.Callbacks[0].ID != c1.ID {
		t.Errorf("list: %d %s", a.status, a.body)
	}
	for _, q := range []string{"status=nope", "limit=x", "limit=501", "since=yesterday", "cursor=zzz"} {
		if a := env.call("GET", "/v1/callbacks?"+q, tn.key, nil); a.status != http.StatusBadRequest {
			t.Errorf("GET ?%s: %d %s", q, a.status, a.body)
		}
	}
	if a := env.call("GET", "/v1/callbacks/"+strings.Repeat("f", 36), tn.key, nil); a.status != http.StatusNotFound {
		t.Errorf("malformed id: %d", a.status)
	}
}

// TestWebhookList lists a callback's webhooks by status: the queued
// callback's webhook is pending, none is dead, and an unknown status is
// refused. (Entries becoming dead are the deliverer's: webhook/.)
func TestWebhookList(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	tn := env.newTenant("crm")
	cb := env.mustCall(http.StatusAccepted, "POST", "/v1/callbacks", tn.key,
		`{"a":"4917011111","b":"4917022222","webhook_url":"https://crm.example/hook"}`).json(t)
	var list struct{ Webhooks []*callbridge.Webhook }
	for _, tc := range []struct {
		query string
		n     int
	}{{"status=pending", 1}, {"status=dead", 0}, {"callback_id=" + cb["id"].(string), 1}} {
		a := env.mustCall(http.StatusOK, "GET", "/v1/webhooks?"+tc.query, tn.key, nil)
		list.Webhooks = nil
		if err := json.Unmarshal(a.body, &list); err != nil || len(list.Webhooks) != tc.n {
			t.Errorf("GET /v1/webhooks?%s: got %s, want %d webhooks", tc.query, a.body, tc.n)
		}
	}
	if a := env.call("GET", "/v1/webhooks?status=nope", tn.key, nil); a.status != http.StatusBadRequest {
		t.Errorf("GET /v1/webhooks?status=nope: got %d %s, want 400", a.status, a.body)
	}
}
