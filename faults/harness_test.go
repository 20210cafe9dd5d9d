//go:build faults

package faults

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"callbridge/esl/esltest"
	"callbridge/internal/wait"
	"callbridge/postgres/pgtest"
)

// binary is the callbridge binary built by TestMain.
var binary string

// TestMain builds the real binary once; every scenario runs it as a
// subprocess, as an operator would. CALLBRIDGE_FAULT_RACE=1 builds it with
// the race detector (slower; a race report makes the process fail).
// CALLBRIDGE_FAULT_BINARY=<path> runs a binary built beforehand instead.
// CALLBRIDGE_FAULT_LOGS=<dir> keeps every controller's whole log in dir.
func TestMain(m *testing.M) {
	if b := os.Getenv("CALLBRIDGE_FAULT_BINARY"); b != "" {
		binary = b
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "callbridge-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "callbridge")
	args := []string{"build", "-o", binary}
	if os.Getenv("CALLBRIDGE_FAULT_RACE") == "1" {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "callbridge/cmd/callbridge")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "faults: go build:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// envDuration reads a duration from the environment, else def.
func envDuration(t testing.TB, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}

// lockedBuffer collects a subprocess's output for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tail returns the last n bytes of s, for readable failures.
func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// freeAddr returns a loopback address with a port free right now. A
// controller's lease owner is its host and HTTP address, so a restarted
// controller must come back on the same one and two controllers must not
// share one.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// controllerConfig is how one `callbridge serve` process is run.
type controllerConfig struct {
	DatabaseURL string
	ESL         []string
	HTTPAddr    string // "" picks a free one
	SpoolDir    string // "" makes a temporary one
	Env         map[string]string
}

// controller is a running `callbridge serve` subprocess.
type controller struct {
	t       testing.TB
	cfg     controllerConfig
	cmd     *exec.Cmd
	base    string
	stderr  *lockedBuffer
	done    chan struct{}
	waitErr error
}

// adminToken is the admin token every controller of the suite runs with.
const adminToken = "fault-admin-token"

// startController runs the binary's serve command and returns once it
// listens. The process is killed when the test ends if it still runs.
func startController(t testing.TB, cfg controllerConfig) *controller {
	t.Helper()
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = freeAddr(t)
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = t.TempDir()
	}
	env := map[string]string{
		"CALLBRIDGE_DATABASE_URL": cfg.DatabaseURL,
		"CALLBRIDGE_HTTP_ADDR":    cfg.HTTPAddr,
		"CALLBRIDGE_ESL":          strings.Join(cfg.ESL, ","),
		"CALLBRIDGE_ADMIN_TOKEN":  adminToken,
		"CALLBRIDGE_SPOOL_DIR":    cfg.SpoolDir,
		"CALLBRIDGE_REPORT_DIR":   t.TempDir(),
		"CALLBRIDGE_LOG_LEVEL":    "info",
		"CALLBRIDGE_LOG_FORMAT":   "text",
		"CALLBRIDGE_MAX_CPS":      "200",
		"CALLBRIDGE_RATE_LIMIT":   "0",
	}
	for k, v := range cfg.Env {
		env[k] = v
	}
	cmd := exec.Command(binary, "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &controller{t: t, cfg: cfg, cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "callbridge listening on "); ok {
				listening <- addr
			}
		}
	}()
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			cmd.Process.Kill()
			<-c.done
		}
		if dir := os.Getenv("CALLBRIDGE_FAULT_LOGS"); dir != "" {
			name := fmt.Sprintf("%s-%s-%d.log", strings.ReplaceAll(t.Name(), "/", "_"), strings.ReplaceAll(cfg.HTTPAddr, ":", "_"), cmd.Process.Pid)
			os.WriteFile(filepath.Join(dir, name), []byte(c.stderr.String()), 0o644)
		}
		if t.Failed() {
			t.Logf("controller %s log:\n%s", cfg.HTTPAddr, tail(c.stderr.String(), 6000))
		}
	})
	select {
	case addr := <-listening:
		c.base = "http://" + addr
	case <-c.done:
		t.Fatalf("controller exited before listening: %v\n%s", c.waitErr, tail(c.stderr.String(), 4000))
	case <-time.After(60 * time.Second):
		t.Fatalf("controller did not listen within 60s\n%s", tail(c.stderr.String(), 4000))
	}
	return c
}

