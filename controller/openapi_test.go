package controller_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"callbridge/controller"

	"github.com/gin-gonic/gin"
)

// apiDoc is the part of an OpenAPI 3.0 document the tests read.
type apiDoc struct {
	OpenAPI    string                          `json:"openapi"`
	Security   []map[string][]string           `json:"security"`
	Paths      map[string]map[string]operation `json:"paths"`
	Components struct {
		Schemas         map[string]*schema         `json:"schemas"`
		Responses       map[string]json.RawMessage `json:"responses"`
		Parameters      map[string]parameter       `json:"parameters"`
		SecuritySchemes map[string]struct {
			Type   string `json:"type"`
			Scheme string `json:"scheme"`
		} `json:"securitySchemes"`
	} `json:"components"`
}

type operation struct {
	OperationID string                 `json:"operationId"`
	Security    *[]map[string][]string `json:"security"`
	Parameters  []parameter            `json:"parameters"`
	RequestBody *struct {
		Content map[string]struct {
			Schema *schema `json:"schema"`
		} `json:"content"`
	} `json:"requestBody"`
	Responses map[string]struct {
		Ref     string `json:"$ref"`
		Content map[string]struct {
			Schema *schema `json:"schema"`
		} `json:"content"`
	} `json:"responses"`
}

type parameter struct {
	Ref      string  `json:"$ref"`
	Name     string  `json:"name"`
	In       string  `json:"in"`
	Required bool    `json:"required"`
	Schema   *schema `json:"schema"`
}

// schema is the subset of JSON Schema the document uses.
type schema struct {
	Ref                  string             `json:"$ref"`
	Type                 string             `json:"type"`
	Format               string             `json:"format"`
	Properties           map[string]*schema `json:"properties"`
	Required             []string           `json:"required"`
	AdditionalProperties json.RawMessage    `json:"additionalProperties"`
	Items                *schema            `json:"items"`
	Enum                 []any              `json:"enum"`
	OneOf                []*schema          `json:"oneOf"`
	Minimum              *float64           `json:"minimum"`
	Maximum              *float64           `json:"maximum"`
}

func loadAPIDoc(t testing.TB) *apiDoc {
	t.Helper()
	var d apiDoc
	dec := json.NewDecoder(bytes.NewReader(controller.OpenAPIDocument))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return &d
}

// resolve follows a "#/components/schemas/..." reference.
func (d *apiDoc) resolve(s *schema) *schema {
	for s != nil && s.Ref != "" {
		s = d.Components.Schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")]
	}
	return s
}

