package freeswitchconf

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"callbridge"
)

// allowedModules are the only modules callbridge's FreeSWITCH may load.
var allowedModules = []string{
	"mod_console", "mod_logfile", "mod_event_socket", "mod_commands",
	"mod_dptools", "mod_dialplan_xml", "mod_xml_curl", "mod_sofia",
	"mod_loopback", "mod_sndfile", "mod_native_file", "mod_tone_stream",
	"mod_say_en", "mod_db", "mod_hash",
}

// requiredModules must be loaded for the controller to work at all.
var requiredModules = []string{
	"mod_event_socket", "mod_commands", "mod_dptools", "mod_dialplan_xml",
	"mod_xml_curl", "mod_sofia", "mod_console", "mod_logfile",
}

// needConfig are loaded modules that log an error or refuse to load without
// their <name>.conf.
var needConfig = []string{"console", "logfile", "event_socket", "xml_curl", "sofia"}

// coreConfigs are read by the FreeSWITCH core itself, not by a module.
var coreConfigs = []string{"switch", "modules", "acl", "post_load_modules", "pre_load_modules", "timezones"}

// builtinVars are the global variables FreeSWITCH sets before reading any
// configuration (switch_core.c), with stand-in values for expansion.
var builtinVars = map[string]string{
	"hostname": "fs1", "local_ip_v4": "192.0.2.10", "local_mask_v4": "255.255.255.0",
	"local_ip_v6": "::1", "switch_serial": "0", "core_uuid": "00000000-0000-0000-0000-000000000000",
	"base_dir": "/usr", "conf_dir": "/etc/freeswitch", "log_dir": "/var/log/freeswitch",
	"run_dir": "/run/freeswitch", "db_dir": "/var/lib/freeswitch/db", "mod_dir": "/usr/lib/freeswitch/mod",
	"htdocs_dir": "/usr/share/freeswitch/htdocs", "script_dir": "/usr/share/freeswitch/scripts",
	"temp_dir": "/tmp", "grammar_dir": "/usr/share/freeswitch/grammar", "certs_dir": "/etc/freeswitch/tls",
	"storage_dir": "/var/lib/freeswitch/storage", "cache_dir": "/var/cache/freeswitch",
	"recordings_dir": "/var/lib/freeswitch/recordings", "sounds_dir": "/usr/share/freeswitch/sounds",
	"data_dir": "/usr/share/freeswitch", "fonts_dir": "/usr/share/freeswitch/fonts",
	"images_dir": "/usr/share/freeswitch/images", "localstate_dir": "/var/lib/freeswitch",
}

// runtimeVars are defined in vars.xml but read by FreeSWITCH at run time
// rather than through $${...} in the configuration.
var runtimeVars = []string{"sound_prefix", "media_timeout", "media_hold_timeout"}

// deprecatedParams are settings FreeSWITCH 1.10 still reads but warns about
// at start-up, with what replaced them.
var deprecatedParams = map[string]string{
	"rtp-timeout-sec":      "the media_timeout variable",
	"rtp-hold-timeout-sec": "the media_hold_timeout variable",
}

// directive is one X-PRE-PROCESS line, alone on its line as FreeSWITCH needs.
var directive = regexp.MustCompile(`^\s*<X-PRE-PROCESS cmd="([a-z-]+)" data="([^"]*)"/>\s*$`)

// envRef is the value of an env-set directive: NAME=$ENVIRONMENT_VARIABLE.
var envRef = regexp.MustCompile(`^([A-Za-z0-9_]+)=\$([A-Z][A-Z0-9_]*)$`)

// preprocessor emulates switch_xml.c's preprocess(): it reads files line by
// line, expands $${var}, drops lines holding <include>, </include> or <?,
// runs X-PRE-PROCESS directives, and includes files by glob relative to the
// including file's directory. Unlike FreeSWITCH, which expands an undefined
// variable to nothing and skips an include that matches no file with only a
// log line, it records both as errors.
type preprocessor struct {
	vars map[string]string // variables set so far
	used map[string]bool   // variables referenced with $${...}
	env  map[string]string // variable name -> environment variable of its last env-set
	envs []string          // every environment variable an env-set reads, in order
	errs []string
}

func newPreprocessor() *preprocessor {
	return &preprocessor{vars: map[string]string{}, used: map[string]bool{}, env: map[string]string{}}
}

