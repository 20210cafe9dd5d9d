package controller_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/app"
	"callbridge/esl/esltest"
	"callbridge/internal/wait"
	"callbridge/postgres"
)

// TestBindingCallRoutePlan runs a binding call through the whole wired
// controller on a simulated node with two carriers: the default route
// plan puts the cheaper "cheap" (which answers every call 503) first and
// "solid" second. The call connects through solid; the ended webhook
// lists both attempts (without naming carriers); the operator's CDRs show
// both legs, numbered and linked to the caller's leg, the refused one at
// no cost, the connected one priced from solid's buy deck; the report by
// carrier shows each gateway's attempts and ASR; and cheap's breaker,
// fed by the CDRs, makes the next call skip it.
func TestBindingCallRoutePlan(t *testing.T) {
	recv := &hookReceiver{t: t, secret: []byte("hook-secret")}
	rs := httptest.NewServer(recv)
	t.Cleanup(rs.Close)
	fs := esltest.NewUnstartedServer()
	sc, err := esltest.ParseScript([]byte(callsScript))
	if err != nil {
		t.Fatal(err)
	}
	fs.Script, fs.Speed = sc, 10
	fs.Gateways = []esltest.Gateway{{Name: "cheap", Refuse: true}, {Name: "solid"}, {Name: "carrier-1"}}
	env := &callsEnv{recv: recv, hookURL: rs.URL + "/hooks"}
	env.privacyEnv = &privacyEnv{fullEnv: newEnv(t, envOptions{fs: fs, configure: func(c *app.Config) {
		c.WebhookSecret = string(recv.secret)
		c.WebhookAllowPrivate = true
	}})}
	env.key, err = postgres.NewAccountService(env.db).CreateAccount(context.Background(), &callbridge.Account{Name: "shop", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	acct, err := env.srv.Accounts.Authenticate(context.Background(), env.key)
	if err != nil {
		t.Fatal(err)
	}
	env.account = acct.ID

	env.buyDeck("cheap", "EUR", "prefix,per_minute,first_increment,next_increment\n49,0.006,1,1\n")
	env.buyDeck("solid", "EUR", "prefix,per_minute,first_increment,next_increment\n49,0.030,1,1\n")
	plan := env.mustCall(http.StatusCreated, "POST", "/v1/admin/route-plans", fullAdminToken,
		map[string]any{"name": "default", "default": true, "time_zone": "UTC", "currency": "EUR", "post_dial_ms": 20000}).json(t)
	planID, _ := plan["id"].(string)
	if a := env.importRoutesCSV(planID, "replace", "prefix,strategy,gateways\n49,least_cost,solid;cheap\n"); a.status != http.StatusOK {
		t.Fatalf("import routes: %d %s", a.status, a.body)
	}
	wait.For(t, "the plan to route with both carriers' prices", func() bool {
		r := env.resolve("number=%2B" + string(tB))
		return r.Plan.ID == planID && r.Resolution.Matched && len(r.Resolution.Candidates) == 2 && r.Resolution.Candidates[0].Gateway == "cheap" && r.Resolution.Candidates[1].Kept
	})
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
	wait.For(t, "the answered webhook", func() bool { return len(env.recv.got(inbound)) >= 2 })
	env.fs.Jump(2 * time.Second)
	if err := env.fs.Hangup(inbound, "NORMAL_CLEARING"); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the ended webhook", func() bool { return len(env.recv.got(inbound)) >= 3 })
	end := env.recv.got(inbound)[2]
	attempts, _ := json.Marshal(end["attempts"])
	if want := `[{"answered":false,"attempt":1,"cause":"NORMAL_TEMPORARY_FAILURE"},{"answered":true,"attempt":2,"cause":"NORMAL_CLEARING"}]`; string(attempts) != want {
		t.Errorf("ended webhook attempts %s, want %s", attempts, want)
	}

	// The operator's CDRs of the binding: the caller's leg and two attempts.
	var cdrs []*callbridge.CDR
	wait.For(t, "3 CDRs", func() bool {
		var page struct {
			CDRs []*callbridge.CDR `json:"cdrs"`
		}
		a := env.fullEnv.call("GET", "/v1/admin/accounts/"+env.account+"/cdrs?binding_id="+b.ID, fullAdminToken, nil)
		if err := json.Unmarshal(a.body, &page); err != nil {
			t.Fatal(err)
		}
		cdrs = page.CDRs
		return len(cdrs) == 3
	})
	byAttempt := map[int]*callbridge.CDR{}
	for _, c := range cdrs {
		if c.Leg == callbridge.LegOutbound {
			byAttempt[c.Attempt] = c
		}
	}
	first, second := byAttempt[1], byAttempt[2]
	if first == nil || second == nil {
		t.Fatalf("outbound CDRs by attempt %v, want 1 and 2", byAttempt)
	}
	if first.Gateway != "cheap" || first.Answered() || first.Buy != 0 || first.OtherUUID != inbound || first.HangupCause != "NORMAL_TEMPORARY_FAILURE" {
		t.Errorf("attempt 1: %+v; want cheap, refused, free, linked to %s", first, inbound)
	}
	if want := 500 * ((second.BillMS + 999) / 1000); second.Gateway != "solid" || !second.Answered() || second.BillMS <= 0 || second.Buy != want || second.OtherUUID != inbound {
		t.Errorf("attempt 2: gateway %s answered %v bill %d buy %d other %s; want solid, answered, %d (solid's deck), linked to %s",
			second.Gateway, second.Answered(), second.BillMS, second.Buy, second.OtherUUID, want, inbound)
	}
	// The account sees the attempts, not the carriers.
	a := env.fullEnv.call("GET", "/v1/cdrs?binding_id="+b.ID, env.key, nil)
	var own struct {
		CDRs []map[string]any `json:"cdrs"`
	}
	if err := json.Unmarshal(a.body, &own); err != nil {
		t.Fatal(err)
	}
	if a.status != http.StatusOK || len(own.CDRs) != 3 {
		t.Fatalf("the account's CDRs: %d, %d of them, want 3", a.status, len(own.CDRs))
	}
	seen := 0
	for _, c := range own.CDRs {
		if n, _ := c["attempt"].(float64); n > 0 && c["other_uuid"] == inbound {
			seen++
		}
		if c["gateway"] != nil || c["buy_micros"] != nil {
			t.Errorf("the account's CDR names a carrier or its cost: %v", c)
		}
	}

	if seen != 2 {
		t.Errorf("the account sees %d attempts linked to its caller's leg, want 2", seen)
	}
	// The CSV export has them too.
	exp := env.send(request{method: "GET", path: "/v1/cdrs?binding_id=" + b.ID, auth: "Bearer " + env.key, header: map[string]string{"Accept": "text/csv"}})
	rows, err := csv.NewReader(bytes.NewReader(exp.body)).ReadAll()
	if err != nil || len(rows) != 4 {
		t.Fatalf("CSV export: %v, %d rows:\n%s", err, len(rows), exp.body)
	}
	col := slices.Index(rows[0], "attempt")
	var numbers []string
	for _, r := range rows[1:] {
		if col >= 0 && r[col] != "" {
			numbers = append(numbers, r[col])
		}
	}
	if slices.Sort(numbers); strings.Join(numbers, ",") != "1,2" {
		t.Errorf("CSV attempts %v (column %d), want 1 and 2", numbers, col)
	}

	// The report by carrier.
	day := time.Now().UTC()
	rep := env.mustCall(http.StatusOK, "GET", "/v1/admin/accounts/"+env.account+"/reports/usage?group_by=carrier&from="+
		day.Format(time.DateOnly)+"&to="+day.Add(24*time.Hour).Format(time.DateOnly), fullAdminToken, nil).json(t)
	repRows, _ := rep["rows"].([]any)
	got := map[string]string{}
	for _, r := range repRows {
		m, _ := r.(map[string]any)
		k, _ := m["key"].(string)
		got[k] = string(mustJSON(t, map[string]any{"attempts": m["attempts"], "answered": m["answered"], "asr": m["asr"]}))
	}
	if got["cheap"] != `{"answered":0,"asr":0,"attempts":1}` || got["solid"] != `{"answered":1,"asr":1,"attempts":1}` {
		t.Errorf("report by carrier: %v", got)
	}

	// cheap's breaker: the default opens after 5 consecutive failures,
	// so one refusal leaves it closed and the plan still tries it first.
	r := env.resolve("number=%2B" + string(tB))
	if len(r.Resolution.Candidates) != 2 || r.Resolution.Candidates[0].Gateway != "cheap" || r.Resolution.Candidates[0].Health.Breaker != "closed" {
		t.Errorf("after one refusal: %+v, want cheap still first, its breaker closed", r.Resolution.Candidates)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
