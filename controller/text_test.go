package controller_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
)

// badTexts are strings no free-text field may hold, as they appear inside
// a JSON string literal: NUL (which PostgreSQL refuses in text and
// jsonb), another C0 control, DEL, invalid UTF-8 and a lone surrogate.
var badTexts = map[string]string{
	"NUL":            `a\u0000b`,
	"control":        `a\u0007b`,
	"DEL":            "a\x7fb",
	"invalid UTF-8":  "a\xffb",
	"lone surrogate": `a\ud800b`,
}

// stringFields returns the path of every string in v (a decoded JSON
// body), as decodeJSON names fields: "area", "labels[0]", "metadata.note".
func stringFields(prefix string, v any, out map[string]bool) {
	switch v := v.(type) {
	case string:
		out[prefix] = true
	case map[string]any:
		for k, e := range v {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			stringFields(p, e, out)
		}
	case []any:
		for i, e := range v {
			stringFields(fmt.Sprintf("%s[%d]", prefix, i), e, out)
		}
	}
}

// replaceAt returns body with the string at path replaced by the raw JSON
// string literal lit.
func replaceAt(t *testing.T, body map[string]any, path, lit string) string {
	t.Helper()
	const mark = "\u2603marker\u2603"
	var set func(v any, path string) any
	set = func(v any, path string) any {
		if path == "" {
			return mark
		}
		head, rest, _ := strings.Cut(path, ".")
		if i := strings.IndexByte(head, '['); i >= 0 {
			var n int
			fmt.Sscanf(head[i:], "[%d]", &n)
			key := head[:i]
			if key == "" { // nested array, not used by our bodies
				t.Fatalf("unsupported path %q", path)
			}
			m := v.(map[string]any)
			arr := append([]any(nil), m[key].([]any)...)
			arr[n] = set(arr[n], rest)
			m[key] = arr
			return m
		}
		m := v.(map[string]any)
		m[head] = set(m[head], rest)
		return m
	}
	b, err := json.Marshal(set(body, path))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Replace(string(b), `"`+mark+`"`, `"`+lit+`"`, 1)
}

// TestSecurityInvalidText puts every bad text in every string field of
// every JSON route's body (nested ones included: labels, metadata) and in
// every documented query parameter: each answers 400 naming the field,
// never 500.
func TestSecurityInvalidText(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	doc := loadAPIDoc(t)
	tn := env.newTenant("text")
	o := env.createObjects(tn, 1)
	bases := validBodies(o)
	// Nested free text the bases leave empty.
	bases["POST /v1/callbacks"]["metadata"] = map[string]any{"note": "x", "items": []any{"y"}}
	bases["POST /v1/rate-decks"]["default_rate"] = map[string]any{"per_minute": 1000, "description": "d", "band": "b"}
	n := 0
	for _, r := range env.routes() {
		key := r.Method + " " + r.Path
		base, ok := bases[key]
		if !ok {
			continue
		}
		token := tn.key
		if class, _ := doc.routeAuth(r.Method, r.Path); class == authAdmin {
			token = fullAdminToken
		}
		path, ok := o.pathFor(r.Path)
		if !ok {
			t.Errorf("%s: no fixture for its path parameters", key)
			continue
		}
		fields := map[string]bool{}
		b, _ := json.Marshal(base)
		var generic map[string]any
		json.Unmarshal(b, &generic)
		stringFields("", generic, fields)
		names := make([]string, 0, len(fields))
		for f := range fields {
			names = append(names, f)
		}
		sort.Strings(names)
		for _, field := range names {
			for what, lit := range badTexts {
				var copyBase map[string]any
				json.Unmarshal(b, &copyBase)
				body := replaceAt(t, copyBase, field, lit)
				n++
				ans := env.send(request{method: r.Method, path: path, auth: "Bearer " + token,
					contentType: "application/json", body: strings.NewReader(body)})
				if ans.status != http.StatusBadRequest {
					t.Errorf("%s %s with %s: got %d, want 400: %.300s", key, field, what, ans.status, ans.body)
					continue
				}
				if _, got := ans.errorCode(); got != field {
					t.Errorf("%s %s with %s: field %q, want %q", key, field, what, got, field)
				}
			}
		}
	}
	for _, bad := range []string{"a\x00b", "a\x01b", "a\xffb"} {
		for _, q := range []string{"/v1/cdrs?binding_id=", "/v1/callbacks?status=", "/v1/numbers?area="} {
			n++
			ans := env.call("GET", q+url.QueryEscape(bad), tn.key, nil)
			field := strings.TrimSuffix(q[strings.IndexByte(q, '?')+1:], "=")
			if _, got := ans.errorCode(); ans.status != http.StatusBadRequest || got != field {
				t.Errorf("GET %s%q: got %d field %q, want 400 naming %s: %.200s", q, bad, ans.status, got, field, ans.body)
			}
		}
	}
	if n < 100 {
		t.Errorf("only %d cases: the table lost its routes", n)
	}
}

// TestSecurityMalformedQuery sends query strings Go's parser drops pairs
// of (a ';', a bad escape): the request is refused with 400 on every
// route, instead of running without the filter it named.
func TestSecurityMalformedQuery(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, nil)
	tn := env.newTenant("query")
	for _, c := range []struct{ path, token string }{
		{"/v1/cdrs?binding_id=';select+1", tn.key},
		{"/v1/bindings?x=;", tn.key},
		{"/v1/bindings?area=a;b", tn.key},
		{"/v1/numbers?area=%zz", tn.key},
		{"/v1/admin/jobs?job=;", fullAdminToken},
		{"/healthz?a=;", ""},
	} {
		ans := env.call("GET", c.path, c.token, nil)
		if code, _ := ans.errorCode(); ans.status != http.StatusBadRequest || code != "invalid" {
			t.Errorf("GET %s: got %d %.200s, want 400 invalid", c.path, ans.status, ans.body)
		}
	}
	if ans := env.call("GET", "/v1/bindings?area=a%3Bb", tn.key, nil); ans.status != http.StatusOK {
		t.Errorf("an escaped ';' is a value like any other: got %d %.200s", ans.status, ans.body)
	}
}
