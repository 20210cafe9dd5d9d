package controller_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"callbridge/controller"
	"callbridge/routing"
)

// importRoutesCSV posts a route file to a plan as the admin.
func (e *fullEnv) importRoutesCSV(plan, mode, csv string) answer {
	e.t.Helper()
	path := "/v1/admin/route-plans/" + plan + "/routes"
	if mode != "" {
		path += "?mode=" + mode
	}
	return e.send(request{method: "POST", path: path, auth: "Bearer " + fullAdminToken, contentType: "text/csv", body: strings.NewReader(csv)})
}

// buyDeck creates a carrier deck for gateway with the given rates CSV.
func (e *fullEnv) buyDeck(gateway, currency, rates string) {
	e.t.Helper()
	d := e.mustCall(http.StatusCreated, "POST", "/v1/rate-decks", fullAdminToken,
		map[string]any{"gateway": gateway, "name": gateway + " buy", "currency": currency, "time_zone": "UTC"}).json(e.t)
	id, _ := d["id"].(string)
	a := e.send(request{method: "POST", path: "/v1/rate-decks/" + id + "/rates", auth: "Bearer " + fullAdminToken,
		contentType: "text/csv", body: strings.NewReader(rates)})
	if a.status != http.StatusOK {
		e.t.Fatalf("import %s rates: %d %s", gateway, a.status, a.body)
	}
}

// resolved is the part of a resolve answer the tests compare.
type resolved struct {
	Plan struct {
		ID      string `json:"id"`
		Version int64  `json:"version"`
	} `json:"plan"`
	Number     string `json:"number"`
	Causes     []string
	Resolution struct {
		Matched    bool   `json:"matched"`
		Prefix     string `json:"prefix"`
		Strategy   string `json:"strategy"`
		Candidates []struct {
			Gateway   string `json:"gateway"`
			Kept      bool   `json:"kept"`
			Reason    string `json:"reason"`
			PerMinute int64  `json:"per_minute_micros"`
			Cost      int64  `json:"cost_micros"`
			Currency  string `json:"currency"`
			Health    struct {
				Breaker string `json:"breaker"`
				Sofia   string `json:"sofia"`
			} `json:"health"`
		} `json:"candidates"`
	} `json:"resolution"`
}

func (e *fullEnv) resolve(query string) resolved {
	e.t.Helper()
	a := e.mustCall(http.StatusOK, "GET", "/v1/admin/routes/resolve?"+query, fullAdminToken, nil)
	var r resolved
	if err := json.Unmarshal(a.body, &r); err != nil {
		e.t.Fatal(err)
	}
	return r
}

