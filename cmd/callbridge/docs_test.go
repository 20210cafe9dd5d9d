package main

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"callbridge/postgres/pgtest"
)

var docsShow = flag.Bool("docs.show", false, "TestDocs: log every command the documents show and what it printed")

// TestMain lets the test binary stand in for the callbridge command: the
// documentation test puts it on the shell's PATH as `callbridge`, so the
// commands the documents show run the code under test, built once.
func TestMain(m *testing.M) {
	if os.Getenv("CALLBRIDGE_TEST_AS_COMMAND") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The documentation test runs every shell command that README.md and
// docs/*.md show, in order, against a fresh stack in the state `make demo`
// leaves: its own database, `callbridge fsim`, `callbridge serve` and the
// tour's data (so an example that collides with the demo's fails here).
//
// A fenced block's language says what it is. sh, bash and shell blocks
// hold commands only; console blocks hold commands after "$ " followed by
// the output they give. Any other language is not run, and must not look
// like commands. A shell block that cannot run here is preceded by
//
//	<!-- doctest: skip REASON... -->
//
// with reasons from skipReasons; each reason must be borne out by a
// command of the block, and a skipped block may hold no API call (curl)
// but those its reasons cover. A block without a language is an error.
//
// Each document runs in a shell of its own (sh, in an empty directory),
// one command at a time: every command must exit 0; every HTTP answer curl
// receives must be 2xx, unless the shown output is an error, whose code it
// must then carry with that code's status; a shown JSON object's first
// key, a shown XML element and a shown bare status line must match what
// came back. The controller's address in the documents
// (http://127.0.0.1:8080, http://localhost:8080) is replaced by the
// stack's. The shell's environment holds the stack's settings as a reader
// of docs/deploy.md has them after `set -a; . docker/.env`:
// CALLBRIDGE_ADMIN_TOKEN and CALLBRIDGE_DIALPLAN_PASSWORD, with make demo's
// values.
func TestDocs(t *testing.T) {
	for _, tool := range []string{"sh", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the documents' commands need %s: %v (Debian: apt-get install %s)", tool, err, tool)
		}
	}
	docs := docFiles(t)
	var all []docBlock
	for _, f := range docs {
		blocks, err := parseDoc(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, blocks...)
	}
	classified, errs := classifyBlocks(all)
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		return
	}

	st := startDocStack(t)
	for _, f := range docs {
		var units []docUnit
		for _, b := range classified[f] {
			units = append(units, b.units...)
		}
		if len(units) == 0 {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) { runDocUnits(t, st, units) })
	}
	st.checkSkipsStillNeeded(t, all)
}

// docFiles is README.md and every docs/*.md, as they are when the test
// runs.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return append([]string{"../../README.md"}, files...)
}

// docBlock is one fenced code block of a document.
type docBlock struct {
	file  string
	line  int      // of the opening fence, 1-based
	lang  string   // first word of the info string
	skip  []string // reasons of a doctest: skip mark before it
	lines []string // the block's content, fence indentation removed
	units []docUnit
}

func (b docBlock) where() string { return fmt.Sprintf("%s:%d", filepath.Base(b.file), b.line) }

// docUnit is one complete shell command of a block and the output the
// document shows for it (console blocks only).
type docUnit struct {
	where string
	cmd   string
	shown []string
}

var (
	fenceRE = regexp.MustCompile("^( *)(```+|~~~+)[ \t]*([^ \t`]*)")
	markRE  = regexp.MustCompile(`^<!--\s*doctest:\s*(.*?)\s*-->\s*$`)
)

// shellLangs are the languages whose blocks are commands.
var shellLangs = map[string]bool{"sh": true, "bash": true, "shell": true, "console": true}

