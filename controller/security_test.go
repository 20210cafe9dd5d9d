package controller_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/controller"
	"callbridge/esl"
	"callbridge/esl/esltest"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
	"callbridge/webhook"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

// The security suite: every test runs a fully configured Server (every
// feature wired to a real PostgreSQL) over real HTTP, and walks the routes
// gin registered, so a new route is covered, or makes a test fail until it
// is, without anyone remembering to add it.

// Route classes by credential.
const (
	authPublic   = "public"   // no credential
	authAdmin    = "admin"    // the admin token
	authAPIKey   = "api key"  // an account's API key (some also take the admin token)
	authDialplan = "dialplan" // HTTP basic auth of mod_xml_curl
)

// openRoutes are the only routes that take no credential.
var openRoutes = map[string]bool{"/healthz": true, "/readyz": true, "/openapi.json": true}

// routeAuth says which credential a route takes, as openapi.json
// documents it; the tests then hold the server to the document. ok is
// false for an undocumented route.
func (d *apiDoc) routeAuth(method, path string) (class string, ok bool) {
	op, ok := d.Paths[openAPIPath(path)][strings.ToLower(method)]
	if !ok {
		return "", false
	}
	sec := d.Security
	if op.Security != nil {
		sec = *op.Security
	}
	has := func(name string) bool {
		return slices.ContainsFunc(sec, func(r map[string][]string) bool { _, ok := r[name]; return ok })
	}
	switch {
	case len(sec) == 0:
		return authPublic, true
	case has("dialplanBasic"):
		return authDialplan, true
	case has("apiKey"):
		return authAPIKey, true
	case has("adminToken"):
		return authAdmin, true
	}
	return "", false
}

func (e *fullEnv) routes() gin.RoutesInfo {
	return e.srv.Handler().(*gin.Engine).Routes()
}

// tenantObjects are objects a tenant created through the API: one of each
// kind a route names in its path.
type tenantObjects struct {
	tenant
	number   string // a virtual number of the pool
	binding  string
	callback string
	deck     string
	plan     string // the account's route plan
	cdr      string // a CDR's channel uuid, attributed to binding and callback
	invoice  string
	topup    string // the reference of a top-up
}

// createObjects creates one object of each kind for tn; n keeps the
// numbers of different tenants apart.
func (e *fullEnv) createObjects(tn tenant, n int) tenantObjects {
	e.t.Helper()
	o := tenantObjects{tenant: tn, number: fmt.Sprintf("4930555%04d", n)}
	o.topup = fmt.Sprint("payment-", n)
	e.mustCall(http.StatusCreated, "POST", "/v1/accounts/"+tn.id+"/topups", fullAdminToken, map[string]any{"amount_micros": 5000000, "reference": o.topup})
	e.mustCall(http.StatusCreated, "POST", "/v1/numbers", tn.key, map[string]any{"number": "+" + o.number, "gateway": "carrier", "area": "berlin"})
	b := e.mustCall(http.StatusCreated, "POST", "/v1/bindings", tn.key,
		map[string]any{"mode": "XB", "x": o.number, "b": fmt.Sprintf("+4917100%04d", n), "ttl": 3600, "external_id": fmt.Sprint("order-", n)}).json(e.t)
	o.binding, _ = b["id"].(string)
	cb := e.mustCall(http.StatusAccepted, "POST", "/v1/callbacks", tn.key,
		map[string]any{"a": fmt.Sprintf("+4930111%04d", n), "b": fmt.Sprintf("+4930222%04d", n), "metadata": map[string]any{"n": n}}).json(e.t)
	o.callback, _ = cb["id"].(string)
	d := e.mustCall(http.StatusCreated, "POST", "/v1/rate-decks", tn.key,
		map[string]any{"name": fmt.Sprint("retail ", n), "currency": "USD", "time_zone": "UTC"}).json(e.t)
	o.deck, _ = d["id"].(string)
	e.send(request{method: "POST", path: "/v1/rate-decks/" + o.deck + "/rates", auth: "Bearer " + tn.key, contentType: "text/csv",
		body: strings.NewReader(rateCSV)})

	// CDRs come from FreeSWITCH, not the API: store one as the pipeline
	// would, then issue its month's invoice as the billing job would.
	ctx := context.Background()
	start := time.Date(2026, 10, 5, 10, 0, n, 0, time.UTC)
	cdrs := postgres.NewCDRStore(e.db)
	if _, err := cdrs.EnsurePartitions(ctx, start, 1); err != nil {
		e.t.Fatal(err)
	}
	o.cdr = uuid.NewString()
	if _, err := cdrs.WriteBatch(ctx, []*callbridge.CDR{{
		UUID: o.cdr, Leg: "a", AccountID: tn.id, CallbackID: o.callback, BindingID: o.binding, Direction: "outbound",
		Caller: "4930990000", Callee: fmt.Sprintf("4930111%04d", n), Presented: "4930990000", Gateway: "carrier", Node: "fs1",
		StartAt: start, AnswerAt: start.Add(5 * time.Second), EndAt: start.Add(65 * time.Second), DurationMS: 65000, BillMS: 60000,
		HangupCause: "NORMAL_CLEARING", Q850: 16, Disposition: "answered", Sell: 12345, SellCurrency: "USD", SellDeckID: o.deck, SellPrefix: "49",
		RatedAt: start.Add(time.Minute),
	}}, nil); err != nil {
		e.t.Fatal(err)
	}
	invs, err := postgres.NewBillingStore(e.db, time.UTC, "test").IssueInvoices(ctx, 2026, time.October, tn.id, time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC))
	if err != nil || len(invs) != 1 {
		e.t.Fatalf("issue invoice: %v, %v", invs, err)
	}
	o.invoice = invs[0].ID
	rp := e.mustCall(http.StatusCreated, "POST", "/v1/admin/route-plans", fullAdminToken,
		map[string]any{"name": fmt.Sprint("routes ", n), "account_id": tn.id, "time_zone": "UTC", "currency": "USD"}).json(e.t)
	o.plan, _ = rp["id"].(string)
	e.send(request{method: "POST", path: "/v1/admin/route-plans/" + o.plan + "/routes", auth: "Bearer " + fullAdminToken, contentType: "text/csv",
		body: strings.NewReader(routeCSV)})
	if o.binding == "" || o.callback == "" || o.deck == "" || o.invoice == "" || o.plan == "" {
		e.t.Fatalf("objects of %s: %+v", tn.id, o)
	}
	return o
}

// routeCSV is a small valid route file.
const routeCSV = "prefix,description,strategy,gateways\n49,Germany,least_cost,carrier;carrier2\n"

// rateCSV is a small valid rate file.
const rateCSV = "prefix,description,band,per_minute,connect_fee,min_charge,first_increment,next_increment,days,from,until,effective_from,effective_until,priority\n" +
	"49,Germany,,0.01,0,0,60,60,all,00:00,24:00,,,0\n"

// secrets returns the strings that identify o's objects: none may appear
// in another tenant's answers.
func (o tenantObjects) secrets() []string {
	return []string{o.id, o.number, o.binding, o.callback, o.deck, o.cdr, o.invoice, o.topup}
}