func (p *preprocessor) errorf(format string, args ...any) {
	p.errs = append(p.errs, fmt.Sprintf(format, args...))
}

// expand replaces every $${name} in line, as expand_vars() does.
func (p *preprocessor) expand(line, where string) string {
	var b strings.Builder
	for {
		i := strings.Index(line, "$${")
		if i < 0 {
			b.WriteString(line)
			return b.String()
		}
		j := strings.IndexByte(line[i:], '}')
		if j < 0 {
			p.errorf("%s: unterminated $${", where)
			b.WriteString(line)
			return b.String()
		}
		name := line[i+3 : i+j]
		b.WriteString(line[:i])
		p.used[name] = true
		if v, ok := p.vars[name]; ok {
			b.WriteString(v)
		} else if v, ok := builtinVars[name]; ok {
			b.WriteString(v)
		} else {
			p.errorf("%s: $${%s} is not defined in vars.xml (FreeSWITCH would expand it to nothing)", where, name)
		}
		line = line[i+j+1:]
	}
}

// file pre-processes path and writes the result to w.
func (p *preprocessor) file(path string, w io.Writer, depth int) {
	if depth > 20 {
		p.errorf("%s: includes nest too deep", path)
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		p.errorf("%v", err)
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		where := fmt.Sprintf("%s:%d", path, n)
		line := p.expand(sc.Text(), where)
		if strings.Contains(line, "<include>") || strings.Contains(line, "</include>") || strings.Contains(line, "<?") {
			continue
		}
		if strings.Contains(line, "<!--#") {
			p.errorf("%s: <!--# pre-processor comments are not used in this configuration", where)
			continue
		}
		if !strings.Contains(strings.ToLower(line), "x-pre-process") {
			fmt.Fprintln(w, line)
			continue
		}
		m := directive.FindStringSubmatch(line)
		if m == nil {
			p.errorf("%s: X-PRE-PROCESS must be alone on its line as <X-PRE-PROCESS cmd=\"...\" data=\"...\"/> (FreeSWITCH drops or runs any line naming it)", where)
			continue
		}
		p.run(m[1], m[2], filepath.Dir(path), w, depth, where)
	}
}

func (p *preprocessor) run(cmd, data, dir string, w io.Writer, depth int, where string) {
	switch cmd {
	case "set":
		name, val, ok := strings.Cut(data, "=")
		if !ok || strings.TrimSpace(name) == "" {
			p.errorf("%s: set %q is not name=value", where, data)
			return
		}
		p.vars[strings.TrimSpace(name)] = strings.TrimSpace(val)
	case "env-set":
		m := envRef.FindStringSubmatch(data)
		if m == nil {
			p.errorf("%s: env-set %q is not name=$ENVIRONMENT_VARIABLE", where, data)
			return
		}
		if _, ok := p.vars[m[1]]; !ok {
			p.errorf("%s: env-set of %s without a default set before it", where, m[1])
		}
		p.env[m[1]] = m[2]
		p.envs = append(p.envs, m[2])
	case "include":
		pattern := data
		if !filepath.IsAbs(pattern) {
			pattern = filepath.Join(dir, pattern)
		}
		files, err := filepath.Glob(pattern)
		if err != nil || len(files) == 0 {
			p.errorf("%s: include %q matches no file (FreeSWITCH logs \"Couldnt open\")", where, data)
			return
		}
		for _, f := range files {
			p.file(f, w, depth+1)
		}
	default:
		p.errorf("%s: X-PRE-PROCESS cmd=%q is not used in this configuration", where, cmd)
	}
}

// node is a generic XML element.
type node struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Nodes   []node     `xml:",any"`
}

func (n node) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// all returns the descendants of n named name, in document order.
func (n node) all(name string) []node {
	var out []node
	for _, c := range n.Nodes {
		if c.XMLName.Local == name {
			out = append(out, c)
		}
		out = append(out, c.all(name)...)
	}
	return out
}

// child returns the first child of n named name whose attribute key is val
// (any, when key is empty).
func (n node) child(name, key, val string) (node, bool) {
	for _, c := range n.Nodes {
		if c.XMLName.Local == name && (key == "" || c.attr(key) == val) {
			return c, true
		}
	}
	return node{}, false
}