// signal sends sig to the process.
func (c *controller) signal(sig os.Signal) {
	c.t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitLog waits up to limit for the process to log a line containing
// text: a signal is asynchronous, and its effect shows in the log.
func (c *controller) waitLog(text string, limit time.Duration) {
	c.t.Helper()
	wait.For(c.t, "the controller to log "+strconv.Quote(text), func() bool {
		return strings.Contains(c.stderr.String(), text)
	}, wait.Within(limit), wait.Every(10*time.Millisecond))
}

// wait waits up to limit for the process to exit and returns its exit
// code (-1 when killed by a signal); it fails the test on timeout.
func (c *controller) wait(limit time.Duration) int {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(limit):
		c.t.Fatalf("controller did not exit within %v", limit)
	}
	return c.cmd.ProcessState.ExitCode()
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *controller) kill() {
	c.t.Helper()
	c.signal(syscall.SIGKILL)
	c.wait(30 * time.Second)
}

// response is an HTTP answer of the API.
type response struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

// do calls the API; a transport error is returned as status 0.
func (c *controller) do(method, path, token, body string) response {
	return c.doWith(method, path, token, body, nil)
}

// doWith is do with more request headers.
func (c *controller) doWith(method, path, token, body string, header map[string]string) response {
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return response{Raw: []byte(err.Error())}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	json.Unmarshal(raw, &r.Body)
	return r
}

// waitReady polls /readyz until the database answers and every node is
// connected.
func (c *controller) waitReady() {
	c.t.Helper()
	wait.ForState(c.t, "/readyz ready with every node connected", func() (bool, string) {
		r := c.do("GET", "/readyz", "", "")
		if r.Status != 200 || r.Body["ready"] != true {
			return false, fmt.Sprintf("%d %s", r.Status, r.Raw)
		}
		nodes, _ := r.Body["nodes"].([]any)
		for _, n := range nodes {
			if m, _ := n.(map[string]any); m["connected"] != true {
				return false, fmt.Sprintf("%d %s", r.Status, r.Raw)
			}
		}
		return true, ""
	}, wait.Every(50*time.Millisecond))
}

// createAccount creates an account through the admin API and returns its
// id and API key.
func (c *controller) createAccount(name string) (id, key string) {
	c.t.Helper()
	r := c.do("POST", "/v1/admin/accounts", adminToken, fmt.Sprintf(`{"name":%q,"service_number":"+49 30 1234567","currency":"EUR"}`, name))
	if r.Status != 201 {
		c.t.Fatalf("create account: %d %s", r.Status, r.Raw)
	}
	acct, _ := r.Body["account"].(map[string]any)
	id, _ = acct["id"].(string)
	if id == "" {
		id, _ = r.Body["id"].(string)
	}
	key, _ = r.Body["api_key"].(string)
	if key == "" {
		c.t.Fatalf("create account answered no api_key: %s", r.Raw)
	}
	return id, key
}

// callbackBody is a callback request from a to b.
func callbackBody(a, b string) string {
	return fmt.Sprintf(`{"a":%q,"b":%q,"ring_timeout_a":20,"ring_timeout_b":20}`, a, b)
}

// postCallback asks for a callback and returns its id (202), or "" with
// the response for any other answer.
func (c *controller) postCallback(key, a, b string) (string, response) {
	return c.postCallbackOnce(key, "", a, b)
}

// postCallbackOnce is postCallback with an Idempotency-Key (none when
// idem is "").
func (c *controller) postCallbackOnce(key, idem, a, b string) (string, response) {
	var h map[string]string
	if idem != "" {
		h = map[string]string{"Idempotency-Key": idem}
	}
	r := c.doWith("POST", "/v1/callbacks", key, callbackBody(a, b), h)
	if r.Status != 202 {
		return "", r
	}
	id, _ := r.Body["id"].(string)
	return id, r
}

