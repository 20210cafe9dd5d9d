package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"callbridge/esl/esltest"
	"callbridge/internal/wait"
	"callbridge/postgres/pgtest"
)

// duplicateKey returns the first key that appears twice in one object of
// the JSON text line, at any depth, or "".
func duplicateKey(line string) (string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	type object struct {
		keys    map[string]bool
		wantKey bool
	}
	var stack []*object
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		top := (*object)(nil)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, &object{keys: map[string]bool{}, wantKey: true})
				continue
			case '[':
				stack = append(stack, nil)
				continue
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			if top != nil && top.wantKey {
				if top.keys[t] {
					return t, nil
				}
				top.keys[t], top.wantKey = true, false
				continue
			}
		}
		if len(stack) > 0 && stack[len(stack)-1] != nil {
			stack[len(stack)-1].wantKey = true
		}
	}
}

func TestDuplicateKey(t *testing.T) {
	for line, want := range map[string]string{
		`{"msg":"esl: state","node":"a","node":"b"}`:      "node",
		`{"msg":"x","a":{"b":1,"b":2}}`:                   "b",
		`{"msg":"x","a":[{"b":1},{"b":2}],"c":{"b":3}}`:   "",
		`{"msg":"x","node":"a","sub":{"node":"b"}}`:       "",
		`{"a":[1,2,{"x":[3]}],"b":"a","c":{"a":{"a":1}}}`: "",
	} {
		if got, err := duplicateKey(line); err != nil || got != want {
			t.Errorf("%s: got %q, %v, want %q", line, got, err, want)
		}
	}
}

// TestServeLogsHaveNoDuplicateKeys runs serve at debug level against the
// simulator, lets it connect to the node and answer a few requests, and parses every log line: each is one JSON object, and no
// object repeats a key (log.With("node") over esl's own "node" did).
func TestServeLogsHaveNoDuplicateKeys(t *testing.T) {
	fs := esltest.NewServer()
	t.Cleanup(fs.Close)
	env := map[string]string{
		"CALLBRIDGE_DATABASE_URL": pgtest.URL(t),
		"CALLBRIDGE_ADMIN_TOKEN":  "admin-secret",
		"CALLBRIDGE_ESL":          fs.Addr(),
		"CALLBRIDGE_SPOOL_DIR":    t.TempDir(),
		"CALLBRIDGE_REPORT_DIR":   t.TempDir(),
		"CALLBRIDGE_LOG_LEVEL":    "debug",
	}
	base, logs := startServeLogged(t, env)
	wait.ForState(t, "the node to connect", func() (bool, string) {
		return strings.Contains(logs.String(), `"state":"connected"`), "\n" + logs.String()
	})
	do(t, "GET", base+"/v1/account", "bad-key", "")
	do(t, "POST", base+"/v1/admin/accounts", "admin-secret", `{"name":"Acme"}`)
	n := 0
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("not a JSON log line: %s", line)
			continue
		}
		n++
		if k, err := duplicateKey(line); err != nil || k != "" {
			t.Errorf("key %q twice (%v): %s", k, err, line)
		}
	}
	if n < 5 || !bytes.Contains([]byte(logs.String()), []byte(`"msg":"esl: state"`)) {
		t.Errorf("only %d log lines, or none from esl:\n%s", n, logs.String())
	}
}
