package freeswitchconf

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// gatewaySettings are the environment variables of a gateway file, after
// its FS_<NAME>_ prefix.
var gatewaySettings = []string{"NAME", "PROXY", "REALM", "USERNAME", "PASSWORD", "REGISTER", "TRANSPORT"}

// gatewayStem is what a gateway file may be called: its name is its
// environment variables' prefix too.
var gatewayStem = regexp.MustCompile(`^[a-z][a-z0-9_]{0,30}$`)

// gatewayFile pre-processes one gateway file alone, with only vars.xml's
// variables defined, as FreeSWITCH reads it after vars.xml when it is the
// first gateway file, and parses its gateway.
func gatewayFile(t *testing.T, vars map[string]string, path string) (node, *preprocessor) {
	t.Helper()
	p := newPreprocessor()
	for k, v := range vars {
		p.vars[k] = v
	}
	var buf bytes.Buffer
	buf.WriteString("<gateways>\n")
	p.file(path, &buf, 0)
	buf.WriteString("</gateways>\n")
	if len(p.errs) > 0 {
		t.Fatalf("%s: %s", path, strings.Join(p.errs, "\n"))
	}
	n, err := parseStrict(buf.Bytes())
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n, p
}

// TestGatewayFiles checks every file in sip_profiles/external/ is one
// gateway named after the file, configured only by its own FS_<NAME>_*
// variables, and setting every variable it uses itself: FreeSWITCH's
// global variables outlive the file that set them, so a file that relied
// on one would silently take another gateway's value.
func TestGatewayFiles(t *testing.T) {
	vars := loadVars(t).vars
	for name := range vars {
		if strings.HasPrefix(name, "gateway_") {
			t.Errorf("vars.xml defines %s: gateway settings belong to each gateway file", name)
		}
	}
	files, err := filepath.Glob("sip_profiles/external/*.xml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no gateway files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			stem := strings.TrimSuffix(filepath.Base(f), ".xml")
			if !gatewayStem.MatchString(stem) {
				t.Fatalf("gateway file %s: name it [a-z][a-z0-9_]* (it is the FS_<NAME>_ prefix)", f)
			}
			n, p := gatewayFile(t, vars, f)
			gws := n.all("gateway")
			if len(gws) != 1 {
				t.Fatalf("%d gateways, want 1", len(gws))
			}
			if got := gws[0].attr("name"); got != stem {
				t.Errorf("gateway name defaults to %q, want the file's name %q", got, stem)
			}
			var want []string
			for _, s := range gatewaySettings {
				want = append(want, "FS_"+strings.ToUpper(stem)+"_"+s)
			}
			if !slices.Equal(p.envs, want) {
				t.Errorf("reads %v, want %v", p.envs, want)
			}
		})
	}
}

// addGateway is README.md's command that adds a gateway.
var addGateway = regexp.MustCompile(`(?m)^    (sed 's/carrier/acme/g; s/CARRIER/ACME/g' carrier\.xml > acme\.xml)$`)

// TestAddGateway runs README.md's command for adding a gateway in a copy
// of this configuration, and checks FreeSWITCH would then run both
// gateways, each with its own settings.
func TestAddGateway(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := addGateway.FindSubmatch(readme)
	if m == nil {
		t.Fatalf("README.md does not show the command that adds a gateway (want a match for %s)", addGateway)
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(".")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", string(m[1]))
	cmd.Dir = filepath.Join(dir, "sip_profiles", "external")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", m[1], err, out)
	}
	t.Chdir(dir)
	doc, p := document(t)
	proxies := map[string]string{}
	for _, prof := range configuration(t, doc, "sofia.conf").all("profile") {
		for _, g := range prof.all("gateway") {
			proxies[g.attr("name")] = g.params()["proxy"]
		}
	}
	want := map[string]string{"carrier": "sip.carrier.invalid", "acme": "sip.acme.invalid"}
	if len(proxies) != len(want) || proxies["carrier"] != want["carrier"] || proxies["acme"] != want["acme"] {
		t.Errorf("gateways and their proxies: %v, want %v", proxies, want)
	}
	for _, env := range []string{"FS_CARRIER_PROXY", "FS_ACME_PROXY", "FS_ACME_NAME", "FS_ACME_PASSWORD"} {
		if !slices.Contains(p.envs, env) {
			t.Errorf("the configuration does not read $%s", env)
		}
	}
}
