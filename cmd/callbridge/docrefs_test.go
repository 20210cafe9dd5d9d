package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// repoRoot is the repository's top directory, seen from this package.
const repoRoot = "../.."

// TestDocLinks checks every relative link of the repository's Markdown
// files: the file or directory it names exists inside the repository, and
// a #fragment names a heading of the Markdown file it points to. It also
// checks that README.md links to every page of docs/, so no page is
// orphaned when a section moves out of the README.
func TestDocLinks(t *testing.T) {
	docs, err := markdownFiles(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(docs, filepath.Join(repoRoot, "README.md")) {
		t.Fatalf("README.md not among the Markdown files %v", docs)
	}
	links := 0
	for _, f := range docs {
		n, errs := checkDocLinks(repoRoot, f)
		links += n
		for _, err := range errs {
			t.Error(err)
		}
	}
	if links < 50 {
		t.Errorf("found only %d relative links in %d files; the link parser is broken", links, len(docs))
	}

	linked, err := linkedFiles(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pages {
		if !linked[filepath.Clean(p)] {
			t.Errorf("README.md does not link to %s", strings.TrimPrefix(p, repoRoot+"/"))
		}
	}
}

// TestDocLinksFindsBrokenLinks shows the checker reports what it should,
// on a small tree of its own.
func TestDocLinksFindsBrokenLinks(t *testing.T) {
	root := t.TempDir()
	write := func(name, text string) {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("docs/a.md", "# A page\n\n## What `make demo` shows\n\n## Same\n\n## Same\n")
	write("README.md", strings.Join([]string{
		"[ok](docs/a.md) [ok](docs/a.md#what-make-demo-shows) [ok](docs/a.md#same-1) [ok](#top)",
		"[ok dir](docs/) [web](https://example.com/x.md) [mail](mailto:a@example.com)",
		"`[in code](missing.md)`",
		"```sh\necho '[in a block](missing.md)'\n```",
		"# Top",
		"[gone](docs/b.md) [bad anchor](docs/a.md#nowhere) [outside](../x.md) [here](#nope)",
		"[ref]: docs/c.md",
	}, "\n"))
	n, errs := checkDocLinks(root, filepath.Join(root, "README.md"))
	var got []string
	for _, err := range errs {
		got = append(got, err.Error())
	}
	want := []string{"docs/b.md", "docs/a.md#nowhere", "../x.md", "#nope", "docs/c.md"}
	if len(got) != len(want) {
		t.Fatalf("errors %q, want one for each of %q", got, want)
	}
	for i, w := range want {
		if !strings.Contains(got[i], "("+w+")") {
			t.Errorf("error %d = %q, want one about %s", i, got[i], w)
		}
	}
	if n != 10 {
		t.Errorf("checked %d links, want 10", n)
	}
}

// markdownFiles lists the Markdown files of the repository, leaving out
// hidden directories (.git, .tmp) and bin.
func markdownFiles(root string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return nil
	})
	return files, err
}

var (
	inlineLinkRE = regexp.MustCompile(`\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	refLinkRE    = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$`)
	codeSpanRE   = regexp.MustCompile("`+[^`]*`+")
	headingRE    = regexp.MustCompile(`^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$`)
	docFenceRE   = regexp.MustCompile("^ {0,3}(```+|~~~+)")
)

// markdownLines returns the lines of a Markdown file that are prose: the
// lines of fenced code blocks are blank, and code spans are removed.
func markdownLines(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(data), "\n")
	fence := ""
	for i, l := range lines {
		if m := docFenceRE.FindStringSubmatch(l); m != nil {
			switch {
			case fence == "":
				fence = m[1]
				lines[i] = ""
				continue
			case strings.HasPrefix(m[1], fence) && strings.Trim(strings.TrimSpace(l), fence[:1]) == "":
				fence = ""
				lines[i] = ""
				continue
			}
		}
		if fence != "" {
			lines[i] = ""
			continue
		}
		lines[i] = codeSpanRE.ReplaceAllString(l, "")
	}
	return lines, nil
}

// docLink is one link of a Markdown file.
type docLink struct {
	line   int
	target string
}

// fileLinks returns the relative links of a Markdown file: inline links,
// images and reference definitions, outside code.
func fileLinks(file string) ([]docLink, error) {
	lines, err := markdownLines(file)
	if err != nil {
		return nil, err
	}
	var links []docLink
	for i, l := range lines {
		var targets []string
		for _, m := range inlineLinkRE.FindAllStringSubmatch(l, -1) {
			targets = append(targets, m[1])
		}
		if m := refLinkRE.FindStringSubmatch(l); m != nil {
			targets = append(targets, m[1])
		}
		for _, target := range targets {
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			links = append(links, docLink{line: i + 1, target: target})
		}
	}
	return links, nil
}

