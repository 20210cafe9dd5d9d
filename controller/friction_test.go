package controller_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"callbridge/controller"
	"callbridge/dialplan"
)

// TestCDRFiltersTakeDates: the README's GET /v1/cdrs?from=2026-11-01&to=...
// works as written, like the usage report's bounds; a malformed date is
// still refused, naming the field.
func TestCDRFiltersTakeDates(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	tn := env.newTenant("dates")
	for _, q := range []string{"from=2026-11-01&to=2026-12-01", "from=2026-11-01T00:00:00Z&to=2026-12-01", "to=2026-12-01"} {
		if ans := env.call("GET", "/v1/cdrs?"+q, tn.key, nil); ans.status != http.StatusOK {
			t.Errorf("GET /v1/cdrs?%s: got %d %.200s, want 200", q, ans.status, ans.body)
		}
		if ans := env.call("GET", "/v1/admin/accounts/"+tn.id+"/cdrs?"+q, fullAdminToken, nil); ans.status != http.StatusOK {
			t.Errorf("admin GET cdrs?%s: got %d %.200s, want 200", q, ans.status, ans.body)
		}
	}
	for _, q := range []string{"from=2026-13-01", "to=01.12.2026", "from=2026-12-01&to=2026-11-01"} {
		ans := env.call("GET", "/v1/cdrs?"+q, tn.key, nil)
		field := strings.SplitN(strings.SplitN(q, "=", 2)[0], "&", 2)[0]
		if strings.Contains(q, "&") {
			field = "to"
		}
		if _, f := ans.errorCode(); ans.status != http.StatusBadRequest || f != field {
			t.Errorf("GET /v1/cdrs?%s: got %d field %q, want 400 naming %s", q, ans.status, f, field)
		}
	}
}

// TestAdminCDRsOfUnknownAccount: the operator asking for the CDRs of an
// account that does not exist gets 404, not an empty 200.
func TestAdminCDRsOfUnknownAccount(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	ans := env.call("GET", "/v1/admin/accounts/00000000-0000-4000-8000-000000000099/cdrs", fullAdminToken, nil)
	if code, _ := ans.errorCode(); ans.status != http.StatusNotFound || code != "not_found" {
		t.Errorf("got %d %.200s, want 404 not_found", ans.status, ans.body)
	}
}

// TestListLimits: every documented list route refuses limit=0 and a limit
// over its documented maximum, naming limit, and takes the maximum.
func TestListLimits(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	doc := loadAPIDoc(t)
	tn := env.newTenant("limits")
	n := 0
	for path, ops := range doc.Paths {
		op, ok := ops["get"]
		if !ok {
			continue
		}
		for _, p := range op.Parameters {
			p = doc.param(p)
			if p.Name != "limit" || p.In != "query" {
				continue
			}
			n++
			if p.Schema == nil || p.Schema.Minimum == nil || *p.Schema.Minimum != 1 || p.Schema.Maximum == nil {
				t.Errorf("GET %s: limit is not documented as 1 to a maximum", path)
				continue
			}
			token, target := tn.key, path
			if class, _ := doc.routeAuth("GET", path); class == authAdmin {
				token, target = fullAdminToken, strings.Replace(path, "{id}", tn.id, 1)
			}
			max := int(*p.Schema.Maximum)
			for _, v := range []int{0, -1, max + 1} {
				ans := env.call("GET", fmt.Sprintf("%s?limit=%d", target, v), token, nil)
				if _, f := ans.errorCode(); ans.status != http.StatusBadRequest || f != "limit" {
					t.Errorf("GET %s?limit=%d: got %d field %q, want 400 naming limit", path, v, ans.status, f)
				}
			}
			if ans := env.call("GET", fmt.Sprintf("%s?limit=%d", target, max), token, nil); ans.status != http.StatusOK {
				t.Errorf("GET %s?limit=%d: got %d %.200s, want 200", path, max, ans.status, ans.body)
			}
		}
	}
	if n < 5 {
		t.Errorf("only %d list routes document limit", n)
	}
}

// TestDialplanOversizedFormAnswersXML: FreeSWITCH reads only XML from
// mod_xml_curl, so an oversized form (announced or chunked) gets the
// not-found document, never a JSON error.
func TestDialplanOversizedFormAnswersXML(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, func(s *controller.Server) { s.MaxBodyBytes = 4 << 10 })
	big := "section=dialplan&x=" + strings.Repeat("a", 8<<10)
	for _, length := range []int64{int64(len(big)), -1} {
		ans := env.send(request{method: "POST", path: "/fs/dialplan", auth: "Basic " + basicCredential(fullDialplanUser, fullDialplanPass),
			contentType: "application/x-www-form-urlencoded", body: strings.NewReader(big), contentLength: length})
		if ans.status != http.StatusOK || string(ans.body) != string(dialplan.NotFound()) ||
			!strings.HasPrefix(ans.header.Get("Content-Type"), "text/xml") {
			t.Errorf("length %d: got %d %s %.200s, want 200 with the not-found document", length, ans.status, ans.header.Get("Content-Type"), ans.body)
		}
	}
}

// TestBindingTTLErrorsNameTTL: a ttl out of range is refused naming ttl,
// the field the client sent, not expires_at.
func TestBindingTTLErrorsNameTTL(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	tn := env.newTenant("ttl")
	o := env.createObjects(tn, 1)
	for _, ttl := range []int{1, 60, 100 * 24 * 3600} {
		body := map[string]any{"mode": "AXB", "x": o.number, "a": "+4917000011", "b": "+4917000012", "ttl": ttl}
		ans := env.call("POST", "/v1/bindings", tn.key, body)
		if _, f := ans.errorCode(); ans.status != http.StatusBadRequest || f != "ttl" {
			t.Errorf("ttl %d: got %d field %q %.200s, want 400 naming ttl", ttl, ans.status, f, ans.body)
		}
	}
}

func basicCredential(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

// TestMethodNotAllowedDocumented: a path served with another method
// answers 405 method_not_allowed with Allow, in the documented error
// shape, and openapi.json documents the answer.
func TestMethodNotAllowedDocumented(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	doc := loadAPIDoc(t)
	ans := env.send(request{method: "DELETE", path: "/healthz"})
	if code, _ := ans.errorCode(); ans.status != http.StatusMethodNotAllowed || code != "method_not_allowed" || !strings.Contains(ans.header.Get("Allow"), "GET") {
		t.Errorf("DELETE /healthz: got %d %s Allow %q", ans.status, ans.body, ans.header.Get("Allow"))
	}
	if _, ok := doc.Components.Responses["MethodNotAllowed"]; !ok {
		t.Error("openapi.json has no MethodNotAllowed response")
	}
}