// objectPaths maps route prefixes with a parameter to the object of o
// they name; routes with a parameter no prefix covers have no fixture.
func (o tenantObjects) objectPaths() map[string]string {
	return map[string]string{
		"/v1/bindings/:id":          "/v1/bindings/" + o.binding,
		"/v1/numbers/:number":       "/v1/numbers/" + o.number,
		"/v1/callbacks/:id":         "/v1/callbacks/" + o.callback,
		"/v1/rate-decks/:id":        "/v1/rate-decks/" + o.deck,
		"/v1/admin/accounts/:id":    "/v1/admin/accounts/" + o.id,
		"/v1/accounts/:id":          "/v1/accounts/" + o.id,
		"/v1/invoices/:id":          "/v1/invoices/" + o.invoice,
		"/v1/admin/route-plans/:id": "/v1/admin/route-plans/" + o.plan,
	}
}

// pathFor fills route's parameters with o's objects; ok is false when a
// parameter has no fixture. Parameters that are not objects (an API key
// to revoke) get a well-formed unknown value.
func (o tenantObjects) pathFor(route string) (string, bool) {
	p := route
	for prefix, real := range o.objectPaths() {
		if strings.HasPrefix(p, prefix) && (len(p) == len(prefix) || p[len(prefix)] == '/') {
			p = real + p[len(prefix):]
			break
		}
	}
	p = strings.ReplaceAll(p, ":key", "00000000-0000-4000-8000-000000000000")
	return p, !strings.ContainsAny(p, ":*")
}

// TestSecurityAuthentication calls every route with missing, malformed,
// wrong-scheme and revoked credentials and expects 401 with the JSON
// error shape; only /healthz, /readyz and /openapi.json are open.
func TestSecurityAuthentication(t *testing.T) {
	t.Parallel()
	// Every bad credential on every route comes from one address: the
	// limit on failed authentications (TestAuthFailuresLimitedPerAddress)
	// would answer 429 after the first few.
	env := newFullEnv(t, func(s *controller.Server) { s.AuthFailureLimit = controller.RateLimit{PerSecond: -1} })
	doc := loadAPIDoc(t)
	good := env.newTenant("good")
	revoked := env.newTenant("revoked")
	env.mustCall(http.StatusNoContent, "DELETE", "/v1/admin/accounts/"+revoked.id+"/keys/"+revoked.key, fullAdminToken, nil)
	objs := env.createObjects(good, 1)

	wrongAdmin := []byte(fullAdminToken)
	wrongAdmin[len(wrongAdmin)-1] ^= 1
	basicOf := func(u, p string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p)) }
	common := []struct{ name, auth string }{
		{"no credential", ""},
		{"empty bearer", "Bearer "},
		{"scheme only", "Bearer"},
		{"malformed key", "Bearer cbk_not-a-real-key"},
		{"not a key", "Bearer hello"},
		{"overlong key", "Bearer cbk_" + strings.Repeat("A", 4000)},
		{"sql in key", "Bearer cbk_' OR '1'='1"},
		{"revoked key", "Bearer " + revoked.key},
		{"valid key, basic scheme", basicOf(good.key, "")},
		{"wrong admin token of equal length", "Bearer " + string(wrongAdmin)},
	}
	forAdmin := append(slices.Clone(common), struct{ name, auth string }{"an account's API key", "Bearer " + good.key})
	forDialplan := append(slices.Clone(common),
		struct{ name, auth string }{"wrong password", basicOf(fullDialplanUser, fullDialplanPass+"x")},
		struct{ name, auth string }{"wrong user", basicOf(fullDialplanUser+"x", fullDialplanPass)},
		struct{ name, auth string }{"API key", "Bearer " + good.key},
		struct{ name, auth string }{"admin token", "Bearer " + fullAdminToken})

	for _, r := range env.routes() {
		class, ok := doc.routeAuth(r.Method, r.Path)
		if !ok {
			t.Errorf("%s %s: not documented, so its credential is unknown", r.Method, r.Path)
			continue
		}
		path, ok := objs.pathFor(r.Path)
		if !ok {
			t.Errorf("%s %s: no fixture for its path parameters; add one to objectPaths", r.Method, r.Path)
			continue
		}
		t.Run(r.Method+" "+r.Path, func(t *testing.T) {
			creds := common
			switch class {
			case authPublic:
				if !openRoutes[r.Path] {
					t.Errorf("documented as open, but only %v may be", slices.Sorted(maps.Keys(openRoutes)))
				}
				a := env.send(request{method: r.Method, path: path})
				if a.status == http.StatusUnauthorized || a.status >= 500 {
					t.Errorf("open route answered %d", a.status)
				}
				return
			case authAdmin:
				creds = forAdmin
			case authDialplan:
				creds = forDialplan
			}
			for _, c := range creds {
				body, ct := "{}", "application/json"
				if class == authDialplan {
					body, ct = "section=dialplan", "application/x-www-form-urlencoded"
				}
				a := env.send(request{method: r.Method, path: path, auth: c.auth, contentType: ct, body: strings.NewReader(body)})
				if a.status != http.StatusUnauthorized {
					t.Errorf("%s: got %d, want 401: %.300s", c.name, a.status, a.body)
					continue
				}
				if class == authDialplan {
					if a.header.Get("WWW-Authenticate") == "" {
						t.Errorf("%s: 401 without WWW-Authenticate", c.name)
					}
					continue
				}
				if code, _ := a.errorCode(); code != "unauthorized" {
					t.Errorf("%s: error code %q, want unauthorized: %.300s", c.name, code, a.body)
				}
				doc.checkAnswer(t, r.Method, r.Path, a)
			}
		})
	}
}