// params returns the name/value params directly under n.
func (n node) params() map[string]string {
	out := map[string]string{}
	for _, c := range n.Nodes {
		if c.XMLName.Local == "param" {
			out[c.attr("name")] = c.attr("value")
		}
	}
	return out
}

func parseStrict(data []byte) (node, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	var n node
	if err := d.Decode(&n); err != nil {
		return node{}, err
	}
	return n, nil
}

// loadVars pre-processes vars.xml alone.
func loadVars(t *testing.T) *preprocessor {
	t.Helper()
	p := newPreprocessor()
	p.file("vars.xml", io.Discard, 0)
	if len(p.errs) > 0 {
		t.Fatalf("vars.xml:\n%s", strings.Join(p.errs, "\n"))
	}
	return p
}

// document pre-processes freeswitch.xml the way FreeSWITCH does at start-up
// and parses the result.
func document(t *testing.T) (node, *preprocessor) {
	t.Helper()
	p := newPreprocessor()
	var buf bytes.Buffer
	p.file("freeswitch.xml", &buf, 0)
	if len(p.errs) > 0 {
		t.Fatalf("pre-processing freeswitch.xml:\n%s", strings.Join(p.errs, "\n"))
	}
	doc, err := parseStrict(buf.Bytes())
	if err != nil {
		t.Fatalf("freeswitch.xml after pre-processing is not well-formed: %v", err)
	}
	if doc.XMLName.Local != "document" || doc.attr("type") != "freeswitch/xml" {
		t.Fatalf("root is <%s type=%q>, want <document type=\"freeswitch/xml\">", doc.XMLName.Local, doc.attr("type"))
	}
	return doc, p
}

func section(t *testing.T, doc node, name string) node {
	t.Helper()
	s, ok := doc.child("section", "name", name)
	if !ok {
		t.Fatalf("no <section name=%q>", name)
	}
	return s
}

func configuration(t *testing.T, doc node, name string) node {
	t.Helper()
	c, ok := section(t, doc, "configuration").child("configuration", "name", name)
	if !ok {
		t.Fatalf("no <configuration name=%q>", name)
	}
	return c
}

func xmlFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".xml") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no .xml files found")
	}
	return files
}

// TestFilesWellFormed pre-processes every file as FreeSWITCH includes it
// (with the variables vars.xml defines, its own includes resolved) and parses
// the result as an XML fragment.
func TestFilesWellFormed(t *testing.T) {
	vars := loadVars(t)
	for _, f := range xmlFiles(t) {
		t.Run(f, func(t *testing.T) {
			p := newPreprocessor()
			if f != "freeswitch.xml" && f != "vars.xml" {
				for k, v := range vars.vars {
					p.vars[k] = v
				}
			}
			var buf bytes.Buffer
			buf.WriteString("<fragment>\n")
			p.file(f, &buf, 0)
			buf.WriteString("</fragment>\n")
			if len(p.errs) > 0 {
				t.Fatalf("pre-processing:\n%s", strings.Join(p.errs, "\n"))
			}
			d := xml.NewDecoder(&buf)
			d.Strict = true
			for {
				_, err := d.Token()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("not well-formed after pre-processing: %v", err)
				}
			}
		})
	}
}

// TestDocument checks the assembled document has what FreeSWITCH and the
// controller need: both sections, every variable defined, none unused.
func TestDocument(t *testing.T) {
	doc, p := document(t)
	section(t, doc, "configuration")
	section(t, doc, "dialplan")

	defined := loadVars(t).vars
	for name := range defined {
		if !p.used[name] && !slices.Contains(runtimeVars, name) {
			t.Errorf("vars.xml defines %s but no file uses $${%s}", name, name)
		}
	}
	seen := map[string]bool{}
	for _, env := range p.envs {
		if !strings.HasPrefix(env, "FS_") {
			t.Errorf("an env-set reads $%s; FreeSWITCH-side environment variables are named FS_*", env)
		}
		if seen[env] {
			t.Errorf("$%s is read twice", env)
		}
		seen[env] = true
	}
}

