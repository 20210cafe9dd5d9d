package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"callbridge/esl/esltest"
	"callbridge/internal/wait"
	"callbridge/postgres/pgtest"
)

// lockedBuffer is an io.Writer safe for the server goroutine and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServe runs `callbridge serve` through run() on 127.0.0.1:0 and
// returns its base URL once it listens; the server stops when the test ends
// and must return nil.
func startServe(t *testing.T, env map[string]string) string {
	t.Helper()
	base, _ := startServeLogged(t, env)
	return base
}

// startServeLogged is startServe that also returns what serve writes to
// stderr: its log.
func startServeLogged(t *testing.T, env map[string]string) (string, *lockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	stderr := &lockedBuffer{}
	getenv := func(k string) string { return env[k] }
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--http-addr", "127.0.0.1:0"}, getenv, pw, stderr)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("serve did not stop within 30s of cancellation")
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "callbridge listening on "); ok {
				lines <- addr
			}
		}
	}()
	select {
	case addr := <-lines:
		return "http://" + addr, stderr
	case err := <-done:
		t.Fatalf("serve exited early: %v\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not listen within 30s\n%s", stderr.String())
	}
	return "", nil
}

func do(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

func TestServeEndToEnd(t *testing.T) {
	fs := esltest.NewServer()
	t.Cleanup(fs.Close)
	env := map[string]string{
		"CALLBRIDGE_DATABASE_URL": pgtest.URL(t),
		"CALLBRIDGE_ADMIN_TOKEN":  "admin-secret",
		"CALLBRIDGE_ESL":          fs.Addr(),
		"CALLBRIDGE_SPOOL_DIR":    t.TempDir(),
		"CALLBRIDGE_REPORT_DIR":   t.TempDir(),
		"CALLBRIDGE_LOG_LEVEL":    "warn",
	}
	base := startServe(t, env)

	if code, v := do(t, "GET", base+"/healthz", "", ""); code != 200 || v["status"] != "ok" {
		t.Fatalf("/healthz = %d %v", code, v)
	}
	// Poll /readyz: the database is reachable and the schema current.
	var ready map[string]any
	wait.ForState(t, "/readyz ready", func() (bool, string) {
		code, v := do(t, "GET", base+"/readyz", "", "")
		ready = v
		return code == 200 && v["ready"] == true, fmt.Sprintf("%d %v", code, v)
	}, wait.Every(100*time.Millisecond))
	if nodes, _ := ready["nodes"].([]any); len(nodes) != 1 || nodes[0].(map[string]any)["state"] != "connected" {
		t.Fatalf("/readyz nodes = %v, want the simulator connected", ready["nodes"])
	}

	// Every route but health needs credentials, in the JSON error shape.
	code, v := do(t, "GET", base+"/v1/account", "", "")
	if code != 401 || v["error"].(map[string]any)["code"] != "unauthorized" {
		t.Fatalf("GET /v1/account without key = %d %v", code, v)
	}
	if code, _ := do(t, "POST", base+"/v1/admin/accounts", "wrong", `{"name":"x"}`); code != 401 {
		t.Fatalf("admin with wrong token = %d, want 401", code)
	}

	code, v = do(t, "POST", base+"/v1/admin/accounts", "admin-secret", `{"name":"Acme","service_number":"+49 30 1234567","currency":"EUR"}`)
	if code != 201 {
		t.Fatalf("create account = %d %v", code, v)
	}
	key, _ := v["api_key"].(string)
	code, v = do(t, "GET", base+"/v1/account", key, "")
	if code != 200 || v["name"] != "Acme" || v["service_number"] != "49301234567" {
		t.Fatalf("GET /v1/account = %d %v", code, v)
	}

	// /metrics is behind the admin token and reports ESL and HTTP figures.
	if code, _ := do(t, "GET", base+"/metrics", "", ""); code != 401 {
		t.Errorf("/metrics without the admin token = %d, want 401", code)
	}
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer admin-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`callbridge_esl_connected{node="` + fs.Addr() + `"} 1`,
		`callbridge_http_requests_total{method="GET",route="/v1/account",status="200"} 1`,
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// A callback's status changes and the jobs caught up at start are
	// counted.
	if code, v := do(t, "POST", base+"/v1/callbacks", key, `{"a":"4917011111","b":"4917022222"}`); code != 202 {
		t.Fatalf("POST /v1/callbacks = %d %v", code, v)
	}
	for _, want := range []string{
		`callbridge_callback_status_changes_total{reason="",status="calling_a"} 1`,
		`callbridge_job_runs_total{job="partitions",outcome="ok"} 1`,
		`callbridge_job_last_success_timestamp_seconds{job="partitions"}`,
		`callbridge_callbacks_live `,
		`callbridge_rate_decks_refused 0`,
		`callbridge_callbacks_queued `,
		`callbridge_webhooks_pending 0`,
		`callbridge_webhook_oldest_pending_seconds 0`,
	} {
		waitMetric(t, base, want)
	}

	for _, tc := range []struct{ body, field string }{
		{`{"name":"x","bogus":1}`, "bogus"},
		{`{"name":"x","service_number":"12; rm -rf"}`, "service_number"},
		{`{"name":1}`, "name"},
	} {
		code, v := do(t, "POST", base+"/v1/admin/accounts", "admin-secret", tc.body)
		e, _ := v["error"].(map[string]any)
		if code != 400 || e["field"] != tc.field {
			t.Errorf("create account %s = %d %v, want 400 naming %s", tc.body, code, v, tc.field)
		}
	}
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{}, nil, "CALLBRIDGE_DATABASE_URL"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "mysql://x"}, nil, "CALLBRIDGE_DATABASE_URL"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_ESL": "nohostport"}, nil, "CALLBRIDGE_ESL"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_MAX_CPS": "ten"}, nil, "CALLBRIDGE_MAX_CPS"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_LOG_LEVEL": "loud"}, nil, "CALLBRIDGE_LOG_LEVEL"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_TIMEZONE": "Mars/Base"}, nil, "CALLBRIDGE_TIMEZONE"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_DIALPLAN_ALLOW": "10.0.0.0"}, nil, "CALLBRIDGE_DIALPLAN_ALLOW"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y"}, []string{"--http-addr", "nowhere"}, "CALLBRIDGE_HTTP_ADDR"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_GATEWAY": "a b"}, nil, "CALLBRIDGE_GATEWAY"},
		// Checked before the database or a node is opened (postgres://x/y
		// cannot be reached, so any later check would fail on that first).
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_ESL": "1.2.3.4:99999"}, nil, "CALLBRIDGE_ESL"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_ESL": "1.2.3.4:0"}, nil, "CALLBRIDGE_ESL"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_ESL": ":8021"}, nil, "CALLBRIDGE_ESL"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_ESL": "fs1:http"}, nil, "CALLBRIDGE_ESL"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y"}, []string{"--http-addr", ":70000"}, "CALLBRIDGE_HTTP_ADDR"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_METRICS_ADDR": "127.0.0.1:-1"}, nil, "CALLBRIDGE_METRICS_ADDR"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_SCHEDULE_ROLLUP": "61 * * * *"}, nil, "CALLBRIDGE_SCHEDULE_ROLLUP"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_SCHEDULE_INVOICE": "every day"}, nil, "CALLBRIDGE_SCHEDULE_INVOICE"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_MAX_DECK_RATES": "0"}, nil, "CALLBRIDGE_MAX_DECK_RATES"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_MAX_DECK_RATES": "lots"}, nil, "CALLBRIDGE_MAX_DECK_RATES"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_MAX_ACCOUNT_RATES": "-5"}, nil, "CALLBRIDGE_MAX_ACCOUNT_RATES"},
		{map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_MAX_ACCOUNT_RATES": "50000001"}, nil, "CALLBRIDGE_MAX_ACCOUNT_RATES"},
	} {
		var stderr bytes.Buffer
		err := run(context.Background(), append([]string{"serve"}, tc.args...), func(k string) string { return tc.env[k] }, io.Discard, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != 2 || strings.Contains(err.Error(), "callbridge:") {
			t.Errorf("serve with %v %v: error %v (exit %d), want one naming %s with exit 2", tc.env, tc.args, err, exitCode(err), tc.want)
		}
	}
	if err := run(context.Background(), []string{"bogus"}, func(string) string { return "" }, io.Discard, io.Discard); exitCode(err) != 2 {
		t.Errorf("unknown command: exit %d, want 2", exitCode(err))
	}
}