// TestSecurityTenantIsolation has account A create one object of every
// kind through the API, then uses account B's key on every route that
// names an object: B gets 404 (never data, never 403), A's objects are
// unchanged, and no list or lookup B can make shows A's objects.
func TestSecurityTenantIsolation(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	doc := loadAPIDoc(t)
	a := env.createObjects(env.newTenant("a"), 1)
	b := env.createObjects(env.newTenant("b"), 2)

	// Bodies B sends to A's objects: valid in form, so only ownership can
	// refuse them.
	bodies := map[string]request{
		"PATCH /v1/bindings/:id":           {body: strings.NewReader(`{"record":true,"ttl":600}`), contentType: "application/json"},
		"PATCH /v1/numbers/:number":        {body: strings.NewReader(`{"area":"stolen","enabled":false}`), contentType: "application/json"},
		"POST /v1/rate-decks/:id/rates":    {body: strings.NewReader(rateCSV), contentType: "text/csv"},
		"DELETE /v1/bindings/:id":          {},
		"DELETE /v1/numbers/:number":       {},
		"DELETE /v1/callbacks/:id":         {},
		"GET /v1/rate-decks/:id/rates":     {},
		"GET /v1/bindings/:id/events":      {},
		"GET /v1/bindings/:id":             {},
		"GET /v1/numbers/:number":          {},
		"GET /v1/callbacks/:id":            {},
		"GET /v1/rate-decks/:id":           {},
		"GET /v1/rate-decks/:id/rates#csv": {header: map[string]string{"Accept": "text/csv"}},
		"GET /v1/invoices/:id":             {},
		"GET /v1/invoices/:id#csv":         {header: map[string]string{"Accept": "text/csv"}},
		"GET /v1/invoices/:id#html":        {header: map[string]string{"Accept": "text/html"}},
	}
	leaks := func(t *testing.T, what string, ans answer, sent ...string) {
		t.Helper()
		for _, s := range a.secrets() {
			if bytes.Contains(ans.body, []byte(s)) && !slices.Contains(sent, s) {
				t.Errorf("%s: B's answer contains A's %q: %.300s", what, s, ans.body)
			}
		}
	}

	for _, r := range env.routes() {
		class, _ := doc.routeAuth(r.Method, r.Path)
		if class != authAPIKey {
			continue
		}
		key := r.Method + " " + r.Path
		if !strings.Contains(r.Path, ":") {
			continue // lists and creations: below
		}
		path, ok := a.pathFor(r.Path)
		if !ok {
			t.Errorf("%s: no fixture for its path parameters; add one to objectPaths", key)
			continue
		}
		for _, variant := range []string{"", "#csv", "#html"} {
			req, ok := bodies[key+variant]
			if !ok {
				if variant == "" {
					t.Errorf("%s: no isolation request; add one to bodies", key)
				}
				continue
			}
			t.Run(key+variant, func(t *testing.T) {
				req.method, req.path, req.auth = r.Method, path, "Bearer "+b.key
				ans := env.send(req)
				if ans.status != http.StatusNotFound {
					t.Errorf("B's key: got %d, want 404: %.300s", ans.status, ans.body)
				}
				if code, _ := ans.errorCode(); code != "not_found" {
					t.Errorf("B's key: error code %q, want not_found", code)
				}
				leaks(t, key, ans)
				doc.checkAnswer(t, r.Method, r.Path, ans)
			})
		}
	}

	// Lists, lookups by query and creations that reference A's objects.
	// A phone number is in one pool at most, so adding A's number to B's
	// pool is a conflict that names the number B sent, and nothing else.
	probes := []struct {
		method, path, body string
		want               []int
		sent               []string
	}{
		{"GET", "/v1/account", "", []int{200}, nil},
		{"GET", "/v1/numbers", "", []int{200}, nil},
		{"GET", "/v1/numbers?area=berlin&limit=500", "", []int{200}, nil},
		{"GET", "/v1/bindings", "", []int{200}, nil},
		{"GET", "/v1/bindings?x=" + a.number, "", []int{200}, nil},
		{"GET", "/v1/bindings?number=%2B49171000001", "", []int{200}, nil},
		{"GET", "/v1/bindings?external_id=order-1", "", []int{200}, nil},
		{"GET", "/v1/callbacks", "", []int{200}, nil},
		{"GET", "/v1/callbacks?limit=500", "", []int{200}, nil},
		{"GET", "/v1/webhooks", "", []int{200}, nil},
		{"GET", "/v1/webhooks?callback_id=" + a.callback, "", []int{200}, nil},
		{"GET", "/v1/rate-decks", "", []int{200}, nil},
		{"GET", "/v1/rate-decks?account_id=" + a.id, "", []int{200}, nil},
		{"GET", "/v1/rates/quote?number=%2B4930123456&deck=" + a.deck, "", []int{404}, nil},
		{"GET", "/v1/cdrs", "", []int{200}, nil},
		{"GET", "/v1/cdrs?callback_id=" + a.callback, "", []int{200}, nil},
		{"GET", "/v1/cdrs?binding_id=" + a.binding, "", []int{200}, nil},
		{"GET", "/v1/cdrs?number=%2B49301110001&from=2026-10-01T00:00:00Z", "", []int{200}, nil},
		{"GET", "/v1/reports/usage?from=2026-10-01&to=2026-11-01", "", []int{200}, nil},
		{"GET", "/v1/reports/usage?from=2026-10-01&to=2026-11-01&group_by=binding", "", []int{200}, nil},
		{"GET", "/v1/reports/usage?from=2026-10-01&to=2026-11-01&group_by=destination&format=csv", "", []int{200}, nil},
		{"GET", "/v1/invoices", "", []int{200}, nil},
		{"GET", "/v1/balance", "", []int{200}, nil},
		{"GET", "/v1/ledger", "", []int{200}, nil},
		{"POST", "/v1/bindings", `{"mode":"XB","x":"` + a.number + `","b":"+4917199999","ttl":3600}`, []int{404, 409}, nil},
		{"POST", "/v1/numbers", `{"number":"+` + a.number + `","gateway":"carrier"}`, []int{409}, []string{a.number}},
		{"POST", "/v1/callbacks", `{"a":"+4930111999","b":"+4930222999"}`, []int{202}, nil},
		{"POST", "/v1/rate-decks", `{"name":"x","currency":"USD","time_zone":"UTC","account_id":"` + a.id + `"}`, []int{400}, nil},
	}
	covered := map[string]bool{}
	for _, p := range probes {
		u, _ := url.Parse(p.path)
		covered[p.method+" "+u.Path] = true
		t.Run(p.method+" "+p.path, func(t *testing.T) {
			var body any
			if p.body != "" {
				body = p.body
			}
			ans := env.call(p.method, p.path, b.key, body)
			if !slices.Contains(p.want, ans.status) {
				t.Errorf("B's key: got %d, want one of %v: %.300s", ans.status, p.want, ans.body)
			}
			leaks(t, p.path, ans, p.sent...)
			doc.checkAnswer(t, p.method, u.Path, ans)
		})
	}
	for _, r := range env.routes() {
		if class, _ := doc.routeAuth(r.Method, r.Path); class == authAPIKey && !strings.Contains(r.Path, ":") && !covered[r.Method+" "+r.Path] {
			t.Errorf("%s %s: no isolation probe; add one to probes", r.Method, r.Path)
		}
	}

	// B's own objects are listed to B (the probes above saw real lists),
	// and A's objects are untouched by B's attempts.
	if ans := env.mustCall(200, "GET", "/v1/bindings", b.key, nil); !bytes.Contains(ans.body, []byte(b.binding)) {
		t.Errorf("B does not see its own binding: %.300s", ans.body)
	}
	n := env.mustCall(200, "GET", "/v1/numbers/"+a.number, a.key, nil).json(t)
	if n["area"] != "berlin" || n["enabled"] != true {
		t.Errorf("A's number was changed by B: %v", n)
	}
	bd := env.mustCall(200, "GET", "/v1/bindings/"+a.binding, a.key, nil).json(t)
	if bd["status"] != "active" || bd["record"] != false {
		t.Errorf("A's binding was changed by B: %v", bd)
	}
	cb := env.mustCall(200, "GET", "/v1/callbacks/"+a.callback, a.key, nil).json(t)
	if cb["status"] != "queued" || cb["cancel_requested"] == true {
		t.Errorf("A's callback was changed by B: %v", cb)
	}
	rates := env.mustCall(200, "GET", "/v1/rate-decks/"+a.deck+"/rates", a.key, nil).json(t)
	if rs, _ := rates["rates"].([]any); len(rs) != 1 {
		t.Errorf("A's deck rates were changed by B: %v", rates["rates"])
	}
}

// jsonCases are malformed bodies every JSON route must refuse with 400.
var jsonCases = []struct{ name, body string }{
	{"trailing garbage", `{} x`},
	{"two objects", `{}{}`},
	{"trailing bracket", `{}]`},
	{"truncated", `{"a":`},
	{"array", `[]`},
	{"string", `"x"`},
	{"number", `42`},
	{"invalid UTF-8", "{\"name\":\"\xff\xfe\"}"},
	{"invalid UTF-8 key", "{\"\xc0\xaf\":1}"},
	{"empty", ``},
	{"deep nesting", `{"a":` + strings.Repeat(`[`, 12000) + strings.Repeat(`]`, 12000) + `}`},
}

