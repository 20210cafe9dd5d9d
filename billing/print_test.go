//go:build chromium

package billing_test

import (
	"bytes"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"callbridge"
)

// This file renders the sample invoice and credit note in a real browser,
// headless Chromium, as a customer would see and print them. It is built
// only with -tags chromium (make test-print, run by .ci/run), where a
// missing Chromium fails the test: the other suites need no browser.
// CALLBRIDGE_PRINT_DIR keeps the PNG and PDF files for a person to look
// at; by default they go to a temporary directory.

// chromium returns the browser's path, or fails the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: install it (apt-get install chromium) or run make test-print, which does as root")
	return ""
}

// runChromium runs headless Chromium with args and returns its stdout.
func runChromium(t *testing.T, bin string, args ...string) string {
	t.Helper()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir()}
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, append(base, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.String()
}

// Paper is a sheet's printable width at 96 dpi with the page's 15 mm side
// margins, and the window a screenshot of it uses.
var papers = []struct {
	name          string
	printable     int // px: (sheet width - 30 mm) at 96 dpi
	width, height int // the whole sheet, px
	pdfW, pdfH    float64
}{
	{"a4", 680, 794, 1123, 595.28, 841.89},
	{"letter", 703, 816, 1056, 612, 792},
}

func TestInvoicePrintsInChromium(t *testing.T) {
	bin := chromium(t)
	dir := os.Getenv("CALLBRIDGE_PRINT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	inv, cn := sampleDocuments()
	for _, doc := range []*callbridge.Invoice{inv, cn} {
		page := renderHTML(t, doc, sampleIssuer)
		htmlPath := filepath.Join(dir, doc.Number+".html")
		if err := os.WriteFile(htmlPath, []byte(page), 0o644); err != nil {
			t.Fatal(err)
		}
		// Nothing is wider than the printable width of either sheet: a
		// copy of the page reports its scroll width into the DOM.
		probe := strings.Replace(page, "</body>", `<script>document.body.setAttribute("data-scroll-width", document.documentElement.scrollWidth)</script></body>`, 1)
		probePath := filepath.Join(t.TempDir(), "probe.html")
		if err := os.WriteFile(probePath, []byte(probe), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, p := range papers {
			dom := runChromium(t, bin, "--window-size="+strconv.Itoa(p.printable)+",1000", "--dump-dom", "file://"+probePath)
			m := regexp.MustCompile(`data-scroll-width="(\d+)"`).FindStringSubmatch(dom)
			if m == nil {
				t.Fatalf("%s on %s: no scroll width in the DOM", doc.Number, p.name)
			}
			if w, _ := strconv.Atoi(m[1]); w > p.printable {
				t.Errorf("%s on %s: content is %d px wide, the printable width %d px: it would be cut", doc.Number, p.name, w, p.printable)
			}
			shot := filepath.Join(dir, doc.Number+"-"+p.name+".png")
			runChromium(t, bin, "--window-size="+strconv.Itoa(p.width)+","+strconv.Itoa(p.height), "--screenshot="+shot, "file://"+htmlPath)
			checkScreenshot(t, shot, p.width, p.height)
		}
		pdf := filepath.Join(dir, doc.Number+".pdf")
		runChromium(t, bin, "--no-pdf-header-footer", "--print-to-pdf="+pdf, "file://"+htmlPath)
		b, err := os.ReadFile(pdf)
		if err != nil {
			t.Fatal(err)
		}
		// One sheet: the sample fits a page; a document that did not
		// would still print whole, rows never split (print CSS).
		if n := len(regexp.MustCompile(`/Type\s*/Page[^s]`).FindAll(b, -1)); n != 1 {
			t.Errorf("%s: PDF has %d pages, want 1", doc.Number, n)
		}
	}
}

// checkScreenshot checks that a screenshot has the window's size and is
// not blank: ink on the left (the issuer) and on the right (the amounts).
func checkScreenshot(t *testing.T, path string, w, h int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Errorf("%s: %dx%d, want %dx%d", path, b.Dx(), b.Dy(), w, h)
	}
	if !inked(img, 0, w/3) || !inked(img, 2*w/3, w) {
		t.Errorf("%s: blank on the left or the right", path)
	}
}

func inked(img image.Image, x0, x1 int) bool {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := x0; x < x1; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r < 0x4000 && g < 0x4000 && bl < 0x4000 {
				return true
			}
		}
	}
	return false
}