// openDB opens the assertions' own connection to a test database (never
// through a fault proxy).
func openDB(t testing.TB, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(4)
	t.Cleanup(func() { db.Close() })
	return db
}

// newDatabase creates a fresh migrated database and returns its URL and a
// connection for assertions.
func newDatabase(t testing.TB) (string, *sql.DB) {
	t.Helper()
	u := pgtest.URL(t)
	return u, openDB(t, u)
}

// newNode starts a simulated FreeSWITCH node running speed× real time.
func newNode(t testing.TB, speed float64, script string) *esltest.Server {
	t.Helper()
	fs := esltest.NewUnstartedServer()
	fs.Speed = speed
	if script != "" {
		s, err := esltest.ParseScript([]byte(script))
		if err != nil {
			t.Fatal(err)
		}
		fs.Script = s
	}
	fs.Start()
	t.Cleanup(fs.Close)
	return fs
}

// waitFor polls cond every 100 ms until it holds, failing the test after
// limit: the scenarios' bounds are part of what they assert (a drain, an
// outage) or longer than wait.Limit.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	wait.ForState(t, what, cond, wait.Within(limit), wait.Every(100*time.Millisecond))
}

// callbackStatuses returns every callback's status (and reason) by id.
// Void rows are not callbacks: they hold the ids of creations answered
// with an error (sql/0018_callback_void.sql).
func callbackStatuses(t testing.TB, db *sql.DB) map[string]string {
	t.Helper()
	var rows []struct {
		ID     string `db:"id"`
		Status string `db:"status"`
		Reason string `db:"reason"`
	}
	if err := pgtest.Select(context.Background(), db, &rows, `SELECT id, status, coalesce(reason, '') AS reason FROM callbacks WHERE status <> 'void'`); err != nil {
		t.Fatalf("list callbacks: %v", err)
	}
	out := map[string]string{}
	for _, r := range rows {
		s := r.Status
		if r.Reason != "" {
			s += "/" + r.Reason
		}
		out[r.ID] = s
	}
	return out
}

// allFinal reports whether every callback of ids is completed or failed.
func allFinal(t testing.TB, db *sql.DB, ids []string) (bool, string) {
	st := callbackStatuses(t, db)
	counts := map[string]int{}
	final := true
	for _, id := range ids {
		s, ok := st[id]
		if !ok {
			s = "missing"
		}
		counts[s]++
		if !strings.HasPrefix(s, "completed") && !strings.HasPrefix(s, "failed") {
			final = false
		}
	}
	return final, fmt.Sprintf("callback states %v", counts)
}

// originateUUID finds the origination_uuid of an originate command.
var originateUUID = regexp.MustCompile(`origination_uuid=([0-9a-fA-F-]{36})`)

// originated returns, for every originate the nodes received, its
// origination_uuid and how many times it was sent.
func originated(nodes ...*esltest.Server) map[string]int {
	out := map[string]int{}
	for _, fs := range nodes {
		for _, cmd := range fs.Commands() {
			line, _, _ := strings.Cut(cmd, "\n")
			if !strings.Contains(line, "originate ") {
				continue
			}
			if m := originateUUID.FindStringSubmatch(line); m != nil {
				out[strings.ToLower(m[1])]++
			}
		}
	}
	return out
}

// liveUUIDs returns the channels the nodes still have.
func liveUUIDs(nodes ...*esltest.Server) map[string]bool {
	out := map[string]bool{}
	for _, fs := range nodes {
		for _, ch := range fs.Channels() {
			out[strings.ToLower(ch.UUID)] = true
		}
	}
	return out
}