// wrongTypes are values of the wrong JSON type for each schema type.
var wrongTypes = map[string][]string{
	"string":  {`12345`, `true`, `{}`, `["x"]`, `1e400`},
	"integer": {`"12"`, `1.5`, `true`, `[]`, `1e400`, `18446744073709551616`, `-9223372036854775809`, `9223372036854775808`, `1e19`},
	"boolean": {`"true"`, `1`, `{}`},
	"array":   {`"x"`, `{}`, `1`},
	"object":  {`"x"`, `[]`, `1`},
}

// hostileNumbers are phone numbers that must never pass: digits of other
// scripts, control characters, and dial-string syntax.
var hostileNumbers = []string{
	"٤٩٣٠١٢٣٤٥٦٧",                                // Arabic-Indic digits
	"４９３０１２３４５６７",                                // fullwidth digits
	"४९३०१२३४५६७",                                // Devanagari digits
	"+49 30 1234\u00a0567",                       // no-break space
	"+4930\u202e1234567",                         // right-to-left override
	"+4930123456\x00",                            // NUL
	"4930123456;hangup",                          // ESL command separator
	"4930123456|sofia/gw/666",                    // dial-string alternatives
	"sip:4930123456@evil",                        // a SIP URI
	"{origination_caller_id_number=1}4930123456", // channel variables
	"4930123456</action>",                        // XML
	strings.Repeat("9", 40),                      // too long
}

// validBodies are accepted bodies of each JSON route, which the input
// tests change one field at a time.
func validBodies(o tenantObjects) map[string]map[string]any {
	return map[string]map[string]any{
		"POST /v1/admin/accounts":      {"name": "n", "service_number": "+4930990001", "currency": "EUR", "hide_caller_id": true, "prepaid": false},
		"POST /v1/numbers":             {"number": "+4930556677", "gateway": "carrier", "area": "x", "labels": []string{"a"}, "enabled": true},
		"PATCH /v1/numbers/:number":    {"gateway": "carrier", "area": "x", "labels": []string{"a"}, "enabled": true},
		"POST /v1/bindings":            {"mode": "AXB", "x": o.number, "area": "berlin", "a": "+4917000001", "b": "+4917000002", "ttl": 3600, "record": false, "caller_display": "x", "external_id": "e", "webhook_url": "https://example.com/h"},
		"PATCH /v1/bindings/:id":       {"a": "+4917000003", "b": "+4917000004", "ttl": 3600, "record": true},
		"POST /v1/callbacks":           {"a": "+4930111222", "b": "+4930333444", "caller_id_a": "+4930990000", "caller_id_b": "+4930990000", "ring_timeout_a": 30, "ring_timeout_b": 30, "max_duration": 600, "prompt": "none", "record": false, "webhook_url": "https://example.com/h", "metadata": map[string]any{}},
		"POST /v1/accounts/:id/topups": {"amount_micros": 1000, "reference": "r"},
		"POST /v1/admin/invoices":      {"month": "2026-10", "account_id": o.id, "draft": true},
		"PUT /v1/admin/accounts/:id/billing": {"issuer": "default", "tax_bps": 1900, "tax_label": "VAT 19%", "payment_days": 30, "low_balance_micros": 1000, "low_balance_url": "https://example.com/low",
			"missing_hangup": "max_duration", "customer_name": "Acme GmbH", "customer_address": "Hauptstr. 1\n10115 Berlin", "customer_tax_number": "DE123456789"},
		"POST /v1/admin/route-plans": {"name": "p", "default": false, "time_zone": "UTC", "currency": "EUR", "max_attempts": 3, "post_dial_ms": 30000,
			"failover_causes": []string{"GATEWAY_DOWN"}, "failover_sip_codes": []int{503}},
		"PATCH /v1/admin/route-plans/:id": {"account_id": o.id, "name": "p", "default": false, "time_zone": "UTC", "currency": "USD", "max_attempts": 3,
			"post_dial_ms": 30000, "failover_causes": []string{"GATEWAY_DOWN"}, "failover_sip_codes": []int{503}},
		"POST /v1/rate-decks": {"account_id": o.id, "name": "d", "currency": "USD", "time_zone": "UTC", "precision": 6, "rounding": "up", "short_ms": 0, "holidays": []string{}, "effective_from": "2026-01-01T00:00:00Z"},
	}
}

// leftOut are documented fields validBodies leaves out on purpose.
var leftOut = map[string]bool{
	"POST /v1/rate-decks gateway":           true, // the admin's only
	"POST /v1/admin/route-plans account_id": true, // the account has its plan (createObjects)
	"POST /v1/bindings expires_at":          true, // the body gives ttl, and not both
	"PATCH /v1/bindings/:id expires_at":     true,
}

