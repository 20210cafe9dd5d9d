package controller_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"callbridge/app"
	"callbridge/internal/wait"
)

// planView is what a resolve answer shows of a plan's settings, written
// as one line so two controllers' answers compare whole.
func planView(e *fullEnv, query string) (string, int) {
	e.t.Helper()
	a := e.call("GET", "/v1/admin/routes/resolve?"+query, fullAdminToken, nil)
	if a.status != http.StatusOK {
		code, _ := a.errorCode()
		return fmt.Sprintf("%d %s", a.status, code), a.status
	}
	var r struct {
		Plan struct {
			ID      string `json:"id"`
			Name    string `json:"name"`
			Version int64  `json:"version"`
		} `json:"plan"`
		Causes     []string `json:"failover_causes"`
		Codes      []int    `json:"failover_sip_codes"`
		Resolution struct {
			Prefix      string `json:"prefix"`
			MaxAttempts int    `json:"max_attempts"`
			PostDialMS  int64  `json:"post_dial_ms"`
			Candidates  []struct {
				Gateway string `json:"gateway"`
				Kept    bool   `json:"kept"`
				Reason  string `json:"reason"`
			} `json:"candidates"`
		} `json:"resolution"`
	}
	if err := json.Unmarshal(a.body, &r); err != nil {
		e.t.Fatal(err)
	}
	var order []string
	for _, c := range r.Resolution.Candidates {
		s := c.Gateway + ":" + c.Reason
		if !c.Kept {
			s = "-" + s
		}
		order = append(order, s)
	}
	return fmt.Sprintf("plan=%s name=%q v=%d prefix=%q order=[%s] attempts=%d post_dial=%d causes=%v codes=%v",
		r.Plan.ID, r.Plan.Name, r.Plan.Version, r.Resolution.Prefix, strings.Join(order, " "),
		r.Resolution.MaxAttempts, r.Resolution.PostDialMS, r.Causes, r.Codes), a.status
}