// param resolves a parameter reference.
func (d *apiDoc) param(p parameter) parameter {
	if p.Ref != "" {
		return d.Components.Parameters[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
	}
	return p
}

// jsonBody returns the JSON request-body schema of an operation (the first
// alternative of a oneOf), or nil.
func (d *apiDoc) jsonBody(method, path string) *schema {
	op, ok := d.Paths[path][strings.ToLower(method)]
	if !ok || op.RequestBody == nil {
		return nil
	}
	c, ok := op.RequestBody.Content["application/json"]
	if !ok {
		return nil
	}
	s := d.resolve(c.Schema)
	if s != nil && len(s.OneOf) > 0 {
		s = d.resolve(s.OneOf[0])
	}
	return s
}

// validate checks v against s; it returns the first mismatch.
func (d *apiDoc) validate(s *schema, v any, at string) error {
	s = d.resolve(s)
	if s == nil {
		return nil
	}
	if len(s.OneOf) > 0 {
		for _, alt := range s.OneOf {
			if d.validate(alt, v, at) == nil {
				return nil
			}
		}
		return fmt.Errorf("%s: matches no alternative", at)
	}
	if v == nil {
		return nil // optional values may be null
	}
	if len(s.Enum) > 0 && !slices.Contains(s.Enum, v) {
		return fmt.Errorf("%s: %v is not one of %v", at, v, s.Enum)
	}
	switch s.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: got %T, want an object", at, v)
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				return fmt.Errorf("%s: required property %q is missing", at, r)
			}
		}
		closed := string(s.AdditionalProperties) == "false"
		for k, pv := range m {
			ps, ok := s.Properties[k]
			if !ok {
				if closed {
					return fmt.Errorf("%s: property %q is not documented", at, k)
				}
				continue
			}
			if err := d.validate(ps, pv, at+"."+k); err != nil {
				return err
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: got %T, want an array", at, v)
		}
		for i, e := range a {
			if err := d.validate(s.Items, e, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case "string":
		if _, ok := v.(string); !ok {
			return fmt.Errorf("%s: got %T, want a string", at, v)
		}
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("%s: got %T, want an integer", at, v)
		}
		if _, err := n.Int64(); err != nil {
			return fmt.Errorf("%s: %v is not an integer", at, n)
		}
	case "number":
		if _, ok := v.(json.Number); !ok {
			return fmt.Errorf("%s: got %T, want a number", at, v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: got %T, want true or false", at, v)
		}
	}
	return nil
}

// checkAnswer validates a JSON answer of method path (a gin pattern)
// against the schema documented for its status.
func (d *apiDoc) checkAnswer(t testing.TB, method, path string, a answer) {
	t.Helper()
	op, ok := d.Paths[openAPIPath(path)][strings.ToLower(method)]
	if !ok {
		t.Errorf("%s %s is not documented", method, path)
		return
	}
	r, ok := op.Responses[fmt.Sprint(a.status)]
	if !ok {
		t.Errorf("%s %s answered %d, which is not documented: %.300s", method, path, a.status, a.body)
		return
	}
	ct, _, _ := mime.ParseMediaType(a.header.Get("Content-Type"))
	var s *schema
	switch {
	case r.Ref != "":
		s = &schema{Ref: "#/components/schemas/Error"}
		if ct != "application/json" {
			t.Errorf("%s %s answered %d as %q, want application/json", method, path, a.status, ct)
			return
		}
	case len(r.Content) == 0:
		return
	default:
		c, ok := r.Content[ct]
		if !ok {
			t.Errorf("%s %s answered %d as %q, which is not documented", method, path, a.status, ct)
			return
		}
		s = c.Schema
	}
	if ct != "application/json" || s == nil {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(a.body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Errorf("%s %s answered %d with non-JSON: %.300s", method, path, a.status, a.body)
		return
	}
	if err := d.validate(s, v, "body"); err != nil {
		t.Errorf("%s %s answer %d does not match the document: %v: %.500s", method, path, a.status, err, a.body)
	}
}

var ginParam = regexp.MustCompile(`[:*]([A-Za-z_]+)`)

// openAPIPath turns gin's /v1/bindings/:id into /v1/bindings/{id}.
func openAPIPath(ginPath string) string { return ginParam.ReplaceAllString(ginPath, "{$1}") }

func routeKeys(routes gin.RoutesInfo) []string {
	var out []string
	for _, r := range routes {
		out = append(out, r.Method+" "+openAPIPath(r.Path))
	}
	sort.Strings(out)
	return out
}

// TestOpenAPIMatchesRoutes checks that every route a fully configured
// server registers is documented, and every documented operation is
// registered.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	d := loadAPIDoc(t)
	// A feature whose field is left nil registers no routes, and would
	// escape this check: newFullEnv must set every one.
	// GatewayHealth only feeds the resolve route, which is served without it.
	optional := map[string]bool{"Nodes": true, "Draining": true, "CallbackEngine": true, "GatewayHealth": true}
	sv := reflect.ValueOf(env.srv).Elem()
	for i := range sv.NumField() {
		f, ft := sv.Field(i), sv.Type().Field(i)
		if !ft.IsExported() || optional[ft.Name] {
			continue
		}
		switch f.Kind() {
		case reflect.Interface, reflect.Pointer, reflect.Func, reflect.Map, reflect.Slice:
			if f.IsNil() {
				t.Errorf("newFullEnv leaves Server.%s nil; set it so its routes are checked", ft.Name)
			}
		}
	}
	registered := map[string]bool{}
	for _, k := range routeKeys(env.srv.Handler().(*gin.Engine).Routes()) {
		registered[k] = true
		method, path, _ := strings.Cut(k, " ")
		if _, ok := d.Paths[path][strings.ToLower(method)]; !ok {
			t.Errorf("route %s is registered but not in openapi.json", k)
		}
	}
	t.Logf("%d routes registered", len(registered))
	for path, ops := range d.Paths {
		for method := range ops {
			if k := strings.ToUpper(method) + " " + path; !registered[k] {
				t.Errorf("openapi.json documents %s, which is not registered", k)
			}
		}
	}
}

// TestOpenAPIDocument checks the document is well formed: OpenAPI 3.0,
// unique operation ids, every reference resolves, path parameters match
// the path templates, every security requirement names a scheme, and
// every credentialed route documents its 401 (and JSON bodies their
// 400 and 413).
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	d := loadAPIDoc(t)
	if !strings.HasPrefix(d.OpenAPI, "3.0.") {
		t.Errorf("openapi: got %q, want 3.0.x", d.OpenAPI)
	}
	var raw any
	if err := json.Unmarshal(controller.OpenAPIDocument, &raw); err != nil {
		t.Fatal(err)
	}
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch v := v.(type) {
		case map[string]any:
			if r, ok := v["$ref"].(string); ok && !refResolves(raw, r) {
				t.Errorf("%s: $ref %q does not resolve", at, r)
			}
			for k, e := range v {
				walk(e, at+"/"+k)
			}
		case []any:
			for i, e := range v {
				walk(e, fmt.Sprintf("%s[%d]", at, i))
			}
		}
	}
	walk(raw, "#")

	ids := map[string]string{}
	tmpl := regexp.MustCompile(`\{([^}]+)\}`)
	for path, ops := range d.Paths {
		var inPath []string
		for _, m := range tmpl.FindAllStringSubmatch(path, -1) {
			inPath = append(inPath, m[1])
		}
		for method, op := range ops {
			where := strings.ToUpper(method) + " " + path
			if op.OperationID == "" {
				t.Errorf("%s: no operationId", where)
			} else if prev, dup := ids[op.OperationID]; dup {
				t.Errorf("%s: operationId %q is also %s", where, op.OperationID, prev)
			}
			ids[op.OperationID] = where
			if len(op.Responses) == 0 {
				t.Errorf("%s: no responses", where)
			}
			var declared []string
			for _, p := range op.Parameters {
				p = d.param(p)
				if p.Name == "" {
					t.Errorf("%s: a parameter does not resolve", where)
				}
				if p.In == "path" {
					declared = append(declared, p.Name)
					if !p.Required {
						t.Errorf("%s: path parameter %s must be required", where, p.Name)
					}
				}
			}
			slices.Sort(inPath)
			slices.Sort(declared)
			if !slices.Equal(inPath, declared) {
				t.Errorf("%s: path parameters %v, declared %v", where, inPath, declared)
			}
			sec := d.Security
			if op.Security != nil {
				sec = *op.Security
			}
			for _, req := range sec {
				for name := range req {
					if _, ok := d.Components.SecuritySchemes[name]; !ok {
						t.Errorf("%s: security scheme %q is not defined", where, name)
					}
				}
			}
			if len(sec) > 0 {
				if _, ok := op.Responses["401"]; !ok {
					t.Errorf("%s: takes a credential but documents no 401", where)
				}
			}
			if d.jsonBody(method, path) != nil {
				for _, code := range []string{"400", "413"} {
					if _, ok := op.Responses[code]; !ok {
						t.Errorf("%s: takes a JSON body but documents no %s", where, code)
					}
				}
			}
			if slices.ContainsFunc(sec, func(r map[string][]string) bool { _, ok := r["apiKey"]; return ok }) {
				if _, ok := op.Responses["429"]; !ok {
					t.Errorf("%s: is rate limited but documents no 429", where)
				}
			}
		}
	}
	for name, want := range map[string]string{"apiKey": "bearer", "adminToken": "bearer", "dialplanBasic": "basic"} {
		if got := d.Components.SecuritySchemes[name].Scheme; got != want {
			t.Errorf("security scheme %s: got %q, want %q", name, got, want)
		}
	}
}