// TestSecurityInputHardening sends every POST and PATCH route bodies over
// the size cap (413) and, when it takes JSON, malformed JSON, unknown
// fields, values of the wrong type, huge numbers and hostile phone numbers
// (400, naming the field). Fields come from openapi.json, so a documented
// field is a tested field.
func TestSecurityInputHardening(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, func(s *controller.Server) { s.MaxBodyBytes, s.MaxCSVBytes = 64<<10, 64<<10 })
	doc := loadAPIDoc(t)
	tn := env.newTenant("hardening")
	o := env.createObjects(tn, 1)
	bases := validBodies(o)
	tooBig := `{"name":"` + strings.Repeat("x", 64<<10) + `"}`
	var csvRows strings.Builder
	csvRows.WriteString(rateCSV)
	for i := 0; csvRows.Len() <= 64<<10; i++ {
		fmt.Fprintf(&csvRows, "49%d,Row,,0.01,0,0,60,60,all,00:00,24:00,,,0\n", 100000+i)
	}
	tooBigCSV := csvRows.String()
	var routeRows strings.Builder
	routeRows.WriteString(routeCSV)
	for i := 0; routeRows.Len() <= 64<<10; i++ {
		fmt.Fprintf(&routeRows, "49%d,Row,priority,carrier\n", 100000+i)
	}
	tooBigRouteCSV := routeRows.String()

	for _, r := range env.routes() {
		if r.Method != "POST" && r.Method != "PATCH" && r.Method != "PUT" {
			continue
		}
		class, _ := doc.routeAuth(r.Method, r.Path)
		token := tn.key
		switch class {
		case authAdmin:
			token = fullAdminToken
		case authDialplan, authPublic:
			continue // the form endpoint has its own tests (fsdialplan_test.go)
		}
		path, ok := o.pathFor(r.Path)
		if !ok {
			t.Errorf("%s %s: no fixture for its path parameters", r.Method, r.Path)
			continue
		}
		key := r.Method + " " + r.Path
		op := doc.Paths[openAPIPath(r.Path)][strings.ToLower(r.Method)]
		ct := "application/json"
		if op.RequestBody != nil && op.RequestBody.Content["text/csv"].Schema != nil {
			ct = "text/csv"
		}
		big, sample := tooBig, rateCSV
		switch {
		case ct == "text/csv" && strings.Contains(r.Path, "/route-plans/"):
			big, sample = tooBigRouteCSV, routeCSV
		case ct == "text/csv":
			big = tooBigCSV
		}
		send := func(body string, length int64) answer {
			return env.send(request{method: r.Method, path: path, auth: "Bearer " + token, contentType: ct,
				body: strings.NewReader(body), contentLength: length})
		}
		t.Run(key, func(t *testing.T) {
			expect := func(what string, ans answer, status int, field string) {
				t.Helper()
				if ans.status != status {
					t.Errorf("%s: got %d, want %d: %.300s", what, ans.status, status, ans.body)
					return
				}
				if _, got := ans.errorCode(); field != "" && got != field {
					t.Errorf("%s: field %q, want %q: %.300s", what, got, field, ans.body)
				}
				doc.checkAnswer(t, r.Method, r.Path, ans)
			}
			expect("over the cap, with Content-Length", send(big, int64(len(big))), http.StatusRequestEntityTooLarge, "")
			if op.RequestBody == nil {
				return // reads no body
			}
			expect("over the cap, chunked", send(big, -1), http.StatusRequestEntityTooLarge, "")
			if ct != "application/json" {
				expect("JSON instead of CSV", env.send(request{method: r.Method, path: path, auth: "Bearer " + token,
					contentType: "application/json", body: strings.NewReader(`{}`)}), http.StatusBadRequest, "")
				expect("invalid UTF-8 CSV", send(strings.Replace(sample, "Germany", "G\xffermany", 1), 0), http.StatusBadRequest, "")
				return
			}
			for _, c := range jsonCases {
				expect(c.name, send(c.body, 0), http.StatusBadRequest, "")
			}
			expect("wrong Content-Type", env.send(request{method: r.Method, path: path, auth: "Bearer " + token,
				contentType: "text/plain", body: strings.NewReader(`{}`)}), http.StatusBadRequest, "")
			expect("unknown field", send(`{"zz_unknown":1}`, 0), http.StatusBadRequest, "zz_unknown")

			s := doc.jsonBody(r.Method, openAPIPath(r.Path))
			base, ok := bases[key]
			if !ok {
				t.Errorf("no valid body in validBodies")
				return
			}
			for name, ps := range s.Properties {
				if _, ok := base[name]; !ok && ps.Ref != "#/components/schemas/Rate" && !leftOut[key+" "+name] {
					t.Errorf("validBodies has no %q, which openapi.json documents", name)
				}
				isPhone := ps.Ref == "#/components/schemas/PhoneNumber"
				ps = doc.resolve(ps)
				// decodeJSON names the field of a wrong type, also for
				// types with their own UnmarshalJSON such as time.Time.
				field := name
				for _, v := range wrongTypes[ps.Type] {
					expect(fmt.Sprintf("%s=%s", name, v), send(`{"`+name+`":`+v+`}`, 0), http.StatusBadRequest, field)
				}
				if !isPhone {
					continue
				}
				for _, bad := range hostileNumbers {
					body := map[string]any{}
					for k, v := range base {
						body[k] = v
					}
					body[name] = bad
					expect(fmt.Sprintf("%s=%q", name, bad), env.call(r.Method, path, token, body), http.StatusBadRequest, name)
				}
			}
		})
	}
}

// TestSecurityHostileQueryNumbers sends hostile phone numbers in every
// documented query parameter that takes one.
func TestSecurityHostileQueryNumbers(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	doc := loadAPIDoc(t)
	tn := env.newTenant("query")
	n := 0
	for path, ops := range doc.Paths {
		for method, op := range ops {
			for _, p := range op.Parameters {
				p = doc.param(p)
				if p.In != "query" || p.Schema == nil || p.Schema.Ref != "#/components/schemas/PhoneNumber" {
					continue
				}
				token, target := tn.key, path
				if class, _ := doc.routeAuth(method, path); class == authAdmin {
					token, target = fullAdminToken, strings.Replace(path, "/v1/admin/accounts/{id}", "/v1/admin/accounts/"+tn.id, 1)
				}
				for _, bad := range hostileNumbers {
					n++
					ans := env.call(strings.ToUpper(method), target+"?"+p.Name+"="+url.QueryEscape(bad), token, nil)
					if ans.status != http.StatusBadRequest {
						t.Errorf("%s %s?%s=%q: got %d, want 400: %.300s", method, path, p.Name, bad, ans.status, ans.body)
						continue
					}
					if _, f := ans.errorCode(); f != p.Name {
						t.Errorf("%s %s?%s=%q: field %q, want %q", method, path, p.Name, bad, f, p.Name)
					}
				}
			}
		}
	}
	if n == 0 {
		t.Error("openapi.json documents no query parameter that is a phone number")
	}
}

// TestSecurityAPIKeys checks that API keys are shown once, stored only
// as digests (no column of any table holds a key), work until revoked,
// and are revoked at once by value or by id.
func TestSecurityAPIKeys(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	tn := env.newTenant("keys")
	other := env.newTenant("other")
	second, _ := env.mustCall(http.StatusCreated, "POST", "/v1/admin/accounts/"+tn.id+"/keys", fullAdminToken, nil).json(t)["api_key"].(string)
	if !strings.HasPrefix(second, "cbk_") || second == tn.key {
		t.Fatalf("second key: %q", second)
	}
	env.createObjects(tn, 1) // fill the tables the key might leak into

	// Not in any answer after creation.
	for _, p := range []struct{ path, token string }{
		{"/v1/admin/accounts/" + tn.id, fullAdminToken},
		{"/v1/account", tn.key},
	} {
		if ans := env.mustCall(200, "GET", p.path, p.token, nil); bytes.Contains(ans.body, []byte(tn.key)) || bytes.Contains(ans.body, []byte(second)) {
			t.Errorf("GET %s shows an API key: %s", p.path, ans.body)
		}
	}

	// Not in any column of any table, in any encoding.
	ctx := context.Background()
	var cols []struct {
		Schema string `db:"table_schema"`
		Table  string `db:"table_name"`
		Column string `db:"column_name"`
	}
	if err := pgtest.Select(ctx, env.db, &cols, `SELECT c.table_schema, c.table_name, c.column_name
		FROM information_schema.columns c JOIN information_schema.tables t USING (table_schema, table_name)
		WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema') AND t.table_type = 'BASE TABLE'`); err != nil {
		t.Fatal(err)
	}
	if len(cols) < 10 {
		t.Fatalf("found only %d columns to search", len(cols))
	}
	var needles []string
	for _, k := range []string{tn.key, second} {
		secret := strings.TrimPrefix(k, "cbk_")
		needles = append(needles, secret, secret[8:], hex.EncodeToString([]byte(k)), hex.EncodeToString([]byte(secret)))
	}
	for _, c := range cols {
		q := fmt.Sprintf(`SELECT count(*) FROM %q.%q WHERE strpos(%q::text, $1) > 0`, c.Schema, c.Table, c.Column)
		for _, n := range needles {
			var hits int
			if err := pgtest.Get(ctx, env.db, &hits, q, n); err != nil {
				t.Fatalf("%s.%s: %v", c.Table, c.Column, err)
			}
			if hits > 0 {
				t.Errorf("%s.%s holds an API key in clear", c.Table, c.Column)
			}
		}
	}

	// Revocation by value, then by id; other keys and accounts unaffected.
	env.mustCall(http.StatusNotFound, "DELETE", "/v1/admin/accounts/"+other.id+"/keys/"+tn.key, fullAdminToken, nil)
	env.mustCall(http.StatusOK, "GET", "/v1/account", tn.key, nil)
	env.mustCall(http.StatusNoContent, "DELETE", "/v1/admin/accounts/"+tn.id+"/keys/"+tn.key, fullAdminToken, nil)
	env.mustCall(http.StatusUnauthorized, "GET", "/v1/account", tn.key, nil)
	env.mustCall(http.StatusOK, "GET", "/v1/account", second, nil)
	var keys []struct {
		ID        string     `db:"id"`
		Prefix    string     `db:"prefix"`
		RevokedAt *time.Time `db:"revoked_at"`
	}
	if err := pgtest.Select(ctx, env.db, &keys, `SELECT id, prefix, revoked_at FROM api_keys WHERE account_id = $1 ORDER BY created_at`, tn.id); err != nil {
		t.Fatal(err)
	}
	var secondID string
	for _, k := range keys {
		if k.RevokedAt == nil {
			secondID = k.ID
		}
		if strings.HasPrefix(second, k.Prefix) && len(k.Prefix) > 12 {
			t.Errorf("stored prefix %q reveals too much of the key", k.Prefix)
		}
	}
	env.mustCall(http.StatusNoContent, "DELETE", "/v1/admin/accounts/"+tn.id+"/keys/"+secondID, fullAdminToken, nil)
	env.mustCall(http.StatusUnauthorized, "GET", "/v1/account", second, nil)
	env.mustCall(http.StatusOK, "GET", "/v1/account", other.key, nil)
}