// parseDoc returns the fenced blocks of a Markdown file and the doctest
// marks before them.
func parseDoc(file string) ([]docBlock, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(data), "\n")
	var blocks []docBlock
	var mark []string
	markLine := 0
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if m := markRE.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			reasons, ok := strings.CutPrefix(m[1], "skip")
			if !ok || strings.TrimSpace(reasons) == "" {
				return nil, fmt.Errorf("%s:%d: a doctest mark is <!-- doctest: skip REASON... -->, not %q", file, i+1, l)
			}
			mark, markLine = strings.Fields(reasons), i+1
			continue
		}
		m := fenceRE.FindStringSubmatch(l)
		if m == nil {
			if strings.TrimSpace(l) != "" && mark != nil {
				return nil, fmt.Errorf("%s:%d: a doctest mark must come right before a code block", file, markLine)
			}
			continue
		}
		indent, fence := len(m[1]), m[2]
		b := docBlock{file: file, line: i + 1, lang: strings.ToLower(m[3]), skip: mark}
		mark = nil
		closed := false
		for i++; i < len(lines); i++ {
			l := lines[i]
			trimmed := strings.TrimLeft(l, " ")
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]+" \t") == "" {
				closed = true
				break
			}
			// Remove the fence's indentation, as Markdown does.
			n := 0
			for n < indent && n < len(l) && l[n] == ' ' {
				n++
			}
			b.lines = append(b.lines, l[n:])
		}
		if !closed {
			return nil, fmt.Errorf("%s: the block opened at line %d is never closed", file, b.line)
		}
		blocks = append(blocks, b)
	}
	if mark != nil {
		return nil, fmt.Errorf("%s:%d: a doctest mark must come right before a code block", file, markLine)
	}
	return blocks, nil
}

// skipReasons are the reasons a shell block may give for not being run.
// covers says whether one command bears the reason out.
var skipReasons = map[string]struct {
	why    string
	covers func(cmd string) bool
}{
	"docker":     {"needs Docker (docker compose, images, volumes)", regexp.MustCompile(`(^|[\s;&|("'])docker(-compose)?\s`).MatchString},
	"kubernetes": {"needs a Kubernetes cluster", regexp.MustCompile(`(^|[\s;&|("'])kubectl\s`).MatchString},
	"freeswitch": {"needs a real FreeSWITCH", regexp.MustCompile(`\bfs_cli\b|\bmake\s+(test-freeswitch|test-cluster|capacity)\b`).MatchString},
	"chromium":   {"needs Chromium", regexp.MustCompile(`(^|[\s;&|("'])chromium\s`).MatchString},
	"demo":       {"make demo runs until Ctrl-C; TestDemoInterrupt runs it on a terminal and types Ctrl-C", coveredByDemoTest},
	"ci":         {"a suite CI runs (.ci/run), this test's own `make test` included", coveredByCI},
	"invoice": {"needs an issued invoice, i.e. a closed month with calls; a fresh stack (and make demo's) has none, which the test checks",
		regexp.MustCompile(`/v1/invoices/`).MatchString},
}

// coveredByDemoTest: `make demo`, while TestDemoInterrupt runs it.
func coveredByDemoTest(cmd string) bool {
	if strings.TrimSpace(stripComment(cmd)) != "make demo" {
		return false
	}
	src, err := os.ReadFile("demo_test.go")
	return err == nil && strings.Contains(string(src), "func TestDemoInterrupt(") &&
		strings.Contains(string(src), `exec.Command("make", "--no-print-directory", "demo")`)
}

// coveredByCI: `make T` for a target .ci/run runs, or `go test` of
// packages with tests (make test runs them all).
func coveredByCI(cmd string) bool {
	cmd = strings.TrimSpace(stripComment(cmd))
	if target, ok := strings.CutPrefix(cmd, "make "); ok {
		ci, err := os.ReadFile("../../.ci/run")
		if err != nil {
			return false
		}
		return regexp.MustCompile(`(?m)^make ` + regexp.QuoteMeta(strings.TrimSpace(target)) + `\s*$`).Match(ci)
	}
	if pkgs, ok := strings.CutPrefix(cmd, "go test "); ok {
		for _, p := range strings.Fields(pkgs) {
			if strings.HasPrefix(p, "-") {
				continue
			}
			tests, _ := filepath.Glob(filepath.Join("../..", strings.TrimSuffix(p, "..."), "*_test.go"))
			if len(tests) == 0 {
				return false
			}
		}
		return true
	}
	return false
}

var curlRE = regexp.MustCompile(`(^|[\s;&|(])curl\s`)

// commandLike matches lines of a non-shell block that look like commands.
var commandLike = regexp.MustCompile(`^\s*(\$ |curl |make |callbridge |docker |go (test|run|build) |psql |kubectl |fs_cli )`)

