package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultStateDir(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name   string
		getenv func(string) string
		euid   int
		want   string
	}{
		{"root", env("HOME", "/root", "XDG_STATE_HOME", "/root/.state"), 0, "/var/lib/callbridge"},
		{"user with XDG_STATE_HOME", env("HOME", "/home/ann", "XDG_STATE_HOME", "/home/ann/.st"), 1000, "/home/ann/.st/callbridge"},
		{"user", env("HOME", "/home/ann"), 1000, "/home/ann/.local/state/callbridge"},
		{"relative XDG_STATE_HOME is ignored", env("HOME", "/home/ann", "XDG_STATE_HOME", "st"), 1000, "/home/ann/.local/state/callbridge"},
	} {
		got, err := defaultStateDir(tc.getenv, tc.euid)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v, want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := defaultStateDir(env(), 1000); err == nil || !strings.Contains(err.Error(), "CALLBRIDGE_STATE_DIR") {
		t.Errorf("no HOME: got %v, want an error naming CALLBRIDGE_STATE_DIR", err)
	}
}

// TestStateDirsNeverRelative: serve started in a checkout with no
// directory settings keeps its spool and reports in the state directory,
// not in the working directory; a relative setting is refused, named.
func TestStateDirsNeverRelative(t *testing.T) {
	state := t.TempDir()
	base := map[string]string{"CALLBRIDGE_DATABASE_URL": "postgres://x/y", "CALLBRIDGE_STATE_DIR": state}
	getenv := func(extra map[string]string) func(string) string {
		return func(k string) string {
			if v, ok := extra[k]; ok {
				return v
			}
			return base[k]
		}
	}
	cfg, err := parseConfig("serve", nil, getenv(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SpoolDir != filepath.Join(state, "spool") || cfg.ReportDir != filepath.Join(state, "reports") {
		t.Errorf("got spool %q and reports %q, want both under %s", cfg.SpoolDir, cfg.ReportDir, state)
	}
	for _, env := range []string{"CALLBRIDGE_SPOOL_DIR", "CALLBRIDGE_REPORT_DIR", "CALLBRIDGE_STATE_DIR"} {
		_, err := parseConfig("serve", nil, getenv(map[string]string{env: "./relative"}), io.Discard)
		if err == nil || !strings.Contains(err.Error(), env) || !strings.Contains(err.Error(), "absolute") {
			t.Errorf("%s=./relative: got %v, want it refused, named, asking for an absolute path", env, err)
		}
	}
}