// checkDocLinks checks the relative links of one Markdown file against the
// tree under root. It returns how many it checked and what is wrong.
func checkDocLinks(root, file string) (int, []error) {
	links, err := fileLinks(file)
	if err != nil {
		return 0, []error{err}
	}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return 0, []error{err}
	}
	rel := func(p string) string {
		r, err := filepath.Rel(root, p)
		if err != nil {
			return p
		}
		return r
	}
	var errs []error
	for _, l := range links {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s:%d: link (%s): %s", rel(file), l.line, l.target, fmt.Sprintf(format, args...)))
		}
		path, fragment, _ := strings.Cut(l.target, "#")
		target := file
		if path != "" {
			target = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
		}
		abs, err := filepath.Abs(target)
		if err != nil {
			bad("%v", err)
			continue
		}
		if abs != absRoot && !strings.HasPrefix(abs, absRoot+string(filepath.Separator)) {
			bad("points outside the repository")
			continue
		}
		if _, err := os.Stat(target); err != nil {
			bad("no such file")
			continue
		}
		if fragment == "" {
			continue
		}
		if !strings.HasSuffix(target, ".md") {
			bad("a #fragment of a file that is not Markdown")
			continue
		}
		anchors, err := headingAnchors(target)
		if err != nil {
			bad("%v", err)
			continue
		}
		if !anchors[fragment] {
			bad("%s has no heading with the anchor #%s", rel(target), fragment)
		}
	}
	return len(links), errs
}

// headingAnchors returns the anchors GitHub gives the headings of a
// Markdown file: the heading's text in lower case, without punctuation,
// spaces made hyphens, and -1, -2... after repeated ones.
func headingAnchors(file string) (map[string]bool, error) {
	lines, err := markdownLines(file)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	raw := strings.Split(string(data), "\n")
	anchors := map[string]bool{}
	seen := map[string]int{}
	for i, l := range lines {
		if l == "" || headingRE.FindStringSubmatch(l) == nil {
			continue
		}
		// The anchor is made from the heading's text with its code spans,
		// which markdownLines removed.
		m := headingRE.FindStringSubmatch(raw[i])
		text := regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(m[1], "$1")
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r):
				b.WriteRune(r)
			}
		}
		slug := b.String()
		if n := seen[slug]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			anchors[slug] = true
		}
		seen[slug]++
	}
	return anchors, nil
}

// linkedFiles returns the files a Markdown file links to, cleaned paths
// as seen from this package.
func linkedFiles(file string) (map[string]bool, error) {
	links, err := fileLinks(file)
	if err != nil {
		return nil, err
	}
	linked := map[string]bool{}
	for _, l := range links {
		if path, _, _ := strings.Cut(l.target, "#"); path != "" {
			linked[filepath.Clean(filepath.Join(filepath.Dir(file), filepath.FromSlash(path)))] = true
		}
	}
	return linked, nil
}

// TestCommandsTable keeps the commands table of docs/operations.md and the
// commands callbridge runs in step, both ways.
func TestCommandsTable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `callbridge ([a-z-]+)").FindAllStringSubmatch(string(b), -1) {
		documented[m[1]] = true
	}
	run := map[string]bool{}
	for _, c := range commands() {
		run[c.name] = true
		if !documented[c.name] {
			t.Errorf("docs/operations.md has no row for callbridge %s", c.name)
		}
	}
	for name := range documented {
		if !run[name] {
			t.Errorf("docs/operations.md lists callbridge %s, which callbridge does not run", name)
		}
	}
}

// TestPackageTable keeps the README's package table and the tree in step:
// every directory holding Go code is named in it, and every directory the
// table's first column names exists.
func TestPackageTable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var table []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "| ") {
			table = append(table, l)
		}
	}
	named := map[string]bool{}
	for _, row := range table {
		for _, m := range regexp.MustCompile("`([a-z][a-z0-9/.-]*)/?`").FindAllStringSubmatch(row, -1) {
			named[strings.TrimSuffix(m[1], "/")] = true
		}
		first := strings.SplitN(row, "|", 3)[1]
		for _, m := range regexp.MustCompile("`([a-z.][a-z0-9/.-]*/)`").FindAllStringSubmatch(first, -1) {
			if fi, err := os.Stat(filepath.Join(repoRoot, m[1])); err != nil || !fi.IsDir() {
				t.Errorf("README.md's package table names %s, which is not a directory", m[1])
			}
		}
	}
	dirs := map[string]bool{}
	err = filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != repoRoot && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") {
			rel, err := filepath.Rel(repoRoot, filepath.Dir(p))
			if err != nil {
				return err
			}
			dirs[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 20 {
		t.Fatalf("found %d directories with Go code; the walk is broken", len(dirs))
	}
	for dir := range dirs {
		if dir != "." && !named[dir] {
			t.Errorf("README.md's package table does not name %s/", dir)
		}
	}
}