// TestRoutePlanPatch changes each setting of a plan with PATCH on one
// controller and resolves with it there and on a second controller over
// the same database, which learns of the change by LISTEN/NOTIFY alone.
func TestRoutePlanPatch(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	other := newEnv(t, envOptions{db: env.db, configure: func(c *app.Config) { c.Owner = "test-2" }})
	shop := env.newTenant("patch shop")
	shop2 := env.newTenant("patch shop 2")
	env.buyDeck("gw-eur", "EUR", "prefix,per_minute\n49,0.010\n")
	env.buyDeck("gw-usd", "USD", "prefix,per_minute\n49,0.005\n")

	create := func(body map[string]any) string {
		t.Helper()
		p := env.mustCall(http.StatusCreated, "POST", "/v1/admin/route-plans", fullAdminToken, body).json(t)
		id, _ := p["id"].(string)
		// Germany on weekdays 08:00-18:00 in the plan's zone, else the
		// catch-all.
		if a := env.importRoutesCSV(id, "", "prefix,strategy,gateways,days,from,until\n"+
			"49,least_cost,gw-eur;gw-usd,mon-fri,08:00,18:00\n,priority,gw-eur,all,00:00,24:00\n"); a.status != http.StatusOK {
			t.Fatalf("import: %d %s", a.status, a.body)
		}
		return id
	}
	defID := create(map[string]any{"name": "default", "default": true, "time_zone": "UTC", "currency": "EUR"})
	stagedID := create(map[string]any{"name": "staged", "time_zone": "UTC", "currency": "EUR"})
	ownID := create(map[string]any{"name": "own", "account_id": shop.id, "time_zone": "UTC", "currency": "EUR"})

	// Monday 07:30 UTC is 08:30 in Berlin: inside the band there, outside
	// it in UTC.
	const at = "number=%2B4930123456&at=2026-03-02T07:30:00Z"
	const inBand = "number=%2B4930123456&at=2026-03-02T12:00:00Z"

	// patch sends body to plan id on the first controller, checks the
	// answer and that its resolve of query shows want, then waits for the
	// second controller's resolve to show the same.
	patch := func(t *testing.T, id string, body any, query, want string) {
		t.Helper()
		a := env.call("PATCH", "/v1/admin/route-plans/"+id, fullAdminToken, body)
		if a.status != http.StatusOK {
			t.Fatalf("patch %v: got %d %s", body, a.status, a.body)
		}
		if got := a.json(t)["id"]; got != id {
			t.Fatalf("patch answered plan %v, want %s: %s", got, id, a.body)
		}
		got, _ := planView(env, query)
		if !strings.Contains(got, want) {
			t.Fatalf("controller 1 after the patch:\ngot  %s\nwant %s", got, want)
		}
		wait.ForState(t, "controller 2 to resolve with the patched plan", func() (bool, string) {
			v, _ := planView(other, query)
			return v == got, fmt.Sprintf("controller 2: %s\ncontroller 1: %s", v, got)
		})
	}
	version := func(id string) float64 {
		t.Helper()
		v, _ := env.mustCall(http.StatusOK, "GET", "/v1/admin/route-plans/"+id, fullAdminToken, nil).json(t)["version"].(float64)
		return v
	}

	t.Run("each setting", func(t *testing.T) {
		if v, _ := planView(other, inBand); !strings.Contains(v, "plan="+defID+` name="default" v=2 prefix="49" order=[gw-eur:ok -gw-usd:currency_mismatch] attempts=3 post_dial=60000`) {
			t.Fatalf("controller 2 before the patches: %s", v)
		}
		patch(t, defID, map[string]any{"name": "Default (patched)"}, inBand, `name="Default (patched)" v=3 `)
		patch(t, defID, map[string]any{"max_attempts": 1}, inBand, "v=4 prefix=\"49\" order=[gw-eur:ok -gw-usd:currency_mismatch] attempts=1 ")
		patch(t, defID, map[string]any{"post_dial_ms": 15000}, inBand, "attempts=1 post_dial=15000 ")
		patch(t, defID, map[string]any{"currency": "USD"}, inBand, "order=[gw-usd:ok -gw-eur:currency_mismatch]")
		patch(t, defID, map[string]any{"failover_causes": []string{"GATEWAY_DOWN"}}, inBand, "causes=[GATEWAY_DOWN] codes=[503 408]")
		patch(t, defID, map[string]any{"failover_sip_codes": []int{502, 503}}, inBand, "causes=[GATEWAY_DOWN] codes=[502 503]")
		if v, _ := planView(env, at); !strings.Contains(v, `prefix="" `) {
			t.Fatalf("before the zone changes: %s", v)
		}
		patch(t, defID, map[string]any{"time_zone": "Europe/Berlin"}, at, `prefix="49" order=[gw-usd:ok -gw-eur:currency_mismatch]`)
		// 0 and [] mean the defaults, as when creating; several at once.
		patch(t, defID, map[string]any{"max_attempts": 0, "post_dial_ms": 0, "failover_causes": []string{}, "failover_sip_codes": []int{}, "currency": "EUR"}, inBand,
			"v=10 prefix=\"49\" order=[gw-eur:ok -gw-usd:currency_mismatch] attempts=3 post_dial=60000 causes=[NORMAL_TEMPORARY_FAILURE GATEWAY_DOWN NO_ROUTE_DESTINATION RECOVERY_ON_TIMER_EXPIRE DESTINATION_OUT_OF_ORDER] codes=[503 408]")
		got := env.mustCall(http.StatusOK, "GET", "/v1/admin/route-plans/"+defID, fullAdminToken, nil).json(t)
		if got["name"] != "Default (patched)" || got["time_zone"] != "Europe/Berlin" || got["currency"] != "EUR" || got["version"] != 10.0 || got["default"] != true {
			t.Errorf("the stored plan: %v", got)
		}
		// An empty patch changes nothing, not even the version.
		if a := env.mustCall(http.StatusOK, "PATCH", "/v1/admin/route-plans/"+defID, fullAdminToken, map[string]any{}).json(t); a["version"] != 10.0 {
			t.Errorf("empty patch: got %v", a)
		}
	})

	t.Run("account and default", func(t *testing.T) {
		shopQ, shop2Q := inBand+"&account_id="+shop.id, inBand+"&account_id="+shop2.id
		// The staged plan becomes shop 2's, then moves to shop 1 once
		// shop 1's own plan gives the account up.
		patch(t, stagedID, map[string]any{"account_id": shop2.id}, shop2Q, "plan="+stagedID)
		if a := env.call("PATCH", "/v1/admin/route-plans/"+stagedID, fullAdminToken, map[string]any{"account_id": shop.id}); a.status != http.StatusConflict {
			t.Errorf("an account with a plan: got %d %s, want 409", a.status, a.body)
		}
		patch(t, ownID, map[string]any{"account_id": ""}, shopQ, "plan="+defID)
		patch(t, stagedID, map[string]any{"account_id": shop.id}, shopQ, "plan="+stagedID)
		if v, _ := planView(other, shop2Q); !strings.Contains(v, "plan="+defID) {
			t.Errorf("shop 2 after its plan moved: %s, want the default", v)
		}
		// The default moves from one plan to another, in two patches.
		if a := env.call("PATCH", "/v1/admin/route-plans/"+ownID, fullAdminToken, map[string]any{"default": true}); a.status != http.StatusConflict {
			t.Errorf("a second default: got %d %s, want 409", a.status, a.body)
		}
		env.mustCall(http.StatusOK, "PATCH", "/v1/admin/route-plans/"+defID, fullAdminToken, map[string]any{"default": false})
		wait.ForState(t, "controller 2 to have no default plan", func() (bool, string) {
			v, status := planView(other, inBand)
			return status == http.StatusNotFound, v
		})
		patch(t, ownID, map[string]any{"default": true, "name": "new default"}, inBand, "plan="+ownID+` name="new default"`)
		patch(t, ownID, map[string]any{"default": true}, shop2Q, "plan="+ownID)
	})

	t.Run("refused patches change nothing", func(t *testing.T) {
		long := strings.Repeat("n", 201)
		for name, tt := range map[string]struct {
			id     string
			body   any
			status int
			field  string
		}{
			"empty name":            {defID, `{"name":""}`, 400, "name"},
			"long name":             {defID, map[string]any{"name": long}, 400, "name"},
			"NUL in name":           {defID, `{"name":"a\u0000b"}`, 400, "name"},
			"DEL in name":           {defID, `{"name":"a\u007fb"}`, 400, "name"},
			"tab in name":           {defID, `{"name":"a\tb"}`, 400, "name"},
			"lone surrogate":        {defID, `{"name":"a\ud800b"}`, 400, "name"},
			"newline in name":       {defID, `{"name":"a\nb"}`, 400, "name"},
			"invalid UTF-8":         {defID, []byte("{\"name\":\"a\xffb\"}"), 400, ""},
			"name not a string":     {defID, `{"name":7}`, 400, "name"},
			"unknown zone":          {defID, `{"time_zone":"Nowhere/City"}`, 400, "time_zone"},
			"empty zone":            {defID, `{"time_zone":""}`, 400, "time_zone"},
			"Local zone":            {defID, `{"time_zone":"Local"}`, 400, "time_zone"},
			"zone path":             {defID, `{"time_zone":"../../../etc/passwd"}`, 400, "time_zone"},
			"NUL in zone":           {defID, `{"time_zone":"UTC\u0000"}`, 400, "time_zone"},
			"lower-case currency":   {defID, `{"currency":"eur"}`, 400, "currency"},
			"empty currency":        {defID, `{"currency":""}`, 400, "currency"},
			"too many attempts":     {defID, `{"max_attempts":11}`, 400, "max_attempts"},
			"negative attempts":     {defID, `{"max_attempts":-1}`, 400, "max_attempts"},
			"attempts as a string":  {defID, `{"max_attempts":"3"}`, 400, "max_attempts"},
			"attempts fraction":     {defID, `{"max_attempts":2.5}`, 400, "max_attempts"},
			"short post-dial":       {defID, `{"post_dial_ms":999}`, 400, "post_dial_ms"},
			"long post-dial":        {defID, `{"post_dial_ms":300001}`, 400, "post_dial_ms"},
			"busy fails over":       {defID, `{"failover_causes":["USER_BUSY"]}`, 400, "failover_causes"},
			"not a cause":           {defID, `{"failover_causes":["gateway down"]}`, 400, "failover_causes"},
			"NUL in a cause":        {defID, `{"failover_causes":["GATEWAY_DOWN\u0000"]}`, 400, "failover_causes[0]"},
			"decline fails over":    {defID, `{"failover_sip_codes":[603]}`, 400, "failover_sip_codes"},
			"not a SIP failure":     {defID, `{"failover_sip_codes":[200]}`, 400, "failover_sip_codes"},
			"codes not integers":    {defID, `{"failover_sip_codes":["503"]}`, 400, "failover_sip_codes"},
			"bad account":           {defID, `{"account_id":"x"}`, 400, "account_id"},
			"unknown account":       {stagedID, map[string]any{"account_id": ownID}, 400, "account_id"},
			"NUL in account":        {stagedID, `{"account_id":"\u0000"}`, 400, "account_id"},
			"default not a boolean": {defID, `{"default":"yes"}`, 400, "default"},
			"account plan default":  {stagedID, `{"default":true}`, 400, "default"},
			"default and account":   {ownID, map[string]any{"account_id": shop2.id}, 400, "default"},
			"strategy is a route's": {defID, `{"strategy":"priority"}`, 400, "strategy"},
			"unknown field":         {defID, `{"gateway":"a"}`, 400, "gateway"},
			"hostile key":           {defID, `{"na\u0000me":"x"}`, 400, "na\x00me"},
			"not an object":         {defID, `["name"]`, 400, ""},
			"malformed":             {defID, `{"name":`, 400, ""},
			"no body":               {defID, ``, 400, ""},
			"valid name, bad zone":  {defID, `{"name":"half","time_zone":"Mars/Olympus"}`, 400, "time_zone"},
			"unknown plan":          {shop.id, `{"name":"x"}`, 404, ""},
			"not a plan id":         {"nope", `{"name":"x"}`, 404, ""},
			"NUL plan id":           {"%00", `{"name":"x"}`, 400, "id"},
		} {
			t.Run(name, func(t *testing.T) {
				before := version(defID) + version(stagedID) + version(ownID)
				a := env.call("PATCH", "/v1/admin/route-plans/"+tt.id, fullAdminToken, tt.body)
				code, field := a.errorCode()
				if a.status != tt.status || code == "" || (tt.field != "" && field != tt.field) {
					t.Errorf("got %d %s (field %q), want %d naming %q: %s", a.status, code, field, tt.status, tt.field, a.body)
				}
				if after := version(defID) + version(stagedID) + version(ownID); after != before {
					t.Errorf("a refused patch changed a plan's version (%v to %v)", before, after)
				}
			})
		}
		// Conflicts, with the plans as the subtests above left them: own
		// is the default and shop's plan is staged.
		before := version(defID) + version(stagedID) + version(ownID)
		for name, tt := range map[string]struct {
			id   string
			body any
		}{
			"second default":       {defID, map[string]any{"default": true}},
			"account has a plan":   {defID, map[string]any{"account_id": shop.id}},
			"account has a plan 2": {ownID, map[string]any{"default": false, "account_id": shop.id}},
		} {
			a := env.call("PATCH", "/v1/admin/route-plans/"+tt.id, fullAdminToken, tt.body)
			if code, _ := a.errorCode(); a.status != http.StatusConflict || code != "conflict" {
				t.Errorf("%s: got %d %s, want 409 conflict", name, a.status, a.body)
			}
		}
		if after := version(defID) + version(stagedID) + version(ownID); after != before {
			t.Errorf("a refused patch changed a plan's version (%v to %v)", before, after)
		}
		// An account key may not patch.
		if a := env.call("PATCH", "/v1/admin/route-plans/"+stagedID, shop.key, map[string]any{"name": "mine"}); a.status != http.StatusUnauthorized {
			t.Errorf("account key: got %d %s, want 401", a.status, a.body)
		}
	})
}