func TestAccountsCommandPrintsKeyLast(t *testing.T) {
	u := pgtest.URL(t)
	var out bytes.Buffer
	env := func(k string) string {
		if k == "CALLBRIDGE_DATABASE_URL" {
			return u
		}
		return ""
	}
	if err := run(context.Background(), []string{"accounts", "create", "Demo", "Shop", "--currency", "EUR"}, env, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	key := lines[len(lines)-1]
	if !strings.HasPrefix(key, "cbk_") || !strings.Contains(out.String(), "(Demo Shop)") {
		t.Fatalf("accounts create printed %q; want the key alone on the last line", out.String())
	}
	id := strings.Fields(lines[0])[1]
	out.Reset()
	if err := run(context.Background(), []string{"accounts", "revoke-key", id, key}, env, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"accounts", "revoke-key", id, "cbk_nosuchkey"}, env, io.Discard, io.Discard); err == nil {
		t.Errorf("revoking an unknown key succeeded")
	}
}

// waitMetric polls /metrics until a line holds want.
func waitMetric(t *testing.T, base, want string) {
	t.Helper()
	wait.ForState(t, "/metrics to show "+want, func() (bool, string) {
		req, _ := http.NewRequest("GET", base+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer admin-secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		text, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(text), want), string(text)
	}, wait.Every(50*time.Millisecond))
}
