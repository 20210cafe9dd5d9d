package main

import (
	"io"
	"os"
	"regexp"
	"strings"
	"testing"

	"callbridge"
	"callbridge/billing"
)

// settingsDoc is the page that documents every setting of callbridge
// serve; the tests below hold its table to the code.
const settingsDoc = "../../docs/configuration.md"

// docSettings returns the settings table of docs/configuration.md:
// variable to the text of its default column, without backquotes.
func docSettings(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(settingsDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(CALLBRIDGE_[A-Z0-9_<>]+)` \\| ([^|]*) \\|").FindAllStringSubmatch(string(b), -1) {
		rows[m[1]] = strings.Trim(strings.TrimSpace(m[2]), "`")
	}
	if len(rows) == 0 {
		t.Fatal("docs/configuration.md has no settings table")
	}
	return rows
}

// TestSettingsTable keeps the settings table of docs/configuration.md and
// settings() in step: every setting with its default, and no row for a
// setting that does not exist (the per-job schedules are read elsewhere).
func TestSettingsTable(t *testing.T) {
	rows := docSettings(t)
	known := map[string]bool{"CALLBRIDGE_SCHEDULE_<JOB>": true}
	for _, s := range settings() {
		known[s.env] = true
		def, ok := rows[s.env]
		switch {
		case !ok:
			t.Errorf("docs/configuration.md does not list %s", s.env)
		case s.def == "" && !strings.HasPrefix(def, "("):
			t.Errorf("docs/configuration.md gives %s the default %q; it has none", s.env, def)
		case s.def != "" && def != s.def:
			t.Errorf("docs/configuration.md gives %s the default %q, the code %q", s.env, def, s.def)
		}
	}
	for env := range rows {
		if !known[env] {
			t.Errorf("docs/configuration.md lists %s, which callbridge serve does not read", env)
		}
	}
}

// TestSettingsTableSchedules keeps the CALLBRIDGE_SCHEDULE_<JOB> row of
// docs/configuration.md and the jobs serve schedules in step, both ways,
// with defaults: it listed WEBHOOKS and SPOOL, which no job read.
func TestSettingsTableSchedules(t *testing.T) {
	b, err := os.ReadFile(settingsDoc)
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `CALLBRIDGE_SCHEDULE_<JOB>` \\|.*$").FindString(string(b))
	if row == "" {
		t.Fatal("docs/configuration.md has no CALLBRIDGE_SCHEDULE_<JOB> row")
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("`([A-Z][A-Z_]+)`").FindAllStringSubmatch(row, -1) {
		listed[m[1]] = true
	}
	delete(listed, "CALLBRIDGE_SCHEDULE_")
	jobs := map[string]bool{}
	for job, spec := range billing.DefaultSchedules() {
		name := strings.TrimPrefix(scheduleEnv(job), "CALLBRIDGE_SCHEDULE_")
		jobs[name] = true
		if !strings.Contains(row, "`"+name+"` (`"+spec+"`") {
			t.Errorf("docs/configuration.md does not list %s with its default `%s`", name, spec)
		}
	}
	for name := range listed {
		if !jobs[name] {
			t.Errorf("docs/configuration.md lists the schedule %s, which no job reads", name)
		}
	}
}

func TestPromptSettings(t *testing.T) {
	parse := func(env map[string]string) (*Config, error) {
		env["CALLBRIDGE_DATABASE_URL"] = "postgres://x/y"
		return parseConfig("serve", nil, func(k string) string { return env[k] }, io.Discard)
	}
	cfg, err := parse(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if got := callbackPrompts(cfg)["hold"]; got != callieIVR+"ivr-hold_connect_call.wav" {
		t.Errorf("default hold prompt = %q", got)
	}
	if got := callbackFailurePrompts(cfg)[callbridge.ReasonBBusy]; got != callieIVR+"ivr-user_busy.wav" {
		t.Errorf("default busy prompt = %q", got)
	}

	cfg, err = parse(map[string]string{
		"CALLBRIDGE_PROMPT_HOLD":        "none",
		"CALLBRIDGE_PROMPT_B_BUSY":      "/srv/prompts/busy.wav",
		"CALLBRIDGE_PROMPT_B_NO_ANSWER": "none",
		"CALLBRIDGE_PROMPT_CALL_FAILED": "/srv/prompts/failed-8k.wav",
	})
	if err != nil {
		t.Fatal(err)
	}
	prompts, failures := callbackPrompts(cfg), callbackFailurePrompts(cfg)
	if _, ok := prompts["hold"]; ok || prompts["ringback"] == "" {
		t.Errorf("prompts with CALLBRIDGE_PROMPT_HOLD=none = %v, want ringback only", prompts)
	}
	want := map[callbridge.FailReason]string{
		callbridge.ReasonBBusy:     "/srv/prompts/busy.wav",
		callbridge.ReasonBNoAnswer: "", // present and empty: A is hung up at once
		"":                         "/srv/prompts/failed-8k.wav",
	}
	for reason, path := range want {
		if got, ok := failures[reason]; !ok || got != path {
			t.Errorf("failure prompt for %q = %q (set %v), want %q", reason, got, ok, path)
		}
	}

	for _, bad := range []string{"prompts/busy.wav", "/srv/my prompts/busy.wav", "/srv/../etc/passwd", "/srv/p.wav;hangup", "/srv/"} {
		if _, err := parse(map[string]string{"CALLBRIDGE_PROMPT_B_BUSY": bad}); err == nil || !strings.Contains(err.Error(), "CALLBRIDGE_PROMPT_B_BUSY") {
			t.Errorf("CALLBRIDGE_PROMPT_B_BUSY=%q: error %v, want one naming the setting", bad, err)
		}
	}
}

// The issuer printed on documents is read from the environment by serve
// and by callbridge bill alike, and refused when it is malformed.
func TestIssuerSettings(t *testing.T) {
	env := map[string]string{
		"CALLBRIDGE_DATABASE_URL":      "postgres://x/y",
		"CALLBRIDGE_ISSUER_NAME":       "Callbridge Telecom GmbH",
		"CALLBRIDGE_ISSUER_ADDRESS":    "Friedrichstraße 68; 10117 Berlin",
		"CALLBRIDGE_ISSUER_TAX_NUMBER": "DE298765432",
	}
	getenv := func(k string) string { return env[k] }
	cfg, err := parseConfig("serve", nil, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	fromEnv, err := issuerFromEnv(getenv)
	if err != nil || cfg.Issuer != fromEnv || cfg.Issuer.TaxNumber != "DE298765432" {
		t.Errorf("serve's issuer %+v, bill's %+v (%v): want the same, from the environment", cfg.Issuer, fromEnv, err)
	}
	for k, v := range map[string]string{
		"CALLBRIDGE_ISSUER_NAME":       "",
		"CALLBRIDGE_ISSUER_TAX_NUMBER": strings.Repeat("9", 65),
	} {
		bad := map[string]string{}
		for k, v := range env {
			bad[k] = v
		}
		bad[k] = v
		_, err := parseConfig("serve", nil, func(k string) string { return bad[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%q: %v, want an error naming the setting", k, v, err)
		}
		if _, err := issuerFromEnv(func(k string) string { return bad[k] }); err == nil {
			t.Errorf("callbridge bill accepts %s=%q", k, v)
		}
	}
}