// refResolves follows a local JSON pointer through the raw document.
func refResolves(doc any, ref string) bool {
	if !strings.HasPrefix(ref, "#/") {
		return false
	}
	cur := doc
	for _, part := range strings.Split(ref[2:], "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return true
}

// TestOpenAPIServed checks /openapi.json is served without a credential
// and is the embedded document.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	a := env.call("GET", "/openapi.json", "", nil)
	if a.status != http.StatusOK {
		t.Fatalf("status: got %d, want 200", a.status)
	}
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type: got %q, want application/json", ct)
	}
	if !bytes.Equal(a.body, controller.OpenAPIDocument) || !bytes.Equal(controller.OpenAPI(), controller.OpenAPIDocument) {
		t.Error("served document differs from the embedded openapi.json")
	}
}

// TestOpenAPIAnswers calls every GET route as its rightful caller would,
// in each format it serves, and expects a documented 2xx; the test
// environment checks every answer's body against the document's schema,
// so this is where the success schemas are proven.
func TestOpenAPIAnswers(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	o := env.createObjects(env.newTenant("docs"), 1)
	query := map[string]string{
		"/v1/rates/quote":                      "?number=%2B4930123456&duration=90s",
		"/v1/admin/routes/resolve":             "?number=%2B4930123456&plan_id=" + o.plan,
		"/v1/reports/usage":                    "?from=2026-10-01&to=2026-11-01&group_by=destination",
		"/v1/cdrs":                             "?from=2026-10-01T00:00:00Z&limit=10",
		"/v1/admin/accounts/:id/reports/usage": "?from=2026-10-01&to=2026-11-01&group_by=carrier",
		"/v1/admin/accounts/:id/cdrs":          "?limit=10",
		"/v1/admin/reports/unrated":            "?month=2026-10",
	}
	accepts := []string{"", "text/csv", "text/html"}
	for _, r := range env.routes() {
		if r.Method != "GET" {
			continue
		}
		class, ok := env.doc.routeAuth(r.Method, r.Path)
		if !ok {
			t.Errorf("GET %s is not documented", r.Path)
			continue
		}
		path, ok := o.pathFor(r.Path)
		if !ok {
			t.Errorf("GET %s: no fixture for its path parameters", r.Path)
			continue
		}
		auth := map[string]string{authAPIKey: "Bearer " + o.key, authAdmin: "Bearer " + fullAdminToken}[class]
		op := env.doc.Paths[openAPIPath(r.Path)]["get"]
		for _, accept := range accepts {
			if accept != "" && !servesType(op, accept) {
				continue
			}
			a := env.send(request{method: "GET", path: path + query[r.Path], auth: auth, header: map[string]string{"Accept": accept}})
			if a.status/100 != 2 {
				t.Errorf("GET %s (Accept %q): got %d, want 2xx: %.300s", path, accept, a.status, a.body)
			}
		}
	}
}

