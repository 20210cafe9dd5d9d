package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocsClassification: what TestDocs refuses in a document, and how it
// splits shell blocks into commands and their shown output.
func TestDocsClassification(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      string // in the one error; "" for none
	}{
		{"no language", "```\ncurl -s $CB/healthz\n```\n", "without a language"},
		{"command in a text block", "```text\ncurl -s $CB/healthz\n```\n", "looks like a command"},
		{"mark on a text block", "<!-- doctest: skip docker -->\n```text\nx\n```\n", "never run"},
		{"unknown reason", "<!-- doctest: skip lazy -->\n```sh\ndocker ps\n```\n", `unknown skip reason "lazy"`},
		{"reason not borne out", "<!-- doctest: skip docker -->\n```sh\nmake lint\n```\n", `skipped for "docker"`},
		{"make target CI does not run", "<!-- doctest: skip ci -->\n```sh\nmake nonesuch\n```\n", `skipped for "ci"`},
		{"go test of a package without tests", "<!-- doctest: skip ci -->\n```sh\ngo test ./docs/\n```\n", `skipped for "ci"`},
		{"API call in a skipped block", "<!-- doctest: skip docker -->\n```sh\ndocker compose up -d\ncurl -s http://127.0.0.1:8080/healthz\n```\n", "an API call in a skipped block"},
		{"output before a command", "```console\n{}\n$ curl -s $CB/healthz\n```\n", "output before any command"},
		{"prompt in a sh block", "```sh\n$ curl -s $CB/healthz\n```\n", "make it a console block"},
		{"open quote", "```sh\ncurl -d '{\"a\":1}\n```\n", "never ends"},
		{"open heredoc", "```sh\ncat > x.csv <<'CSV'\na,b\n```\n", "never ends"},
		{"stray mark", "<!-- doctest: skip docker -->\nsome prose\n", "right before a code block"},
		{"bad mark", "<!-- doctest: run -->\n```sh\nls\n```\n", "doctest: skip REASON"},
		{"justified skips", "<!-- doctest: skip demo ci -->\n```sh\nmake demo   # runs until Ctrl-C\nmake test\n```\n\n" +
			"<!-- doctest: skip docker -->\n```sh\nC=\"docker compose -f x.yml\"\n$C up -d\n```\n\n" +
			"<!-- doctest: skip invoice chromium -->\n```sh\ncurl -s $CB/v1/invoices/$ID > i.html\nchromium --headless i.html\n```\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "doc.md")
			if err := os.WriteFile(f, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			var errs []error
			blocks, err := parseDoc(f)
			if err != nil {
				errs = append(errs, err)
			} else {
				_, errs = classifyBlocks(blocks)
			}
			switch {
			case tc.want == "" && len(errs) > 0:
				t.Errorf("got %v, want no error", errs)
			case tc.want != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want)):
				t.Errorf("got %v, want one error containing %q", errs, tc.want)
			}
		})
	}
}

func TestDocsSplitUnits(t *testing.T) {
	doc := "```console\n" +
		"$ export A=1 \\\n  B=2\n" +
		"$ curl -s -d '{\"a\":1,\n   \"b\":2}' $CB/x | tee x.json   # a comment's ' quote\n" +
		"{\"x\":1,\n \"y\":2}\n\n" +
		"$ cat > r.csv <<'CSV'\nprefix,per_minute\n49,0.01\nCSV\n" +
		"$ curl -s $CB/y -o /dev/null -w '%{http_code}\\n'\n204\n" +
		"```\n\n" +
		"```sh\n# a comment\nX=$(curl -s $CB/z |\n  jq -r .id)\n\ncurl -s $CB/z/$X && echo ok\n```\n"
	f := filepath.Join(t.TempDir(), "doc.md")
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	blocks, err := parseDoc(f)
	if err != nil {
		t.Fatal(err)
	}
	byFile, errs := classifyBlocks(blocks)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var got []docUnit
	for _, b := range byFile[f] {
		got = append(got, b.units...)
	}
	want := []docUnit{
		{where: "doc.md:2", cmd: "export A=1 \\\n  B=2"},
		{where: "doc.md:4", cmd: "curl -s -d '{\"a\":1,\n   \"b\":2}' $CB/x | tee x.json   # a comment's ' quote", shown: []string{"{\"x\":1,", " \"y\":2}"}},
		{where: "doc.md:9", cmd: "cat > r.csv <<'CSV'\nprefix,per_minute\n49,0.01\nCSV"},
		{where: "doc.md:13", cmd: "curl -s $CB/y -o /dev/null -w '%{http_code}\\n'", shown: []string{"204"}},
		{where: "doc.md:19", cmd: "X=$(curl -s $CB/z |\n  jq -r .id)"},
		{where: "doc.md:22", cmd: "curl -s $CB/z/$X && echo ok"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d commands %q, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i].where != want[i].where || got[i].cmd != want[i].cmd || strings.Join(got[i].shown, "\n") != strings.Join(want[i].shown, "\n") {
			t.Errorf("command %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}