// cdrCounts returns how many CDR rows each channel uuid has, and the flags
// of each.
func cdrCounts(t testing.TB, db *sql.DB) (map[string]int, map[string]string) {
	t.Helper()
	var rows []struct {
		UUID  string `db:"uuid"`
		Flags string `db:"flags"`
	}
	if err := pgtest.Select(context.Background(), db, &rows, `SELECT uuid::text AS uuid, array_to_string(flags, ',') AS flags FROM cdrs`); err != nil {
		t.Fatalf("list cdrs: %v", err)
	}
	n, flags := map[string]int{}, map[string]string{}
	for _, r := range rows {
		n[r.UUID]++
		flags[r.UUID] = r.Flags
	}
	return n, flags
}

// checkCDRs asserts that every channel in want has exactly one CDR and
// that no channel has more than one; it returns a description of what is
// missing for polling.
func checkCDRs(t testing.TB, db *sql.DB, want map[string]bool) (bool, string) {
	t.Helper()
	got, _ := cdrCounts(t, db)
	var missing, dup []string
	for u := range want {
		if got[u] == 0 {
			missing = append(missing, u)
		}
	}
	for u, n := range got {
		if n > 1 {
			dup = append(dup, fmt.Sprintf("%s×%d", u, n))
		}
	}
	if len(dup) > 0 {
		sort.Strings(dup)
		t.Fatalf("CDRs written twice: %v", dup)
	}
	sort.Strings(missing)
	n := len(missing)
	if n > 5 {
		missing = missing[:5]
	}
	var about []string
	for _, u := range missing {
		about = append(about, describeLeg(t, db, u))
	}
	return n == 0, fmt.Sprintf("%d of %d channels lack a CDR, e.g. %s; %d CDRs in all", n, len(want), strings.Join(about, "; "), len(got))
}

// describeLeg says what the database knows of a channel: its callback leg
// and the callback's state, and whether it is in live_channels.
func describeLeg(t testing.TB, db *sql.DB, uuid string) string {
	t.Helper()
	var leg struct {
		Callback string `db:"callback_id"`
		Leg      string `db:"leg"`
		Attempt  int    `db:"attempt"`
		Status   string `db:"status"`
		Reason   string `db:"reason"`
		Hangup   string `db:"hangup_cause"`
	}
	err := pgtest.Get(context.Background(), db, &leg, `SELECT l.callback_id, l.leg, l.attempt, c.status, coalesce(c.reason, '') AS reason, coalesce(l.hangup_cause, '') AS hangup_cause
		FROM callback_legs l JOIN callbacks c ON c.id = l.callback_id WHERE l.uuid = $1`, uuid)
	what := uuid + ": "
	if err != nil {
		what += "no callback leg"
	} else {
		what += fmt.Sprintf("leg %s#%d of callback %s (%s %s, leg cause %q)", leg.Leg, leg.Attempt, leg.Callback, leg.Status, leg.Reason, leg.Hangup)
	}
	var live int
	pgtest.Get(context.Background(), db, &live, `SELECT count(*) FROM live_channels WHERE uuid = $1`, uuid)
	return what + fmt.Sprintf(", %d in live_channels", live)
}

// spoolFiles lists the batch files left in a spool directory.
func spoolFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.cdrs"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// hungUp returns the originated channels the nodes no longer have: each
// must have exactly one CDR.
func hungUp(nodes ...*esltest.Server) map[string]bool {
	live := liveUUIDs(nodes...)
	out := map[string]bool{}
	for u := range originated(nodes...) {
		if !live[u] {
			out[u] = true
		}
	}
	return out
}

// inboundCalls places n unrouted inbound calls (each hangs up at once with
// NO_ROUTE_DESTINATION and must still get a CDR) and returns their uuids.
func inboundCalls(t testing.TB, fs *esltest.Server, n int) []string {
	t.Helper()
	var out []string
	for i := 0; i < n; i++ {
		u, err := fs.Inbound(context.Background(), fmt.Sprintf("4915100%05d", i), "4930999000")
		if err != nil {
			t.Fatalf("inbound call: %v", err)
		}
		out = append(out, strings.ToLower(u))
	}
	return out
}