// TestSecurityAdminToken checks near-miss admin tokens are refused. That
// the comparison takes constant time is checked by reading adminOnly and
// adminOrAccount (crypto/subtle.ConstantTimeCompare, which leaks only the
// length) and fsDialplan (digests compared with ConstantTimeCompare); a
// timing test would be flaky on shared machines.
func TestSecurityAdminToken(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	flip := func(i int) string {
		b := []byte(fullAdminToken)
		b[i] = map[bool]byte{true: 'Z', false: 'z'}[b[i] == 'z']
		return string(b)
	}
	wrong := []string{
		flip(0), flip(len(fullAdminToken) / 2), flip(len(fullAdminToken) - 1),
		strings.Repeat("x", len(fullAdminToken)),
		fullAdminToken[:len(fullAdminToken)-1], fullAdminToken + "x", " " + fullAdminToken + "x",
		strings.ToUpper(fullAdminToken),
	}
	for _, tok := range wrong {
		for _, p := range []struct{ method, path string }{
			{"POST", "/v1/admin/accounts"}, {"GET", "/metrics"}, {"GET", "/v1/rate-decks"},
		} {
			if ans := env.call(p.method, p.path, tok, `{"name":"x"}`); ans.status != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: got %d, want 401", p.method, p.path, tok, ans.status)
			}
		}
	}
	env.mustCall(http.StatusCreated, "POST", "/v1/admin/accounts", fullAdminToken, `{"name":"x"}`)
	env.mustCall(http.StatusOK, "GET", "/metrics", fullAdminToken, nil)
	env.mustCall(http.StatusOK, "GET", "/v1/rate-decks", fullAdminToken, nil)

	// With no token configured the admin API is closed, even to an empty
	// bearer.
	closed := newFullEnv(t, func(s *controller.Server) { s.AdminToken = "" })
	for _, tok := range []string{"", " ", fullAdminToken} {
		if ans := closed.call("POST", "/v1/admin/accounts", tok, `{"name":"x"}`); ans.status != http.StatusUnauthorized {
			t.Errorf("no admin token configured, token %q: got %d, want 401", tok, ans.status)
		}
	}
}

// TestSecuritySecretsNotLogged runs requests carrying API keys (valid,
// revoked, near-miss, in the path and the query), the admin token and the
// dialplan credential through a server logging at debug level, and
// checks that none of them reaches the log.
func TestSecuritySecretsNotLogged(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	tn := env.newTenant("logs")
	spare := env.newTenant("spare")
	o := env.createObjects(tn, 1)
	nearMiss := tn.key[:len(tn.key)-1] + "x"
	basicAuth := base64.StdEncoding.EncodeToString([]byte(fullDialplanUser + ":" + fullDialplanPass))
	wrongAdmin := fullAdminToken[:len(fullAdminToken)-1] + "x"

	requests := []request{
		{method: "GET", path: "/v1/account", auth: "Bearer " + tn.key},
		{method: "GET", path: "/v1/account?api_key=" + url.QueryEscape(tn.key), auth: "Bearer " + tn.key},
		{method: "GET", path: "/v1/account", auth: "Bearer " + nearMiss},
		{method: "GET", path: "/v1/bindings/" + o.binding, auth: "Bearer " + tn.key},
		{method: "POST", path: "/v1/callbacks", auth: "Bearer " + tn.key, contentType: "application/json",
			body: strings.NewReader(`{"a":"+4930111222","b":"` + tn.key + `"}`)},
		{method: "POST", path: "/v1/admin/accounts", auth: "Bearer " + fullAdminToken, contentType: "application/json", body: strings.NewReader(`{"name":"x"}`)},
		{method: "POST", path: "/v1/admin/accounts", auth: "Bearer " + wrongAdmin, contentType: "application/json", body: strings.NewReader(`{"name":"x"}`)},
		{method: "GET", path: "/metrics", auth: "Bearer " + fullAdminToken},
		{method: "POST", path: "/fs/dialplan", auth: "Basic " + basicAuth, contentType: "application/x-www-form-urlencoded",
			body: strings.NewReader("section=dialplan&Caller-Destination-Number=" + o.number + "&Caller-Caller-ID-Number=4930123456&Hunt-Destination-Number=" + o.number)},
		{method: "POST", path: "/fs/dialplan", auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(fullDialplanUser+":"+fullDialplanPass+"x")),
			contentType: "application/x-www-form-urlencoded", body: strings.NewReader("section=dialplan")},
		{method: "DELETE", path: "/v1/admin/accounts/" + spare.id + "/keys/" + spare.key, auth: "Bearer " + fullAdminToken},
		{method: "GET", path: "/v1/account", auth: "Bearer " + spare.key},
	}
	for _, r := range requests {
		env.send(r)
	}
	logs := env.logs.String()
	if got := strings.Count(logs, `"msg":"http request"`); got < len(requests) {
		t.Fatalf("the log has %d request lines for %d requests; is it capturing? %.500s", got, len(requests), logs)
	}
	for name, secret := range map[string]string{
		"API key": tn.key, "API key body": strings.TrimPrefix(tn.key, "cbk_"), "near-miss key": nearMiss,
		"revoked key": spare.key, "admin token": fullAdminToken, "wrong admin token": wrongAdmin,
		"dialplan password": fullDialplanPass, "basic credential": basicAuth,
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains the %s", name)
		}
	}
}