// classifyBlocks checks every block is classified and every skip mark
// justified, splits the shell blocks to run into commands and returns
// them by file.
func classifyBlocks(blocks []docBlock) (map[string][]docBlock, []error) {
	byFile := map[string][]docBlock{}
	var errs []error
	for _, b := range blocks {
		switch {
		case b.lang == "":
			errs = append(errs, fmt.Errorf("%s: a code block without a language: say what it is (sh, console, json, text, ...)", b.where()))
			continue
		case !shellLangs[b.lang]:
			if b.skip != nil {
				errs = append(errs, fmt.Errorf("%s: a doctest mark on a %s block, which is never run", b.where(), b.lang))
			}
			for _, l := range b.lines {
				if commandLike.MatchString(l) {
					errs = append(errs, fmt.Errorf("%s: a %s block holds what looks like a command (%q): make it a sh or console block", b.where(), b.lang, l))
					break
				}
			}
			continue
		}
		units, err := splitUnits(b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(units) == 0 {
			errs = append(errs, fmt.Errorf("%s: a %s block without a command", b.where(), b.lang))
			continue
		}
		if b.skip == nil {
			b.units = units
			byFile[b.file] = append(byFile[b.file], b)
			continue
		}
		for _, r := range b.skip {
			reason, ok := skipReasons[r]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: unknown skip reason %q (known: %v)", b.where(), r, slices.Sorted(maps.Keys(skipReasons))))
				continue
			}
			if !slices.ContainsFunc(units, func(u docUnit) bool { return reason.covers(u.cmd) }) {
				errs = append(errs, fmt.Errorf("%s: skipped for %q (%s), but no command of the block needs that: run it", b.where(), r, reason.why))
			}
		}
		// API calls are run: a skipped block may hold only those its
		// reasons account for.
		for _, u := range units {
			if !curlRE.MatchString(u.cmd) {
				continue
			}
			if !slices.ContainsFunc(b.skip, func(r string) bool { reason, ok := skipReasons[r]; return ok && reason.covers(u.cmd) }) {
				errs = append(errs, fmt.Errorf("%s: an API call in a skipped block (%s): move it to a block that runs", u.where, firstLine(u.cmd)))
			}
		}
	}
	return byFile, errs
}

// splitUnits splits a shell block into complete commands. In a console
// block a command starts with "$ " and what follows it up to the next one
// is its output.
func splitUnits(b docBlock) ([]docUnit, error) {
	var units []docUnit
	console := b.lang == "console"
	for i := 0; i < len(b.lines); i++ {
		l := b.lines[i]
		start := i
		if console {
			rest, ok := strings.CutPrefix(l, "$ ")
			if !ok {
				if strings.TrimSpace(l) == "" {
					continue
				}
				if len(units) == 0 {
					return nil, fmt.Errorf("%s:%d: console output before any command (commands start with \"$ \")", filepath.Base(b.file), b.line+1+i)
				}
				units[len(units)-1].shown = append(units[len(units)-1].shown, l)
				continue
			}
			l = rest
		} else if s := strings.TrimSpace(l); s == "" || strings.HasPrefix(s, "#") {
			continue
		} else if strings.HasPrefix(l, "$ ") {
			return nil, fmt.Errorf("%s:%d: a prompt in a %s block: make it a console block", filepath.Base(b.file), b.line+1+i, b.lang)
		}
		cmd := l
		for !shellComplete(cmd) {
			i++
			if i >= len(b.lines) {
				return nil, fmt.Errorf("%s:%d: the command never ends (an open quote, heredoc or trailing \\)", filepath.Base(b.file), b.line+1+start)
			}
			cmd += "\n" + b.lines[i]
		}
		units = append(units, docUnit{where: fmt.Sprintf("%s:%d", filepath.Base(b.file), b.line+1+start), cmd: cmd})
	}
	return units, nil
}

var heredocRE = regexp.MustCompile(`<<-?\s*(?:'([A-Za-z_]\w*)'|"([A-Za-z_]\w*)"|([A-Za-z_]\w*))`)