func TestModules(t *testing.T) {
	doc, _ := document(t)
	mods := configuration(t, doc, "modules.conf")
	var loaded []string
	for _, l := range mods.all("load") {
		m := l.attr("module")
		if slices.Contains(loaded, m) {
			t.Errorf("%s is loaded twice", m)
		}
		loaded = append(loaded, m)
		if !slices.Contains(allowedModules, m) {
			t.Errorf("modules.conf.xml loads %s, which is not in the allowed list %v", m, allowedModules)
		}
	}
	for _, m := range requiredModules {
		if !slices.Contains(loaded, m) {
			t.Errorf("modules.conf.xml does not load %s", m)
		}
	}
	if i, j := slices.Index(loaded, "mod_xml_curl"), slices.Index(loaded, "mod_sofia"); i > j {
		t.Errorf("mod_xml_curl loads after mod_sofia: the first calls would miss the controller's dialplan")
	}
}

// TestAutoloadConfigs checks every file in autoload_configs holds the
// configuration its name says, for a module the configuration loads or for
// the core, and that modules which need a configuration have one.
func TestAutoloadConfigs(t *testing.T) {
	doc, _ := document(t)
	var loaded []string
	for _, l := range configuration(t, doc, "modules.conf").all("load") {
		loaded = append(loaded, l.attr("module"))
	}
	files, err := filepath.Glob("autoload_configs/*")
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, f := range files {
		base := filepath.Base(f)
		name, ok := strings.CutSuffix(base, ".conf.xml")
		if !ok {
			t.Errorf("%s: files here are named <name>.conf.xml", f)
			continue
		}
		have = append(have, name)
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte(`<configuration name="`+name+`.conf"`)) {
			t.Errorf("%s does not hold <configuration name=%q>", f, name+".conf")
		}
		if _, ok := section(t, doc, "configuration").child("configuration", "name", name+".conf"); !ok {
			t.Errorf("%s is not in the assembled configuration section", f)
		}
		if !slices.Contains(coreConfigs, name) && !slices.Contains(loaded, "mod_"+name) {
			t.Errorf("%s configures mod_%s, which modules.conf.xml does not load", f, name)
		}
	}
	for _, name := range needConfig {
		if slices.Contains(loaded, "mod_"+name) && !slices.Contains(have, name) {
			t.Errorf("mod_%s is loaded but autoload_configs/%s.conf.xml is missing", name, name)
		}
	}
}

func TestXMLCurl(t *testing.T) {
	doc, _ := document(t)
	bindings := configuration(t, doc, "xml_curl.conf").all("binding")
	if len(bindings) != 1 {
		t.Fatalf("got %d xml_curl bindings, want 1", len(bindings))
	}
	var url node
	for _, c := range bindings[0].Nodes {
		if c.XMLName.Local == "param" && c.attr("name") == "gateway-url" {
			url = c
		}
	}
	if got := url.attr("bindings"); got != "dialplan" {
		t.Errorf("gateway-url bindings=%q, want \"dialplan\" (the controller serves only the dialplan)", got)
	}
	if url.attr("value") == "" {
		t.Error("gateway-url has no value")
	}
	params := bindings[0].params()
	tests := []struct {
		name, want string
	}{
		{"auth-scheme", "basic"},
		{"disable-100-continue", "true"},
	}
	for _, tt := range tests {
		if got := params[tt.name]; got != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, got, tt.want)
		}
	}
	if user, pass, ok := strings.Cut(params["gateway-credentials"], ":"); !ok || user == "" || pass == "" {
		t.Errorf("gateway-credentials = %q, want user:password", params["gateway-credentials"])
	}
	// mod_xml_curl hands timeout to CURLOPT_TIMEOUT: whole seconds, 0 = none.
	if n, err := strconv.Atoi(params["timeout"]); err != nil || n < 1 || n > 10 {
		t.Errorf("timeout = %q, want whole seconds in [1, 10]", params["timeout"])
	}

	raw, err := os.ReadFile("autoload_configs/xml_curl.conf.xml")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"$${dialplan_url}", "$${dialplan_credentials}", "$${dialplan_timeout}"} {
		if !bytes.Contains(raw, []byte(`value="`+v+`"`)) {
			t.Errorf("xml_curl.conf.xml does not take %s from vars.xml", v)
		}
	}
}

