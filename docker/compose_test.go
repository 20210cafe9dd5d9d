package docker

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
)

// controllerSettings are the environment variables the controller reads;
// the compose file must set every one of them.
var controllerSettings = []string{
	"CALLBRIDGE_DATABASE_URL", "CALLBRIDGE_HTTP_ADDR", "CALLBRIDGE_ESL",
	"CALLBRIDGE_ESL_PASSWORD", "CALLBRIDGE_ADMIN_TOKEN", "CALLBRIDGE_DIALPLAN_USER",
	"CALLBRIDGE_DIALPLAN_PASSWORD", "CALLBRIDGE_DIALPLAN_ALLOW", "CALLBRIDGE_WEBHOOK_SECRET",
	"CALLBRIDGE_LOG_LEVEL", "CALLBRIDGE_LOG_FORMAT", "CALLBRIDGE_SPOOL_DIR",
	"CALLBRIDGE_REPORT_DIR", "CALLBRIDGE_METRICS_ADDR", "CALLBRIDGE_DRAIN_TIMEOUT",
	"CALLBRIDGE_GATEWAY", "CALLBRIDGE_TIMEZONE",
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// compose loads docker-compose.yml with envFile as "docker compose
// config" does, through the compose specification's own Go library
// (github.com/compose-spec/compose-go/v2), so no Docker install is needed:
// variables are interpolated (${NAME:?} stops with an error naming NAME),
// the model is validated against the compose schema and normalised, and
// stdout is the resulting YAML. Only envFile is read: no variable of the
// shell running the test can stand in for a missing one.
func compose(t *testing.T, envFile string) (stdout, stderr string, err error) {
	t.Helper()
	file, absErr := filepath.Abs("docker-compose.yml")
	if absErr != nil {
		t.Fatal(absErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts, err := cli.NewProjectOptions([]string{file}, cli.WithName("callbridge"),
		cli.WithWorkingDirectory(filepath.Dir(file)), cli.WithEnvFiles(envFile), cli.WithDotEnv)
	if err != nil {
		return "", err.Error(), err
	}
	project, err := opts.LoadProject(ctx)
	if err != nil {
		return "", err.Error(), err
	}
	out, err := project.MarshalYAML()
	if err != nil {
		return "", err.Error(), err
	}
	return string(out), "", nil
}

// TestComposeConfig is what "docker compose config" says of the compose
// file with the example settings: it must be valid.
func TestComposeConfig(t *testing.T) {
	t.Parallel()
	env, err := filepath.Abs(".env.example")
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, err := compose(t, env)
	if err != nil {
		t.Fatalf("docker-compose config with .env.example: %v\n%s", err, stderr)
	}
	for _, want := range []string{"postgres:", "freeswitch:", "callbridge:", "condition: service_healthy"} {
		if !strings.Contains(out, want) {
			t.Errorf("docker-compose config output lacks %q", want)
		}
	}
}

// secrets must be set in .env: the compose file refuses to start without
// them rather than run with an empty password.
var secrets = []string{
	"POSTGRES_PASSWORD", "CALLBRIDGE_ESL_PASSWORD", "CALLBRIDGE_ADMIN_TOKEN",
	"CALLBRIDGE_DIALPLAN_PASSWORD", "CALLBRIDGE_WEBHOOK_SECRET", "FS_CARRIER_PASSWORD",
}

// TestComposeRequiresSecrets checks every secret is required with ${NAME:?},
// and that docker-compose really stops, naming the variable, when one is
// missing.
func TestComposeRequiresSecrets(t *testing.T) {
	t.Parallel()
	text := string(read(t, "docker-compose.yml"))
	for _, name := range secrets {
		if strings.Contains(text, "${"+name+":-") || strings.Contains(text, "${"+name+"}") || !strings.Contains(text, "${"+name+":?") {
			t.Errorf("docker-compose.yml does not require %s with ${%s:?message}", name, name)
		}
	}

	const missing = "POSTGRES_PASSWORD"
	var kept []string
	for _, line := range strings.Split(string(read(t, ".env.example")), "\n") {
		if !strings.HasPrefix(line, missing+"=") {
			kept = append(kept, line)
		}
	}
	env := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(env, []byte(strings.Join(kept, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := compose(t, env)
	if err == nil {
		t.Fatalf("docker-compose config succeeded without %s", missing)
	}
	if !strings.Contains(stderr, missing) {
		t.Errorf("the error does not name %s:\n%s", missing, stderr)
	}
}

// TestEnvExample checks .env.example lists exactly the variables the compose
// file reads, each with a comment above it or in its group.
func TestEnvExample(t *testing.T) {
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$\{([A-Z0-9_]+)`).FindAllStringSubmatch(string(read(t, "docker-compose.yml")), -1) {
		used[m[1]] = true
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(string(read(t, ".env.example")), "\n") {
		if name, _, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			listed[name] = true
		}
	}
	for name := range used {
		if !listed[name] {
			t.Errorf("docker-compose.yml reads %s, which .env.example does not list", name)
		}
	}
	for name := range listed {
		if !used[name] {
			t.Errorf(".env.example lists %s, which docker-compose.yml does not read", name)
		}
	}
}

// service returns the lines of one service's block in docker-compose.yml.
func service(t *testing.T, name string) string {
	t.Helper()
	text := string(read(t, "docker-compose.yml"))
	start := strings.Index(text, "\n  "+name+":\n")
	if start < 0 {
		t.Fatalf("no service %s in docker-compose.yml", name)
	}
	rest := text[start+1:]
	end := regexp.MustCompile(`\n  [a-z]|\n[a-z]`).FindStringIndex(rest[1:])
	if end == nil {
		return rest
	}
	return rest[:end[0]+1]
}

func envKeys(block, prefix string) []string {
	var keys []string
	for _, m := range regexp.MustCompile(`(?m)^\s+(`+prefix+`[A-Z0-9_]*):`).FindAllStringSubmatch(block, -1) {
		keys = append(keys, m[1])
	}
	sort.Strings(keys)
	return keys
}

// TestFreeSWITCHEnvironment checks the freeswitch service sets exactly the
// FS_* variables FreeSWITCH reads with env-set: those of
// ../freeswitch-conf/vars.xml and of the gateway files in gateways/.
func TestFreeSWITCHEnvironment(t *testing.T) {
	files, err := filepath.Glob("gateways/*.xml")
	if err != nil {
		t.Fatal(err)
	}
	var readVars []string
	for _, f := range append([]string{"../freeswitch-conf/vars.xml"}, files...) {
		for _, m := range regexp.MustCompile(`cmd="env-set" data="[a-z0-9_]+=\$(FS_[A-Z0-9_]+)"`).FindAllStringSubmatch(string(read(t, f)), -1) {
			readVars = append(readVars, m[1])
		}
	}
	sort.Strings(readVars)
	set := envKeys(service(t, "freeswitch"), "FS_")
	if !slices.Equal(readVars, set) {
		t.Errorf("freeswitch environment in docker-compose.yml = %v\nvars.xml and gateways/*.xml read %v", set, readVars)
	}
}

// TestGateways checks the compose file runs two carriers: gateways/ is
// mounted as FreeSWITCH's sip_profiles/external in place of
// freeswitch-conf's, holds freeswitch-conf's carrier.xml unchanged, and
// every other file in it is that template with the gateway's name put in
// (the command freeswitch-conf/README.md gives for adding a gateway), so a
// change to the template cannot leave the compose gateways behind.
func TestGateways(t *testing.T) {
	fs := service(t, "freeswitch")
	if !strings.Contains(fs, "\n      - ./gateways:/etc/freeswitch/sip_profiles/external:ro\n") {
		t.Errorf("the freeswitch service does not mount ./gateways as /etc/freeswitch/sip_profiles/external (read-only)")
	}
	template := string(read(t, "../freeswitch-conf/sip_profiles/external/carrier.xml"))
	files, err := filepath.Glob("gateways/*.xml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".xml")
		names = append(names, name)
		want := strings.NewReplacer("carrier", name, "CARRIER", strings.ToUpper(name)).Replace(template)
		if got := string(read(t, f)); got != want {
			t.Errorf("%s is not freeswitch-conf's carrier.xml with %q for \"carrier\": regenerate it with\n  sed 's/carrier/%s/g; s/CARRIER/%s/g' ../freeswitch-conf/sip_profiles/external/carrier.xml > %s", f, name, name, strings.ToUpper(name), f)
		}
	}
	if len(names) < 2 || !slices.Contains(names, "carrier") {
		t.Errorf("gateways/ holds %v, want carrier and at least one more carrier", names)
	}
}

func TestControllerEnvironment(t *testing.T) {
	set := envKeys(service(t, "callbridge"), "CALLBRIDGE_")
	for _, s := range controllerSettings {
		if !slices.Contains(set, s) {
			t.Errorf("the callbridge service does not set %s", s)
		}
	}
}

func TestDockerfile(t *testing.T) {
	df := string(read(t, "Dockerfile"))
	tests := []struct {
		what, pattern string
	}{
		{"multi-stage build", `(?s)FROM golang:\S+ AS build.*\nFROM \S+`},
		{"static binary", `CGO_ENABLED=0`},
		{"version stamped", `-X main\.version=\$\{VERSION\}`},
		{"non-root user", `(?m)^USER (65532|nonroot)`},
		{"healthcheck by the binary", `(?s)HEALTHCHECK .*CMD \["callbridge", "healthcheck"\]`},
		{"serve by default", `(?m)^CMD \["serve"\]`},
	}
	for _, tt := range tests {
		if !regexp.MustCompile(tt.pattern).MatchString(df) {
			t.Errorf("Dockerfile: no %s (want a match for %s)", tt.what, tt.pattern)
		}
	}
	if regexp.MustCompile(`(?m)^USER (root|0)\b`).MatchString(df) {
		t.Error("Dockerfile runs as root")
	}
}

// TestFreeSWITCHImageModules checks the FreeSWITCH image's build-time check
// covers every module the configuration loads.
func TestFreeSWITCHImageModules(t *testing.T) {
	df := string(read(t, "freeswitch/Dockerfile"))
	mods := regexp.MustCompile(`<load module="([a-z0-9_]+)"/>`).FindAllStringSubmatch(string(read(t, "../freeswitch-conf/autoload_configs/modules.conf.xml")), -1)
	if len(mods) == 0 {
		t.Fatal("no modules found in modules.conf.xml")
	}
	for _, m := range mods {
		if !regexp.MustCompile(`\b` + m[1] + `\b`).MatchString(df) {
			t.Errorf("freeswitch/Dockerfile does not check that %s is installed", m[1])
		}
	}
}

// TestFreeSWITCHImagePrompts checks the FreeSWITCH image's build fails
// unless every prompt file callbridge plays by default is installed: the
// defaults are read from the settings table of docs/configuration.md,
// which a test in cmd/callbridge holds to the code.
func TestFreeSWITCHImagePrompts(t *testing.T) {
	df := string(read(t, "freeswitch/Dockerfile"))
	loop := regexp.MustCompile(`for f in ([a-z0-9_ -]+); do \\\n\s+test -f "([^"$]+)\$f\.wav" \|\| \{`).FindStringSubmatch(df)
	if loop == nil {
		t.Fatal("freeswitch/Dockerfile has no build-time test -f loop over the prompt files")
	}
	checked := map[string]bool{}
	for _, f := range strings.Fields(loop[1]) {
		checked[loop[2]+f+".wav"] = true
	}
	defaults := regexp.MustCompile("(?m)^\\| `CALLBRIDGE_PROMPT_[A-Z_]+` \\| `([^`]+)` \\|").FindAllStringSubmatch(string(read(t, "../docs/configuration.md")), -1)
	if len(defaults) < 4 {
		t.Fatalf("docs/configuration.md lists %d CALLBRIDGE_PROMPT_* defaults, want 4", len(defaults))
	}
	for _, m := range defaults {
		if !checked[m[1]] {
			t.Errorf("freeswitch/Dockerfile does not check that %s is installed", m[1])
		}
	}
}

// TestRTPRangeEven checks the RTP range the compose file and .env.example
// default to is even at both ends: FreeSWITCH uses the even ports from start
// to end, and rounds an odd bound inwards with a warning.
func TestRTPRangeEven(t *testing.T) {
	compose := string(read(t, "docker-compose.yml"))
	env := string(read(t, ".env.example"))
	for _, name := range []string{"FS_RTP_START_PORT", "FS_RTP_END_PORT"} {
		defaults := regexp.MustCompile(`\$\{`+name+`:-([0-9]+)\}`).FindAllStringSubmatch(compose, -1)
		if len(defaults) == 0 {
			t.Errorf("docker-compose.yml has no default for %s", name)
		}
		example := regexp.MustCompile(`(?m)^`+name+`=([0-9]+)$`).FindAllStringSubmatch(env, -1)
		if len(example) != 1 {
			t.Errorf(".env.example sets %s %d times, want once", name, len(example))
		}
		for _, m := range append(defaults, example...) {
			if n, _ := strconv.Atoi(m[1]); n%2 != 0 {
				t.Errorf("%s = %s: want an even port", name, m[1])
			}
		}
	}
}

// TestFreeSWITCHHealthcheck checks the freeswitch service is healthy only
// while its event socket answers (FreeSWITCH runs on without one when the
// port is taken: freeswitch-conf/README.md), and that callbridge waits for
// that.
func TestFreeSWITCHHealthcheck(t *testing.T) {
	fs := service(t, "freeswitch")
	if !regexp.MustCompile(`test: \["CMD-SHELL", "fs_cli -H 127\.0\.0\.1 -P \\"\$\$FS_ESL_PORT\\" -p \\"\$\$FS_ESL_PASSWORD\\" -x status \| grep -q '\^UP'"\]`).MatchString(fs) {
		t.Errorf("the freeswitch healthcheck does not ask the event socket on FS_ESL_PORT for status:\n%s", fs)
	}
	if !regexp.MustCompile(`(?m)^      freeswitch:\n        condition: service_healthy$`).MatchString(service(t, "callbridge")) {
		t.Error("callbridge does not wait for a healthy freeswitch (depends_on condition: service_healthy)")
	}
}