// TestSecurityRateLimit checks the per-key limit: a burst, then 429 with
// Retry-After and the JSON error shape; each key has its own bucket,
// shared by every /v1 route; requests without a valid key are refused
// before they can use any bucket.
func TestSecurityRateLimit(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, func(s *controller.Server) { s.RateLimit = controller.RateLimit{PerSecond: 0.01, Burst: 3} })
	doc := loadAPIDoc(t)
	a := env.newTenant("a")
	b := env.newTenant("b")
	second, _ := env.mustCall(http.StatusCreated, "POST", "/v1/admin/accounts/"+a.id+"/keys", fullAdminToken, nil).json(t)["api_key"].(string)

	for i := range 3 {
		if ans := env.call("GET", "/v1/account", a.key, nil); ans.status != http.StatusOK {
			t.Fatalf("request %d of the burst: got %d", i+1, ans.status)
		}
	}
	for _, p := range []string{"/v1/account", "/v1/rate-decks", "/v1/bindings"} {
		ans := env.call("GET", p, a.key, nil)
		if ans.status != http.StatusTooManyRequests {
			t.Errorf("%s past the burst: got %d, want 429", p, ans.status)
			continue
		}
		if code, _ := ans.errorCode(); code != "rate_limited" {
			t.Errorf("%s: error code %q, want rate_limited", p, code)
		}
		if s, err := strconv.Atoi(ans.header.Get("Retry-After")); err != nil || s < 1 || s > 100 {
			t.Errorf("%s: Retry-After %q, want 1 to 100 seconds", p, ans.header.Get("Retry-After"))
		}
		doc.checkAnswer(t, "GET", p, ans)
	}
	for _, k := range []string{second, b.key} {
		env.mustCall(http.StatusOK, "GET", "/v1/account", k, nil)
	}
	for _, auth := range []string{"", "cbk_wrong"} {
		env.mustCall(http.StatusUnauthorized, "GET", "/v1/account", auth, nil)
	}
	for range 5 {
		env.mustCall(http.StatusOK, "GET", "/v1/admin/accounts/"+a.id, fullAdminToken, nil)
	}
}

// roundTripFunc is an http.RoundTripper of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestSecurityOperatorSecretsNotLogged runs the ESL client against the
// simulator with a wrong and then the right password, and the webhook
// deliverer against a failing receiver, all logging at debug level, and
// checks that neither the ESL password nor the webhook secret is logged.
func TestSecurityOperatorSecretsNotLogged(t *testing.T) {
	t.Parallel()
	const (
		eslPassword   = "esl-Pa55-4c1d9e7f3b5a7c9e1f3a5b7d"
		wrongPassword = "esl-Pa55-4c1d9e7f3b5a7c9e1f3a5b7X"
		webhookSecret = "whsec-8e2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c"
	)
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fs := esltest.NewUnstartedServer()
	fs.Password = eslPassword
	fs.Start()
	t.Cleanup(fs.Close)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run := func(c *esl.Client) chan error {
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		return done
	}
	wrong := esl.NewClient(esl.Config{Name: "wrong", Addr: fs.Addr(), Password: wrongPassword, BackoffMin: time.Millisecond, BackoffMax: 20 * time.Millisecond, Logger: log})
	wrongDone := run(wrong)
	wait.For(t, "the wrong password was refused twice", func() bool { st := wrong.Stats(); return st.Redials >= 2 && st.LastError != "" })
	right := esl.NewClient(esl.Config{Name: "right", Addr: fs.Addr(), Password: eslPassword, Logger: log})
	rightDone := run(right)
	wait.For(t, "the right password was accepted", func() bool { return right.State() == esl.StateConnected })

	// A webhook that fails: the deliverer logs the failure.
	env := newFullEnv(t, nil)
	tn := env.newTenant("hooks")
	env.mustCall(http.StatusAccepted, "POST", "/v1/callbacks", tn.key, map[string]any{"a": "+4930111222", "b": "+4930333444", "webhook_url": "https://hooks.example.com/cb"})
	posted := make(chan struct{}, 100)
	d := webhook.NewDeliverer(postgres.NewWebhookService(env.db), webhook.Config{
		Secret: []byte(webhookSecret), PollInterval: 10 * time.Millisecond, Logger: log,
		Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			posted <- struct{}{}
			return &http.Response{StatusCode: http.StatusInternalServerError, Body: io.NopCloser(strings.NewReader("receiver error")), Header: http.Header{}, Request: r}, nil
		}),
	})
	hookDone := make(chan error, 1)
	go func() { hookDone <- d.Run(ctx) }()
	select {
	case <-posted:
	case <-time.After(30 * time.Second):
		t.Fatal("the deliverer posted nothing")
	}
	wait.For(t, "the failed delivery was logged", func() bool { return strings.Contains(logs.String(), "webhook attempt failed") })

	cancel()
	for _, done := range []chan error{wrongDone, rightDone, hookDone} {
		<-done
	}
	out := logs.String()
	if !strings.Contains(out, "wrong") || !strings.Contains(out, "right") {
		t.Fatalf("the ESL clients logged nothing: %.500s", out)
	}
	for name, secret := range map[string]string{"ESL password": eslPassword, "wrong ESL password": wrongPassword, "webhook secret": webhookSecret} {
		if strings.Contains(out, secret) {
			t.Errorf("the log contains the %s", name)
		}
	}
}

// TestSecurityHostileTextInExports puts text an attacker controls (rate
// descriptions an account imports, caller ids a SIP peer sends) into every
// export: HTML invoices must escape it, and CSV files (invoices, usage,
// CDRs) must not let a cell start a spreadsheet formula.
func TestSecurityHostileTextInExports(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	tn := env.newTenant("exports")
	const (
		script  = `<script>alert(1)</script>`
		formula = `=HYPERLINK("http://evil.example","x")`
	)
	deck, _ := env.mustCall(http.StatusCreated, "POST", "/v1/rate-decks", tn.key,
		map[string]any{"name": "hostile", "currency": "USD", "time_zone": "UTC"}).json(t)["id"].(string)
	rates := "prefix,description,per_minute,first_increment,next_increment\n" +
		`49,"` + script + `",0.01,60,60` + "\n" +
		`4915,"` + strings.ReplaceAll(formula, `"`, `""`) + `",0.02,60,60` + "\n"
	if a := env.send(request{method: "POST", path: "/v1/rate-decks/" + deck + "/rates", auth: "Bearer " + tn.key, contentType: "text/csv", body: strings.NewReader(rates)}); a.status != http.StatusOK {
		t.Fatalf("import: %d %s", a.status, a.body)
	}

	ctx := context.Background()
	start := time.Date(2026, 10, 7, 9, 0, 0, 0, time.UTC)
	cdrs := postgres.NewCDRStore(env.db)
	if _, err := cdrs.EnsurePartitions(ctx, start, 1); err != nil {
		t.Fatal(err)
	}
	var batch []*callbridge.CDR
	for i, p := range []string{"49", "4915"} {
		at := start.Add(time.Duration(i) * time.Hour)
		batch = append(batch, &callbridge.CDR{
			UUID: uuid.NewString(), Leg: "a", AccountID: tn.id, Direction: "inbound",
			Caller: "=cmd|' /C calc'!A0", Callee: p + "123456", Presented: "+SUM(1,2)", Gateway: "@gw", Node: "-fs1",
			StartAt: at, AnswerAt: at.Add(time.Second), EndAt: at.Add(61 * time.Second), DurationMS: 61000, BillMS: 60000,
			HangupCause: "NORMAL_CLEARING", Q850: 16, Disposition: "answered", Sell: 10000, SellCurrency: "USD", SellDeckID: deck, SellDeckVersion: 2, SellPrefix: p,
			RatedAt: at.Add(2 * time.Minute),
		})
	}
	if _, err := cdrs.WriteBatch(ctx, batch, nil); err != nil {
		t.Fatal(err)
	}
	bill := postgres.NewBillingStore(env.db, time.UTC, "test")
	if _, err := bill.RollupDirty(ctx, ""); err != nil {
		t.Fatal(err)
	}
	invs, err := bill.IssueInvoices(ctx, 2026, time.October, tn.id, time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC))
	if err != nil || len(invs) != 1 {
		t.Fatalf("issue invoice: %v, %v", invs, err)
	}

	html := env.mustCall(http.StatusOK, "GET", "/v1/invoices/"+invs[0].ID+"?format=html", tn.key, nil)
	if bytes.Contains(html.body, []byte(script)) {
		t.Error("the HTML invoice holds an unescaped <script>")
	}
	if !bytes.Contains(html.body, []byte("&lt;script&gt;")) {
		t.Errorf("the HTML invoice does not show the (escaped) description: %.1000s", html.body)
	}
	for _, p := range []string{
		"/v1/invoices/" + invs[0].ID + "?format=csv",
		"/v1/reports/usage?from=2026-10-01&to=2026-11-01&group_by=destination&format=csv",
		"/v1/admin/accounts/" + tn.id + "/reports/usage?from=2026-10-01&to=2026-11-01&group_by=carrier&format=csv",
	} {
		token := tn.key
		if strings.HasPrefix(p, "/v1/admin/") {
			token = fullAdminToken
		}
		body := env.mustCall(http.StatusOK, "GET", p, token, nil).body
		checkCSVCells(t, p, body)
		if strings.HasPrefix(p, "/v1/invoices") && !bytes.Contains(body, []byte("HYPERLINK")) {
			t.Errorf("%s lost the description: %.500s", p, body)
		}
	}
	for path, auth := range map[string]string{"/v1/cdrs": tn.key, "/v1/admin/accounts/" + tn.id + "/cdrs": fullAdminToken} {
		a := env.send(request{method: "GET", path: path + "?from=2026-10-01T00:00:00Z", auth: "Bearer " + auth, header: map[string]string{"Accept": "text/csv"}})
		checkCSVCells(t, path, a.body)
		if !bytes.Contains(a.body, []byte("calc")) {
			t.Errorf("%s: the CDR export lost the caller id: %.500s", path, a.body)
		}
	}
}