// servesType reports whether an operation documents a 2xx answer of
// media type ct.
func servesType(op operation, ct string) bool {
	for code, r := range op.Responses {
		if _, ok := r.Content[ct]; ok && strings.HasPrefix(code, "2") {
			return true
		}
	}
	return false
}

// TestAPITourMatchesOpenAPI checks that every curl command of the API tour
// (docs/api.md) calls a documented operation.
func TestAPITourMatchesOpenAPI(t *testing.T) {
	t.Parallel()
	d := loadAPIDoc(t)
	tour, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	cmds := regexp.MustCompile(`curl (?:[^\n]*\\\n)*[^\n]*`).FindAllString(string(tour), -1)
	urlRE := regexp.MustCompile(`\$CB(/[^\s"'?]*)`)
	methodRE := regexp.MustCompile(`-X ([A-Z]+)`)
	seen := map[string]bool{}
	for _, cmd := range cmds {
		m := urlRE.FindStringSubmatch(cmd)
		if m == nil {
			continue
		}
		method := "GET"
		if x := methodRE.FindStringSubmatch(cmd); x != nil {
			method = x[1]
		} else if strings.Contains(cmd, " -d ") || strings.Contains(cmd, "--data-binary") {
			method = "POST"
		}
		path, ok := d.match(m[1])
		if !ok {
			t.Errorf("docs/api.md calls %s %s, which openapi.json does not document", method, m[1])
			continue
		}
		if _, ok := d.Paths[path][strings.ToLower(method)]; !ok {
			t.Errorf("docs/api.md calls %s %s (%s), which openapi.json does not document", method, m[1], path)
		}
		seen[method+" "+path] = true
	}
	for path, ops := range d.Paths {
		for method := range ops {
			if k := strings.ToUpper(method) + " " + path; !seen[k] && !strings.HasPrefix(path, "/fs/") {
				t.Logf("the tour does not show %s", k)
			}
		}
	}
	if len(seen) < 20 {
		t.Errorf("found only %d operations in the tour", len(seen))
	}
}

// match finds the documented path a concrete path (ids, shell variables
// or placeholders in parameter segments) belongs to.
func (d *apiDoc) match(concrete string) (string, bool) {
	segs := strings.Split(concrete, "/")
	best, bestStatic := "", -1
	for p := range d.Paths {
		ps := strings.Split(p, "/")
		if len(ps) != len(segs) {
			continue
		}
		static := 0
		for i := range ps {
			switch {
			case strings.HasPrefix(ps[i], "{"):
			case ps[i] == segs[i]:
				static++
			default:
				static = -1
			}
			if static < 0 {
				break
			}
		}
		if static > bestStatic {
			best, bestStatic = p, static
		}
	}
	return best, bestStatic >= 0
}