func TestEventSocket(t *testing.T) {
	raw, err := os.ReadFile("autoload_configs/event_socket.conf.xml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`<param name="password" value="$${esl_password}"/>`,
		`<param name="listen-ip" value="$${esl_listen_ip}"/>`,
	} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("event_socket.conf.xml lacks %s", want)
		}
	}
	vars, err := os.ReadFile("vars.xml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`<X-PRE-PROCESS cmd="set" data="esl_password=`,
		`<X-PRE-PROCESS cmd="env-set" data="esl_password=$FS_ESL_PASSWORD"/>`,
	} {
		if !bytes.Contains(vars, []byte(want)) {
			t.Errorf("vars.xml lacks %s", want)
		}
	}

	doc, _ := document(t)
	acl := configuration(t, doc, "event_socket.conf").all("param")
	var list string
	for _, p := range acl {
		if p.attr("name") == "apply-inbound-acl" {
			list = p.attr("value")
		}
	}
	if list == "" {
		t.Fatal("event_socket.conf.xml has no apply-inbound-acl")
	}
	if _, ok := configuration(t, doc, "acl.conf").all("network-lists")[0].child("list", "name", list); !ok {
		t.Errorf("apply-inbound-acl %q is not a list in acl.conf.xml", list)
	}
}

func TestSwitchConf(t *testing.T) {
	doc, _ := document(t)
	params := configuration(t, doc, "switch.conf").all("settings")[0].params()
	num := func(name string) int {
		t.Helper()
		n, err := strconv.Atoi(params[name])
		if err != nil || n <= 0 {
			t.Errorf("switch.conf %s = %q, want a positive number set explicitly", name, params[name])
		}
		return n
	}
	num("max-sessions")
	num("sessions-per-second")
	if start, end := num("rtp-start-port"), num("rtp-end-port"); start >= end || end > 65535 {
		t.Errorf("rtp ports %d-%d are not a range", start, end)
	}
	// RTP takes even ports from start to end, both included; FreeSWITCH
	// rounds an odd bound inwards with a warning at start-up.
	vars := loadVars(t).vars
	for _, name := range []string{"rtp_start_port", "rtp_end_port"} {
		if n, err := strconv.Atoi(vars[name]); err != nil || n%2 != 0 {
			t.Errorf("vars.xml %s = %q, want an even port", name, vars[name])
		}
	}
}

// TestMediaTimeouts checks the media timeouts are set the supported way: as
// global defaults of the channel variables (milliseconds), not with the
// deprecated profile parameters.
func TestMediaTimeouts(t *testing.T) {
	vars := loadVars(t).vars
	for name, min := range map[string]int{"media_timeout": 60000, "media_hold_timeout": 60000} {
		if n, err := strconv.Atoi(vars[name]); err != nil || n < min {
			t.Errorf("vars.xml %s = %q, want milliseconds, at least %d", name, vars[name], min)
		}
	}
	doc, _ := document(t)
	for _, p := range configuration(t, doc, "sofia.conf").all("param") {
		if instead, ok := deprecatedParams[p.attr("name")]; ok {
			t.Errorf("sofia param %s is deprecated (FreeSWITCH warns at start): use %s", p.attr("name"), instead)
		}
	}
}

func TestSofia(t *testing.T) {
	doc, _ := document(t)
	contexts := map[string]bool{}
	for _, c := range section(t, doc, "dialplan").all("context") {
		contexts[c.attr("name")] = true
	}
	lists := map[string]bool{}
	for _, l := range configuration(t, doc, "acl.conf").all("list") {
		lists[l.attr("name")] = true
	}
	profiles := map[string]node{}
	for _, p := range configuration(t, doc, "sofia.conf").all("profile") {
		profiles[p.attr("name")] = p
	}
	for _, name := range []string{"internal", "external"} {
		p, ok := profiles[name]
		if !ok {
			t.Errorf("no sofia profile %q", name)
			continue
		}
		s := p.all("settings")[0].params()
		if !contexts[s["context"]] {
			t.Errorf("profile %s sends calls to context %q, which the dialplan lacks", name, s["context"])
		}
		if s["auth-calls"] == "false" && !lists[s["apply-inbound-acl"]] {
			t.Errorf("profile %s takes unauthenticated calls without an inbound ACL from acl.conf.xml (got %q)", name, s["apply-inbound-acl"])
		}
	}
	gws := profiles["external"].all("gateway")
	if len(gws) == 0 {
		t.Error("the external profile has no carrier gateway")
	}
	files, err := filepath.Glob("sip_profiles/external/*.xml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(gws) {
		t.Errorf("%d gateway files but %d gateways: keep one gateway per file", len(files), len(gws))
	}
	seen := map[string]bool{}
	for _, g := range gws {
		name := g.attr("name")
		if seen[name] {
			t.Errorf("gateway %q is defined twice", name)
		}
		seen[name] = true
		for _, want := range []string{"proxy", "username", "password", "register"} {
			if _, ok := g.params()[want]; !ok {
				t.Errorf("gateway %q has no %s", name, want)
			}
		}
	}
}

// TestStaticDialplan checks the static dialplan only refuses: the public
// context is the fallback when the controller cannot answer.
func TestStaticDialplan(t *testing.T) {
	doc, _ := document(t)
	dp := section(t, doc, "dialplan")
	for _, name := range []string{"public", "default"} {
		c, ok := dp.child("context", "name", name)
		if !ok {
			t.Errorf("no context %q", name)
			continue
		}
		var apps []string
		for _, a := range c.all("action") {
			apps = append(apps, a.attr("application"))
		}
		for _, app := range apps {
			if app == "bridge" || app == "transfer" || app == "execute_extension" {
				t.Errorf("context %s runs %s: the static dialplan must never route", name, app)
			}
		}
		if len(apps) == 0 || apps[len(apps)-1] != "hangup" {
			t.Errorf("context %s ends with %v, want a hangup", name, apps)
		}
		// Every extension keeps its leg's CDR record (callbridge.CDRHook),
		// set before anything else can end the call.
		for _, x := range c.all("extension") {
			var data []string
			for _, a := range x.all("action") {
				data = append(data, a.attr("application")+" "+a.attr("data"))
			}
			want := []string{"set " + callbridge.VarDollar + "=$", "set api_reporting_hook=" + callbridge.CDRHook(callbridge.CDRHookSetRef)}
			if x.attr("name") == "refuse" {
				continue // only a leg sent into context default by hand
			}
			if len(data) < 2 || !slices.Contains(data, want[0]) || !slices.Contains(data, want[1]) {
				t.Errorf("context %s extension %s does not set the CDR hook %q", name, x.attr("name"), want)
			}
		}
	}
}

// TestVarsEnvironment checks README.md documents every environment variable
// the configuration reads (vars.xml and the gateway files).
func TestVarsEnvironment(t *testing.T) {
	_, p := document(t)
	envs := slices.Clone(p.envs)
	sort.Strings(envs)
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range envs {
		if !bytes.Contains(readme, []byte(e)) {
			t.Errorf("README.md does not document %s", e)
		}
	}
}

// TestBindAddress checks both profiles bind SIP and RTP to the addresses
// FS_SIP_IP and FS_RTP_IP set, loopback by default, and advertise loopback
// too unless told otherwise: a bare-metal node must never listen on, or put
// in SDP, the host's own address by accident (issue 12).
func TestBindAddress(t *testing.T) {
	doc, p := document(t)
	for _, v := range []struct{ name, env string }{{"sip_ip", "FS_SIP_IP"}, {"rtp_ip", "FS_RTP_IP"}} {
		if got := p.vars[v.name]; got != "127.0.0.1" {
			t.Errorf("vars.xml: %s defaults to %q, want 127.0.0.1", v.name, got)
		}
		if got := p.env[v.name]; got != v.env {
			t.Errorf("vars.xml: %s is read from $%s, want $%s", v.name, got, v.env)
		}
	}
	for _, v := range []string{"external_ip", "internal_ip"} {
		if got := p.vars[v]; got != "127.0.0.1" {
			t.Errorf("vars.xml: %s defaults to %q, want the bind address 127.0.0.1", v, got)
		}
	}
	for _, prof := range configuration(t, doc, "sofia.conf").all("profile") {
		s := prof.all("settings")[0].params()
		for _, param := range []string{"sip-ip", "rtp-ip", "ext-sip-ip", "ext-rtp-ip"} {
			if got := s[param]; got != "127.0.0.1" {
				t.Errorf("profile %s: %s = %q by default, want 127.0.0.1", prof.attr("name"), param, got)
			}
		}
	}
}