// shellComplete reports whether s is a complete shell command as far as
// the documents need: no open quote, no trailing backslash, pipe or &&,
// every heredoc closed.
func shellComplete(s string) bool {
	lines := strings.Split(s, "\n")
	var quote byte
	for li := 0; li < len(lines); li++ {
		l := lines[li]
		for i := 0; i < len(l); i++ {
			c := l[i]
			switch {
			case quote == '\'':
				if c == '\'' {
					quote = 0
				}
			case quote == '"':
				if c == '\\' {
					i++
				} else if c == '"' {
					quote = 0
				}
			case c == '\\':
				i++
			case c == '\'' || c == '"':
				quote = c
			case c == '#' && (i == 0 || l[i-1] == ' ' || l[i-1] == '\t'):
				i = len(l) // a comment
			case c == '<' && strings.HasPrefix(l[i:], "<<") && !strings.HasPrefix(l[i:], "<<<"):
				m := heredocRE.FindStringSubmatch(l[i:])
				if m == nil {
					continue
				}
				word := m[1] + m[2] + m[3]
				strip := strings.HasPrefix(l[i:], "<<-")
				i += len(m[0]) - 1
				// The heredoc's body starts on the next line.
				end := -1
				for lj := li + 1; lj < len(lines); lj++ {
					body := lines[lj]
					if strip {
						body = strings.TrimLeft(body, "\t")
					}
					if body == word {
						end = lj
						break
					}
				}
				if end < 0 {
					return false
				}
				// The rest of this line still counts; the body does not.
				lines = append(lines[:li+1], lines[end+1:]...)
			}
		}
		if quote != 0 {
			continue
		}
		trimmed := strings.TrimRight(stripComment(l), " \t")
		if li == len(lines)-1 && (strings.HasSuffix(trimmed, "\\") || strings.HasSuffix(trimmed, "|") || strings.HasSuffix(trimmed, "&&") || strings.HasSuffix(trimmed, "||")) {
			return false
		}
	}
	return quote == 0
}

// stripComment removes a trailing shell comment from one line (outside
// quotes).
func stripComment(l string) string {
	var quote byte
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			}
		case quote == '"':
			if c == '\\' {
				i++
			} else if c == '"' {
				quote = 0
			}
		case c == '\\':
			i++
		case c == '\'' || c == '"':
			quote = c
		case c == '#' && (i == 0 || l[i-1] == ' ' || l[i-1] == '\t'):
			return l[:i]
		}
	}
	return l
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// docStack is the stack the documents' commands run against.
type docStack struct {
	base, db string
	bin      string // a directory with callbridge and the recording curl
	env      []string
}

