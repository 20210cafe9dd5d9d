package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestREADMESettingsTable checks that the README's configuration table
// lists every setting serve reads, with its default, and nothing else.
func TestREADMESettingsTable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(CALLBRIDGE_[A-Z_]+)` \\| ([^|]*) \\|")
	table := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		table[m[1]] = strings.TrimSpace(m[2])
	}
	for _, s := range settings() {
		def, ok := table[s.env]
		switch {
		case !ok:
			t.Errorf("README.md's settings table lacks %s", s.env)
		case s.def == "" && !strings.HasPrefix(def, "("):
			t.Errorf("README.md gives %s the default %s; it has none", s.env, def)
		case s.def != "" && def != "`"+s.def+"`":
			t.Errorf("README.md gives %s the default %s, want `%s`", s.env, def, s.def)
		}
		delete(table, s.env)
	}
	// Read elsewhere than serve's flags: the per-job schedules.
	delete(table, "CALLBRIDGE_SCHEDULE_<JOB>")
	for env := range table {
		if !strings.HasPrefix(env, "CALLBRIDGE_SCHEDULE_") {
			t.Errorf("README.md lists %s, which serve does not read", env)
		}
	}
}