// order writes a resolution's candidates as "gw:reason" (kept) and
// "-gw:reason" (skipped).
func (r resolved) order() string {
	var out []string
	for _, c := range r.Resolution.Candidates {
		s := c.Gateway + ":" + c.Reason
		if !c.Kept {
			s = "-" + s
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestRoutePlanAPI(t *testing.T) {
	t.Parallel()
	health := routing.HealthMap{"gw-down": {Sofia: routing.SofiaDown}}
	env := newFullEnv(t, func(s *controller.Server) { s.GatewayHealth = health })
	shop := env.newTenant("routing shop")
	env.buyDeck("gw-cheap", "EUR", "prefix,per_minute\n49,0.010\n4930,0.030\n")
	env.buyDeck("gw-dear", "EUR", "prefix,per_minute\n49,0.020\n")
	env.buyDeck("gw-down", "EUR", "prefix,per_minute\n49,0.001\n")
	env.buyDeck("gw-usd", "USD", "prefix,per_minute\n49,0.001\n")

	def := env.mustCall(http.StatusCreated, "POST", "/v1/admin/route-plans", fullAdminToken,
		map[string]any{"name": "default", "default": true, "time_zone": "Europe/Berlin", "currency": "EUR"}).json(t)
	defID, _ := def["id"].(string)
	if def["max_attempts"] != 3.0 || def["post_dial_ms"] != 60000.0 || def["version"] != 1.0 {
		t.Errorf("create: got %v, want the defaults and version 1", def)
	}
	own := env.mustCall(http.StatusCreated, "POST", "/v1/admin/route-plans", fullAdminToken,
		map[string]any{"name": "shop", "account_id": shop.id, "time_zone": "UTC", "currency": "EUR", "max_attempts": 2}).json(t)
	ownID, _ := own["id"].(string)

	imp := env.importRoutesCSV(defID, "", "prefix,strategy,gateways,description\n"+
		"49,least_cost,gw-dear;gw-cheap;gw-down;gw-usd;gw-none,Germany\n"+
		",priority,gw-dear,everything else\n")
	if imp.status != http.StatusOK || imp.json(t)["imported"] != 2.0 {
		t.Fatalf("import: %d %s", imp.status, imp.body)
	}
	env.importRoutesCSV(ownID, "replace", "prefix,strategy,gateways\n49,priority,gw-dear;gw-cheap\n")

	t.Run("least cost, with the reason for each gateway", func(t *testing.T) {
		r := env.resolve("number=%2B4989123456&at=2026-03-02T10:00:00Z")
		if r.Plan.ID != defID || r.Plan.Version != 2 || !r.Resolution.Matched || r.Resolution.Prefix != "49" || r.Number != "4989123456" {
			t.Errorf("got %+v", r)
		}
		if got, want := r.order(), "gw-cheap:ok gw-dear:ok -gw-down:sofia_down -gw-usd:currency_mismatch -gw-none:no_buy_deck"; got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
		if c := r.Resolution.Candidates[0]; c.PerMinute != 10_000 || c.Cost != 10_000 || c.Currency != "EUR" {
			t.Errorf("cheapest: got %+v", c)
		}
	})
	t.Run("a longer buy prefix changes the order", func(t *testing.T) {
		r := env.resolve("number=%2B4930123456")
		if got, want := r.order(), "gw-dear:ok gw-cheap:ok -gw-down:sofia_down -gw-usd:currency_mismatch -gw-none:no_buy_deck"; got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	})
	t.Run("the catch-all route", func(t *testing.T) {
		r := env.resolve("number=%2B33123456")
		if r.Resolution.Prefix != "" || r.order() != "gw-dear:unpriced" {
			t.Errorf("got %s (prefix %q)", r.order(), r.Resolution.Prefix)
		}
	})
	t.Run("an account's own plan", func(t *testing.T) {
		r := env.resolve("number=%2B4930123456&account_id=" + shop.id)
		if r.Plan.ID != ownID || r.order() != "gw-dear:ok gw-cheap:ok" {
			t.Errorf("got plan %s, %s", r.Plan.ID, r.order())
		}
		r = env.resolve("number=%2B4930123456&plan_id=" + ownID)
		if r.Plan.ID != ownID {
			t.Errorf("by plan_id: got plan %s", r.Plan.ID)
		}
	})

	t.Run("export as CSV and JSON", func(t *testing.T) {
		a := env.send(request{method: "GET", path: "/v1/admin/route-plans/" + defID + "/routes", auth: "Bearer " + fullAdminToken,
			header: map[string]string{"Accept": "text/csv"}})
		want := "prefix,description,strategy,gateways,days,from,until,priority\n" +
			",everything else,priority,gw-dear,all,00:00,24:00,0\n" +
			"49,Germany,least_cost,gw-dear;gw-cheap;gw-down;gw-usd;gw-none,all,00:00,24:00,0\n"
		if a.status != http.StatusOK || string(a.body) != want {
			t.Errorf("csv: got %d\n%s\nwant\n%s", a.status, a.body, want)
		}
		j := env.mustCall(http.StatusOK, "GET", "/v1/admin/route-plans/"+defID+"/routes", fullAdminToken, nil).json(t)
		if routes, _ := j["routes"].([]any); len(routes) != 2 {
			t.Errorf("json: got %v", j)
		}
		list := env.mustCall(http.StatusOK, "GET", "/v1/admin/route-plans", fullAdminToken, nil).json(t)
		if plans, _ := list["route_plans"].([]any); len(plans) != 2 {
			t.Errorf("list: got %v", list)
		}
		env.mustCall(http.StatusOK, "GET", "/v1/admin/route-plans/"+ownID, fullAdminToken, nil)
	})

	t.Run("bad requests name the field", func(t *testing.T) {
		for name, tt := range map[string]struct {
			method, path string
			body         any
			status       int
			field        string
		}{
			"no number":           {"GET", "/v1/admin/routes/resolve", nil, 400, "number"},
			"not a number":        {"GET", "/v1/admin/routes/resolve?number=abc", nil, 400, "number"},
			"bad time":            {"GET", "/v1/admin/routes/resolve?number=%2B4930123456&at=yesterday", nil, 400, "at"},
			"bad account":         {"GET", "/v1/admin/routes/resolve?number=%2B4930123456&account_id=x", nil, 400, "account_id"},
			"account and plan":    {"GET", "/v1/admin/routes/resolve?number=%2B4930123456&account_id=" + shop.id + "&plan_id=" + ownID, nil, 400, "plan_id"},
			"unknown plan":        {"GET", "/v1/admin/routes/resolve?number=%2B4930123456&plan_id=" + shop.id, nil, 404, ""},
			"no name":             {"POST", "/v1/admin/route-plans", map[string]any{"time_zone": "UTC", "currency": "EUR"}, 400, "name"},
			"bad zone":            {"POST", "/v1/admin/route-plans", map[string]any{"name": "x", "time_zone": "Nowhere/City", "currency": "EUR"}, 400, "time_zone"},
			"bad currency":        {"POST", "/v1/admin/route-plans", map[string]any{"name": "x", "time_zone": "UTC", "currency": "eur"}, 400, "currency"},
			"too many attempts":   {"POST", "/v1/admin/route-plans", map[string]any{"name": "x", "time_zone": "UTC", "currency": "EUR", "max_attempts": 11}, 400, "max_attempts"},
			"busy fails over":     {"POST", "/v1/admin/route-plans", map[string]any{"name": "x", "time_zone": "UTC", "currency": "EUR", "failover_causes": []string{"USER_BUSY"}}, 400, "failover_causes"},
			"decline fails over":  {"POST", "/v1/admin/route-plans", map[string]any{"name": "x", "time_zone": "UTC", "currency": "EUR", "failover_sip_codes": []int{603}}, 400, "failover_sip_codes"},
			"unknown field":       {"POST", "/v1/admin/route-plans", map[string]any{"name": "x", "time_zone": "UTC", "currency": "EUR", "gateway": "a"}, 400, "gateway"},
			"second default":      {"POST", "/v1/admin/route-plans", map[string]any{"name": "x", "time_zone": "UTC", "currency": "EUR", "default": true}, 409, ""},
			"second account plan": {"POST", "/v1/admin/route-plans", map[string]any{"name": "x", "time_zone": "UTC", "currency": "EUR", "account_id": shop.id}, 409, ""},
			"unknown plan get":    {"GET", "/v1/admin/route-plans/nope", nil, 404, ""},
			"unknown plan delete": {"DELETE", "/v1/admin/route-plans/" + shop.id, nil, 404, ""},
			"account key":         {"GET", "/v1/admin/route-plans", nil, 401, ""},
		} {
			t.Run(name, func(t *testing.T) {
				token := fullAdminToken
				if name == "account key" {
					token = shop.key
				}
				a := env.call(tt.method, tt.path, token, tt.body)
				code, field := a.errorCode()
				if a.status != tt.status || code == "" || field != tt.field {
					t.Errorf("got %d %s (field %q), want %d naming %q: %s", a.status, code, field, tt.status, tt.field, a.body)
				}
			})
		}
	})

	t.Run("a bad file is refused whole, with its rows", func(t *testing.T) {
		a := env.importRoutesCSV(defID, "replace", "prefix,strategy,gateways\n4x,priority,a\n44,cheapest,a\n44,priority,a}b\n")
		var body struct {
			Error struct {
				Code string `json:"code"`
				Rows []struct {
					Line   int    `json:"line"`
					Column string `json:"column"`
				} `json:"rows"`
			} `json:"error"`
		}
		if err := json.Unmarshal(a.body, &body); err != nil || a.status != 400 || len(body.Error.Rows) != 3 ||
			body.Error.Rows[0].Column != "prefix" || body.Error.Rows[1].Column != "strategy" || body.Error.Rows[2].Column != "gateways" {
			t.Errorf("got %d %s", a.status, a.body)
		}
		for name, tt := range map[string]struct {
			mode, ct string
			field    string
		}{
			"bad mode":     {"merge", "text/csv", "mode"},
			"content type": {"", "application/json", ""},
		} {
			path := "/v1/admin/route-plans/" + defID + "/routes"
			if tt.mode != "" {
				path += "?mode=" + tt.mode
			}
			a := env.send(request{method: "POST", path: path, auth: "Bearer " + fullAdminToken,
				contentType: tt.ct, body: strings.NewReader("prefix,strategy,gateways\n")})
			if code, field := a.errorCode(); a.status != 400 || code != "invalid" || field != tt.field {
				t.Errorf("%s: got %d %s", name, a.status, a.body)
			}
		}
		if a := env.importRoutesCSV(defID, "", "prefix,strategy,gateways\n49,priority,x\n"); a.status != http.StatusConflict {
			t.Errorf("a route the plan has: got %d %s, want 409", a.status, a.body)
		}
		r := env.resolve("number=%2B4989123456")
		if r.Plan.Version != 2 {
			t.Errorf("refused imports changed the plan to version %d", r.Plan.Version)
		}
	})

	t.Run("delete", func(t *testing.T) {
		env.mustCall(http.StatusNoContent, "DELETE", "/v1/admin/route-plans/"+ownID, fullAdminToken, nil)
		// The account now falls back to the default plan at once.
		if r := env.resolve("number=%2B4930123456&account_id=" + shop.id); r.Plan.ID != defID {
			t.Errorf("after delete: got plan %s, want the default", r.Plan.ID)
		}
		env.mustCall(http.StatusNoContent, "DELETE", "/v1/admin/route-plans/"+defID, fullAdminToken, nil)
		a := env.call("GET", "/v1/admin/routes/resolve?number=%2B4930123456", fullAdminToken, nil)
		if code, _ := a.errorCode(); a.status != 404 || code != "not_found" {
			t.Errorf("no plan left: got %d %s", a.status, a.body)
		}
	})
}

// TestRoutePlanResolveNoMatch shows an unmatched number: 200 with no
// candidates, not an error.
func TestRoutePlanResolveNoMatch(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	p := env.mustCall(http.StatusCreated, "POST", "/v1/admin/route-plans", fullAdminToken,
		map[string]any{"name": "de only", "default": true, "time_zone": "UTC", "currency": "EUR"}).json(t)
	id, _ := p["id"].(string)
	env.importRoutesCSV(id, "", "prefix,strategy,gateways,days,from,until\n49,priority,a,mon-fri,08:00,18:00\n")
	// Saturday: the only route's band does not apply.
	r := env.resolve("number=%2B4930123456&at=" + time.Date(2026, 3, 7, 10, 0, 0, 0, time.UTC).Format(time.RFC3339))
	if r.Resolution.Matched || len(r.Resolution.Candidates) != 0 {
		t.Errorf("got %+v", r.Resolution)
	}
	r = env.resolve("number=%2B4930123456&at=2026-03-06T10:00:00Z")
	if !r.Resolution.Matched || r.order() != "a:unpriced" {
		t.Errorf("Friday: got %s", r.order())
	}
}