// checkCSVCells fails when a cell of a CSV file would start a formula in a
// spreadsheet (=, +, -, @, tab or carriage return), except for numbers.
func checkCSVCells(t *testing.T, what string, body []byte) {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("%s: not CSV: %v: %.300s", what, err, body)
	}
	if len(rows) < 2 {
		t.Fatalf("%s: no data rows: %.300s", what, body)
	}
	for i, row := range rows {
		for _, cell := range row {
			if cell == "" || !strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				continue
			}
			if _, err := strconv.ParseFloat(cell, 64); err == nil {
				continue // a negative amount
			}
			t.Errorf("%s: row %d has a formula cell %q", what, i+1, cell)
		}
	}
}

// eslHostile are strings that would change a dial string, an ESL command
// or the dialplan XML if they reached one unescaped.
var eslHostile = []string{
	"x}sofia/gateway/evil/666", "x,origination_caller_id_number=666", "x'y", `x"y`, "${system(id)}", "x\ny", "x\r\nevent plain ALL",
	"x;hangup", "x|sofia/gateway/evil/1", "<x/>", "x&y", "../../etc/passwd", "x y", "x\x00",
}

// TestSecurityValuesBoundForFreeSWITCH sends hostile strings in every
// request field whose value reaches FreeSWITCH (a dial string, an ESL
// command or the dialplan XML) and expects 400 naming the field.
func TestSecurityValuesBoundForFreeSWITCH(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	tn := env.newTenant("esl")
	o := env.createObjects(tn, 1)
	bases := validBodies(o)
	for _, c := range []struct{ method, route, field string }{
		{"POST", "/v1/numbers", "gateway"},
		{"PATCH", "/v1/numbers/:number", "gateway"},
		{"POST", "/v1/bindings", "external_id"},
		{"POST", "/v1/bindings", "caller_display"},
		{"POST", "/v1/bindings", "mode"},
		{"POST", "/v1/callbacks", "prompt"},
	} {
		path, _ := o.pathFor(c.route)
		for _, bad := range eslHostile {
			body := maps.Clone(bases[c.method+" "+c.route])
			body[c.field] = bad
			a := env.call(c.method, path, tn.key, body)
			if _, f := a.errorCode(); a.status != http.StatusBadRequest || f != c.field {
				t.Errorf("%s %s %s=%q: got %d field %q, want 400 naming %s: %.200s", c.method, c.route, c.field, bad, a.status, f, c.field, a.body)
			}
		}
	}
}

// TestSecurityWebhookURLs checks that webhook URLs must be absolute http or
// https URLs: no other scheme, no scheme-relative or control characters.
func TestSecurityWebhookURLs(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	tn := env.newTenant("hooks")
	o := env.createObjects(tn, 1)
	bases := validBodies(o)
	for _, route := range []string{"POST /v1/callbacks", "POST /v1/bindings"} {
		method, path, _ := strings.Cut(route, " ")
		for _, bad := range []string{
			"file:///etc/passwd", "gopher://127.0.0.1:25/", "javascript:alert(1)", "ftp://example.com/x",
			"//example.com/x", "/relative", "http://example.com/\nx", "http://exa mple.com/", "https://" + strings.Repeat("a", 3000) + ".com/",
		} {
			body := maps.Clone(bases[route])
			body["webhook_url"] = bad
			a := env.call(method, path, tn.key, body)
			if _, f := a.errorCode(); a.status != http.StatusBadRequest || f != "webhook_url" {
				t.Errorf("%s webhook_url=%.40q: got %d field %q, want 400 naming webhook_url", route, bad, a.status, f)
			}
		}
	}
}

// TestSecurityIdempotencyKeysPerAccount checks that an Idempotency-Key is
// scoped to its account: B replaying A's key and body creates B's own
// object and never gets A's.
func TestSecurityIdempotencyKeysPerAccount(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	a, b := env.newTenant("a"), env.newTenant("b")
	for i, tn := range []tenant{a, b} {
		env.mustCall(http.StatusCreated, "POST", "/v1/numbers", tn.key,
			map[string]any{"number": fmt.Sprint("+49307770000", i), "gateway": "carrier", "area": "shared"})
	}
	for _, c := range []struct {
		path, body string
		created    int
	}{
		{"/v1/callbacks", `{"a":"+4930111222","b":"+4930333444"}`, http.StatusAccepted},
		{"/v1/bindings", `{"mode":"XB","area":"shared","b":"+4917012345","ttl":3600}`, http.StatusCreated},
	} {
		send := func(tn tenant) map[string]any {
			ans := env.send(request{method: "POST", path: c.path, auth: "Bearer " + tn.key, contentType: "application/json",
				body: strings.NewReader(c.body), header: map[string]string{"Idempotency-Key": "order-1"}})
			if ans.status != c.created {
				t.Fatalf("%s: got %d, want %d: %s", c.path, ans.status, c.created, ans.body)
			}
			return ans.json(t)
		}
		first := send(a)
		replay := send(a)
		if first["id"] != replay["id"] {
			t.Errorf("%s: A's replay made a second object", c.path)
		}
		other := send(b)
		if other["id"] == first["id"] || other["account_id"] != b.id {
			t.Errorf("%s: B's request with A's key got %v, want B's own object", c.path, other)
		}
	}
}