// startDocStack starts what make demo starts, on free ports with a fresh
// database, and runs the tour.
func startDocStack(t *testing.T) *docStack {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	realCurl, _ := exec.LookPath("curl")
	bin := t.TempDir()
	if err := os.Symlink(self, filepath.Join(bin, "callbridge")); err != nil {
		t.Fatal(err)
	}
	// curl as the documents call it, recording the status of each answer.
	wrapper := `#!/bin/sh
h=$(mktemp) || exit 1
"$DOCTEST_CURL" -D "$h" "$@"
rc=$?
status=$(sed -n 's|^HTTP/[0-9.]* \([0-9][0-9][0-9]\).*|\1|p' "$h" | tail -n 1)
echo "${status:-none}" >>"$DOCTEST_CURL_LOG"
rm -f "$h"
exit $rc
`
	if err := os.WriteFile(filepath.Join(bin, "curl"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	httpPort, eslPort := freePort(t), freePort(t)
	httpAddr, eslAddr := "127.0.0.1:"+strconv.Itoa(httpPort), "127.0.0.1:"+strconv.Itoa(eslPort)
	st := &docStack{base: "http://" + httpAddr, db: pgtest.URL(t), bin: bin}
	state := t.TempDir()
	st.env = append(envWithout("CALLBRIDGE_", "DATABASE_URL", "DOCTEST_"),
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"CALLBRIDGE_TEST_AS_COMMAND=1",
		"DOCTEST_CURL="+realCurl,
		"CALLBRIDGE_ADMIN_TOKEN=demo-admin-token",
		"CALLBRIDGE_DIALPLAN_PASSWORD=demo-dialplan-secret",
	)
	serveEnv := append(slices.Clone(st.env),
		"CALLBRIDGE_DATABASE_URL="+st.db,
		"CALLBRIDGE_HTTP_ADDR="+httpAddr,
		"CALLBRIDGE_ESL="+eslAddr,
		"CALLBRIDGE_ESL_PASSWORD=ClueCon",
		"CALLBRIDGE_DIALPLAN_USER=freeswitch",
		"CALLBRIDGE_WEBHOOK_SECRET=demo-webhook-secret",
		"CALLBRIDGE_SPOOL_DIR="+filepath.Join(state, "spool"),
		"CALLBRIDGE_REPORT_DIR="+filepath.Join(state, "reports"),
		"CALLBRIDGE_LOG_FORMAT=text",
		"CALLBRIDGE_MAX_CPS=20",
	)
	start := func(name string, args ...string) {
		cmd := exec.Command(self, args...)
		cmd.Args[0] = "callbridge"
		cmd.Env = serveEnv
		log := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() {
			cmd.Process.Signal(os.Interrupt)
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("callbridge %s: %v\n%s", name, err, tail(log.String(), 3000))
				}
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Errorf("callbridge %s did not stop within 30 s of SIGINT", name)
			}
			if t.Failed() {
				t.Logf("callbridge %s log:\n%s", name, tail(log.String(), 5000))
			}
		})
	}
	// Cleanups run last first: serve stops before the simulator.
	start("fsim", "fsim", "--listen", eslAddr, "--password", "ClueCon",
		"--dialplan-url", st.base+"/fs/dialplan", "--dialplan-user", "freeswitch", "--dialplan-password", "demo-dialplan-secret",
		"--gateway", "carrier", "--gateway", "cheap:refuse")
	start("serve", "serve")

	tour := exec.Command(self, "tour", "--api", st.base, "--admin-token", "demo-admin-token", "--esl", eslAddr, "--esl-password", "ClueCon")
	tour.Args[0] = "callbridge"
	tour.Env = serveEnv
	began := time.Now()
	out, err := tour.CombinedOutput()
	if err != nil {
		t.Fatalf("callbridge tour (make demo's data): %v\n%s", err, out)
	}
	if os.Getenv("CALLBRIDGE_SHOW_TOUR") != "" {
		t.Logf("the tour:\n%s", out)
	}
	t.Logf("the tour (make demo's data) took %v", time.Since(began).Round(time.Millisecond))
	return st
}

// errorStatus is the HTTP status of each error code (docs/api.md,
// "Conventions").
var errorStatus = map[string]int{
	"invalid": 400, "unauthorized": 401, "insufficient_funds": 402, "forbidden": 403,
	"not_found": 404, "method_not_allowed": 405, "conflict": 409, "no_number_available": 409,
	"too_large": 413, "rate_limited": 429, "internal": 500, "not_implemented": 501, "unavailable": 503,
	"outcome_unknown": 503,
}

var (
	addrRE      = regexp.MustCompile(`http://(127\.0\.0\.1|localhost):8080\b`)
	errorCodeRE = regexp.MustCompile(`^\{"error":\{"code":"([a-z_]+)"`)
	firstKeyRE  = regexp.MustCompile(`^\{\s*"([^"]+)"`)
	xmlTagRE    = regexp.MustCompile(`^<(\??[A-Za-z][\w:-]*)`)
	statusRE    = regexp.MustCompile(`^[1-5][0-9][0-9]$`)
)

// runDocUnits runs one document's commands in one shell and checks each.
func runDocUnits(t *testing.T, st *docStack, units []docUnit) {
	work, outDir := t.TempDir(), t.TempDir()
	curlLog := filepath.Join(outDir, "curl.log")
	var script strings.Builder
	for i, u := range units {
		fmt.Fprintf(&script, "echo '#%d' >>\"$DOCTEST_CURL_LOG\"\n{\n%s\n} >%q 2>%q </dev/null\necho $? >%q\n",
			i, addrRE.ReplaceAllString(u.cmd, st.base),
			filepath.Join(outDir, fmt.Sprintf("%d.out", i)), filepath.Join(outDir, fmt.Sprintf("%d.err", i)),
			filepath.Join(outDir, fmt.Sprintf("%d.rc", i)))
	}
	sh := exec.Command("sh", "-c", script.String())
	sh.Dir = work
	sh.Env = append(slices.Clone(st.env), "DOCTEST_CURL_LOG="+curlLog, "HOME="+work)
	began := time.Now()
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("sh: %v\n%s", err, out)
	}
	t.Logf("%d commands in %v", len(units), time.Since(began).Round(time.Millisecond))

	statuses := map[int][]int{}
	cur := -1
	if f, err := os.Open(curlLog); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			l := sc.Text()
			if n, ok := strings.CutPrefix(l, "#"); ok {
				cur, _ = strconv.Atoi(n)
				continue
			}
			s, _ := strconv.Atoi(l) // "none": no answer, 0
			statuses[cur] = append(statuses[cur], s)
		}
		f.Close()
	}
	for i, u := range units {
		out, _ := os.ReadFile(filepath.Join(outDir, fmt.Sprintf("%d.out", i)))
		errOut, _ := os.ReadFile(filepath.Join(outDir, fmt.Sprintf("%d.err", i)))
		rcText, _ := os.ReadFile(filepath.Join(outDir, fmt.Sprintf("%d.rc", i)))
		rc, err := strconv.Atoi(strings.TrimSpace(string(rcText)))
		if err != nil {
			t.Errorf("%s: the command did not run (the shell stopped?)\n%s", u.where, u.cmd)
			continue
		}
		report := func(format string, args ...any) {
			t.Errorf("%s: %s\n$ %s\nstdout: %s\nstderr: %s", u.where, fmt.Sprintf(format, args...), u.cmd, tail(string(out), 1500), tail(string(errOut), 1500))
		}
		if *docsShow {
			t.Logf("%s: $ %s\n%s%s(exit %d, HTTP %v)", u.where, u.cmd, out, errOut, rc, statuses[i])
		}
		if rc != 0 {
			report("exit status %d, want 0", rc)
			continue
		}
		checkShown(u, string(out), statuses[i], report)
	}
}

// checkShown compares what a command did with what the document shows.
func checkShown(u docUnit, out string, statuses []int, report func(string, ...any)) {
	shown := strings.TrimSpace(strings.Join(u.shown, "\n"))
	if m := errorCodeRE.FindStringSubmatch(shown); m != nil {
		want, ok := errorStatus[m[1]]
		if !ok {
			report("the document shows an unknown error code %q", m[1])
			return
		}
		if !slices.Contains(statuses, want) {
			report("HTTP statuses %v, want %d (the error shown, %s)", statuses, want, m[1])
		}
		if !strings.Contains(out, `"code":"`+m[1]+`"`) {
			report("the answer lacks the error code shown, %s", m[1])
		}
		return
	}
	for _, s := range statuses {
		if s < 200 || s > 299 {
			report("HTTP status %d, want 2xx (show the error if it is meant)", s)
			return
		}
	}
	got := strings.TrimSpace(out)
	switch {
	case shown == "":
	case statusRE.MatchString(firstLine(shown)):
		if firstLine(got) != firstLine(shown) {
			report("printed %q, the document shows %q", firstLine(got), firstLine(shown))
		}
	case firstKeyRE.MatchString(shown):
		key := firstKeyRE.FindStringSubmatch(shown)[1]
		var v map[string]json.RawMessage
		if err := json.NewDecoder(strings.NewReader(got)).Decode(&v); err != nil {
			report("the answer is not the JSON object shown: %v", err)
		} else if _, ok := v[key]; !ok {
			report("the answer has no %q, which the document shows", key)
		}
	case xmlTagRE.MatchString(shown):
		want := xmlTagRE.FindStringSubmatch(shown)[1]
		if m := xmlTagRE.FindStringSubmatch(got); m == nil || m[1] != want {
			report("the answer is not the <%s> shown", want)
		}
	}
}

// checkSkipsStillNeeded checks the reasons that depend on the stack's
// state: blocks skipped for want of an issued invoice are run once there
// is one.
func (st *docStack) checkSkipsStillNeeded(t *testing.T, blocks []docBlock) {
	t.Helper()
	needInvoice := slices.ContainsFunc(blocks, func(b docBlock) bool { return slices.Contains(b.skip, "invoice") })
	if !needInvoice {
		return
	}
	db, err := sql.Open("postgres", st.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM invoices`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("the stack holds %d issued invoice(s) after the documents ran: the blocks skipped for \"invoice\" can run now", n)
	}
}
