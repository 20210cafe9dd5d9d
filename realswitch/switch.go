package realswitch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"callbridge/esl"
	"callbridge/esl/freeswitch"
)

// SwitchConfig is how one FreeSWITCH is run.
type SwitchConfig struct {
	// Dir holds FreeSWITCH (run.sh, bin/, mod/): FREESWITCH_DIR, else
	// ../shared/freeswitch from the repository root.
	Dir string
	// Conf is the configuration directory: the repository's
	// freeswitch-conf/ when empty. It is used unchanged (but for Gateways).
	Conf string
	// DialplanURL is FS_DIALPLAN_URL, the controller's /fs/dialplan.
	DialplanURL string
	// DialplanCredentials is FS_DIALPLAN_CREDENTIALS (user:password).
	DialplanCredentials string
	// CarrierProxy is FS_CARRIER_PROXY: where the "carrier" gateway sends
	// every leg (host:port of the carrier sipp).
	CarrierProxy string
	// Gateways are carrier gateways besides "carrier". When there are
	// any, FreeSWITCH runs on a copy of Conf (in its state directory)
	// holding one more file per gateway in sip_profiles/external/: the
	// template carrier.xml with the gateway's name put in, as
	// freeswitch-conf/README.md says to add a gateway (GatewayFile).
	Gateways []Gateway
	// Env holds further FS_* variables (FS_MAX_SESSIONS...); they win over
	// the ones the harness picks.
	Env map[string]string
	// ESLPort, InternalSIPPort, ExternalSIPPort and ESLPassword are picked
	// (free ports, a random password) when zero; a test that restarts a
	// node where its clients expect it passes the old ones (Switch.Config).
	ESLPort, InternalSIPPort, ExternalSIPPort int
	ESLPassword                               string
}

// Gateway is a carrier gateway of a Switch besides "carrier".
type Gateway struct {
	// Name is the gateway's name, its file's (NAME.xml) and its
	// variables' prefix (FS_NAME_*): [a-z][a-z0-9_]*, not "carrier".
	Name string
	// Proxy is FS_NAME_PROXY: where the gateway sends every leg
	// (host:port of its carrier sipp).
	Proxy string
}

// gatewayName is what a Gateway may be called.
var gatewayName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,30}$`)

// GatewayFile returns the file of gateway name: the template
// freeswitch-conf/sip_profiles/external/carrier.xml with "carrier" and
// "CARRIER" replaced by name, in its case, as
// `sed 's/carrier/NAME/g; s/CARRIER/NAME/g'` does in
// freeswitch-conf/README.md.
func GatewayFile(template []byte, name string) []byte {
	return []byte(strings.NewReplacer("carrier", name, "CARRIER", strings.ToUpper(name)).Replace(string(template)))
}

// gatewayConf copies conf into dir and adds a file per gateway.
func gatewayConf(conf, dir string, gws []Gateway) error {
	if err := os.CopyFS(dir, os.DirFS(conf)); err != nil {
		return fmt.Errorf("realswitch: copy %s: %w", conf, err)
	}
	ext := filepath.Join(dir, "sip_profiles", "external")
	template, err := os.ReadFile(filepath.Join(ext, "carrier.xml"))
	if err != nil {
		return err
	}
	for _, g := range gws {
		if !gatewayName.MatchString(g.Name) || g.Name == "carrier" {
			return fmt.Errorf("realswitch: gateway name %q: want [a-z][a-z0-9_]*, not carrier", g.Name)
		}
		if err := os.WriteFile(filepath.Join(ext, g.Name+".xml"), GatewayFile(template, g.Name), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Switch is a running FreeSWITCH on loopback with its own ports.
type Switch struct {
	// ESLAddr and ESLPassword reach its event socket.
	ESLAddr, ESLPassword string
	// ExternalSIP is the external (carrier) profile's address, InternalSIP
	// the internal profile's: where test phones send INVITEs.
	ExternalSIP, InternalSIP string
	// RTPStart and RTPEnd are its RTP port range (even, its own).
	RTPStart, RTPEnd int
	// State is its state directory (log/, db/, run/...).
	State string
	// Conf is the configuration directory it runs with: the repository's
	// freeswitch-conf/, or its copy in State when SwitchConfig.Gateways
	// added gateway files (a test may add more there, then reloadxml).
	Conf string

	cfg    SwitchConfig
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	esl    *esl.Client
	stop   context.CancelFunc
	events *esl.Subscription

	eslLog logBuffer // the event connection's state changes and drops

	mu      sync.Mutex
	hangups map[string]freeswitch.Event // CHANNEL_HANGUP_COMPLETE by unique id
	changed chan struct{}               // closed and replaced when hangups grows
}

// FreeSWITCHDir returns the FreeSWITCH build the suite uses:
// FREESWITCH_DIR, else ../shared/freeswitch next to the repository root.
// The error says how to get one.
func FreeSWITCHDir() (string, error) {
	dir := os.Getenv("FREESWITCH_DIR")
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "..", "shared", "freeswitch")
	}
	if _, err := os.Stat(filepath.Join(dir, "run.sh")); err != nil {
		return "", fmt.Errorf("realswitch: no FreeSWITCH in %s (%v): set FREESWITCH_DIR to a FreeSWITCH 1.10 build holding run.sh, bin/ and mod/ "+
			"(the one in ../shared/freeswitch, see its README.md; or build v1.10.12 with the 15 modules of freeswitch-conf/autoload_configs/modules.conf.xml)", dir, err)
	}
	return filepath.Abs(dir)
}

// RepoRoot returns the repository root (the directory holding go.mod),
// searching up from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("realswitch: no go.mod above the working directory")
		}
		dir = parent
	}
}

// FreePort returns a loopback port free right now for both TCP and UDP
// (SIP listens on both).
func FreePort() (int, error) {
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return port, nil
	}
	return 0, errors.New("realswitch: no free port")
}

// The harness's ports on loopback come from three disjoint ranges, so the
// processes of a suite never take each other's: listening SIP, ESL and
// HTTP ports from the kernel's ephemeral range (FreePort; 32768-60999 on
// Linux), FreeSWITCH's RTP ranges from 20000-31999 (rtpRange) and sipp's
// media ports from 10000-19999 (sippMediaPort).
const (
	rtpLow, rtpHigh             = 20000, 32000
	sippMediaLow, sippMediaSpan = 10000, 10000
)

// rtpRange picks a random even range of n ports in 20000-31999 for one
// FreeSWITCH: below the ephemeral range, above sipp's media ports.
func rtpRange(n int) (start, end int) {
	start = rtpLow + 2*rand.IntN((rtpHigh-rtpLow-n)/2)
	return start, start + n - 1
}

// sippMediaNext is the next block sippMediaPort hands out, an index of
// four-port blocks in 10000-19999 starting at a random one.
var sippMediaNext atomic.Int64

func init() { sippMediaNext.Store(rand.Int64N(sippMediaSpan / 4)) }

// sippMediaPort returns the first of four consecutive loopback UDP ports
// free right now for a sipp instance's media (-mp): sipp binds its audio
// RTP there and its video RTP two above, with RTCP beside each. The blocks
// are handed out in turn, so no two sipp instances of this process share
// one while 2,500 blocks have not gone round, and a block some other
// process holds a port of is passed over.
func sippMediaPort() (int, error) {
	for range 50 {
		base := sippMediaLow + 4*int(sippMediaNext.Add(1)%(sippMediaSpan/4))
		if udpFree(base, 4) {
			return base, nil
		}
	}
	return 0, errors.New("realswitch: no free media ports for sipp in 10000-19999")
}

// udpFree reports whether the n loopback UDP ports from base can be bound.
func udpFree(base, n int) bool {
	var held []net.PacketConn
	defer func() {
		for _, pc := range held {
			pc.Close()
		}
	}()
	for p := base; p < base+n; p++ {
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		held = append(held, pc)
	}
	return true
}

// StartSwitch runs FreeSWITCH in the foreground (run.sh -nf -nonat) with
// cfg, on free loopback ports, and returns once its event socket accepts
// auth and the profiles run.
func StartSwitch(cfg SwitchConfig) (*Switch, error) {
	dir := cfg.Dir
	if dir == "" {
		var err error
		if dir, err = FreeSWITCHDir(); err != nil {
			return nil, err
		}
	}
	conf := cfg.Conf
	if conf == "" {
		root, err := RepoRoot()
		if err != nil {
			return nil, err
		}
		conf = filepath.Join(root, "freeswitch-conf")
	}
	state, err := os.MkdirTemp("", "realswitch-fs-")
	if err != nil {
		return nil, err
	}
	ports := [3]int{cfg.ESLPort, cfg.InternalSIPPort, cfg.ExternalSIPPort}
	for i := range ports {
		if ports[i] != 0 {
			continue
		}
		if ports[i], err = FreePort(); err != nil {
			return nil, err
		}
	}
	password := cfg.ESLPassword
	if password == "" {
		password = "realswitch-" + strconv.Itoa(rand.IntN(1e9))
	}
	s := &Switch{
		ESLAddr:     fmt.Sprintf("127.0.0.1:%d", ports[0]),
		ESLPassword: password,
		InternalSIP: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		ExternalSIP: fmt.Sprintf("127.0.0.1:%d", ports[2]),
		State:       state,
		done:        make(chan struct{}),
		hangups:     map[string]freeswitch.Event{},
		changed:     make(chan struct{}),
	}
	s.RTPStart, s.RTPEnd = rtpRange(400)
	s.cfg = cfg
	s.cfg.ESLPort, s.cfg.InternalSIPPort, s.cfg.ExternalSIPPort, s.cfg.ESLPassword = ports[0], ports[1], ports[2], password
	env := map[string]string{
		"FS_SIP_IP":               "127.0.0.1",
		"FS_RTP_IP":               "127.0.0.1",
		"FS_EXTERNAL_IP":          "127.0.0.1",
		"FS_INTERNAL_IP":          "127.0.0.1",
		"FS_ESL_LISTEN_IP":        "127.0.0.1",
		"FS_ESL_PORT":             strconv.Itoa(ports[0]),
		"FS_ESL_PASSWORD":         s.ESLPassword,
		"FS_INTERNAL_SIP_PORT":    strconv.Itoa(ports[1]),
		"FS_EXTERNAL_SIP_PORT":    strconv.Itoa(ports[2]),
		"FS_INTERNAL_ALLOW":       "127.0.0.0/8",
		"FS_CARRIER_ALLOW":        "127.0.0.0/8",
		"FS_RTP_START_PORT":       strconv.Itoa(s.RTPStart),
		"FS_RTP_END_PORT":         strconv.Itoa(s.RTPEnd),
		"FS_DIALPLAN_URL":         cfg.DialplanURL,
		"FS_DIALPLAN_CREDENTIALS": cfg.DialplanCredentials,
		"FS_CARRIER_PROXY":        cfg.CarrierProxy,
		"FS_CARRIER_REALM":        "carrier.test",
		"FS_MAX_SESSIONS":         "200",
		"FS_SESSIONS_PER_SECOND":  "100",
		// FreeSWITCH refuses every new call while idle CPU is below
		// min-idle-cpu, as it is on a loaded 2-core machine: results
		// must not depend on the load (overload is FS_MAX_SESSIONS).
		"FS_MIN_IDLE_CPU": "0",
	}
	if len(cfg.Gateways) > 0 {
		own := filepath.Join(state, "conf")
		if err := gatewayConf(conf, own, cfg.Gateways); err != nil {
			return nil, err
		}
		conf = own
		s.Conf = own
		for _, g := range cfg.Gateways {
			prefix := "FS_" + strings.ToUpper(g.Name) + "_"
			env[prefix+"PROXY"] = g.Proxy
			env[prefix+"REALM"] = g.Name + ".test"
		}
	}
	if s.Conf == "" {
		s.Conf = conf
	}
	for k, v := range cfg.Env {
		env[k] = v
	}
	cmd := exec.Command(filepath.Join(dir, "run.sh"), conf, state, "-nf", "-nonat")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + state}
	for k, v := range env {
		if v != "" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	// Its own process group: a signal to the test's group (^C) reaches
	// it through Stop, not twice.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.Create(filepath.Join(state, "stdout.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("realswitch: start FreeSWITCH: %w", err)
	}
	s.cmd = cmd
	go func() {
		s.err = cmd.Wait()
		out.Close()
		close(s.done)
	}()
	if err := s.connect(); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w\n%s", err, s.LogTail(4000))
	}
	return s, nil
}

// connect waits for the event socket to accept auth, and keeps a
// connection that records every channel's CHANNEL_HANGUP_COMPLETE.
func (s *Switch) connect() error {
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.esl = esl.NewClient(esl.Config{
		Name: "realswitch", Addr: s.ESLAddr, Password: s.ESLPassword,
		Events:     []freeswitch.EventName{freeswitch.ChannelHangupComplete},
		BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&s.eslLog, nil)),
	})
	s.events = s.esl.Subscribe(0)
	go s.esl.Run(ctx)
	go s.record()
	deadline := time.After(60 * time.Second)
	for s.esl.State() != esl.StateConnected {
		select {
		case <-s.done:
			return fmt.Errorf("realswitch: FreeSWITCH exited before its event socket accepted auth: %v", s.err)
		case <-deadline:
			return errors.New("realswitch: FreeSWITCH's event socket did not accept auth within 60s")
		case <-time.After(50 * time.Millisecond):
		}
	}
	// The event socket loads before sofia: wait for both profiles.
	for {
		out, err := s.API(ctx, "sofia status")
		if err == nil && strings.Count(out, "RUNNING") >= 2 {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("realswitch: FreeSWITCH exited: %v", s.err)
		case <-deadline:
			return fmt.Errorf("realswitch: sofia profiles not running within 60s: %s %v", out, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Switch) record() {
	for e := range s.events.C() {
		if e.Name != freeswitch.ChannelHangupComplete {
			continue
		}
		s.mu.Lock()
		s.hangups[strings.ToLower(e.Get("Unique-ID"))] = e
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
}

// API runs an api command on its own event-socket connection, framed
// as mod_event_socket reads it (every line ending in a bare LF), and
// returns the reply body.
func (s *Switch) API(ctx context.Context, cmd string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.ESLAddr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	r := bufio.NewReader(conn)
	if _, _, err := readFrame(r); err != nil {
		return "", err
	}
	if _, err := fmt.Fprintf(conn, "auth %s\n\n", s.ESLPassword); err != nil {
		return "", err
	}
	h, _, err := readFrame(r)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(h["Reply-Text"], "+OK") {
		return "", fmt.Errorf("realswitch: auth: %s", h["Reply-Text"])
	}
	if _, err := fmt.Fprintf(conn, "api %s\n\n", cmd); err != nil {
		return "", err
	}
	_, body, err := readFrame(r)
	return body, err
}

// readFrame reads one event-socket frame: headers, a blank line, and
// Content-Length bytes of body.
func readFrame(r *bufio.Reader) (map[string]string, string, error) {
	h := map[string]string{}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if len(h) == 0 {
				continue
			}
			break
		}
		k, v, _ := strings.Cut(line, ":")
		h[k] = strings.TrimSpace(v)
	}
	n, _ := strconv.Atoi(h["Content-Length"])
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, "", err
	}
	return h, string(body), nil
}

// Hangup waits until FreeSWITCH reports CHANNEL_HANGUP_COMPLETE for the
// channel uuid and returns that event (hangup cause, q850, billmsec, RTP
// counters as variable_*).
func (s *Switch) Hangup(ctx context.Context, uuid string) (freeswitch.Event, error) {
	uuid = strings.ToLower(uuid)
	for {
		s.mu.Lock()
		e, ok := s.hangups[uuid]
		changed := s.changed
		s.mu.Unlock()
		if ok {
			return e, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return freeswitch.Event{}, fmt.Errorf("realswitch: no CHANNEL_HANGUP_COMPLETE for %s: %w", uuid, ctx.Err())
		}
	}
}

// Attempts returns the CHANNEL_HANGUP_COMPLETE of every leg the bridge of
// a (a leg's own CHANNEL_HANGUP_COMPLETE) created, in the order it tried
// them, as its originate_causes lists them (freeswitch.ParseOriginateCauses):
// each names its gateway (variable_sip_gateway_name) and cause. A gateway
// that was DOWN created no leg and is not among them.
func (s *Switch) Attempts(ctx context.Context, a freeswitch.Event) ([]freeswitch.Event, error) {
	var out []freeswitch.Event
	for _, at := range freeswitch.ParseOriginateCauses(a.Var("originate_causes")) {
		e, err := s.Hangup(ctx, at.UUID)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Log returns FreeSWITCH's log file.
func (s *Switch) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.State, "log", "freeswitch.log"))
	out, _ := os.ReadFile(filepath.Join(s.State, "stdout.log"))
	return string(out) + s.eslLog.String() + string(b)
}

// LogTail returns the last n bytes of Log, for failure messages.
func (s *Switch) LogTail(n int) string { return tail(s.Log(), n) }

// Config returns the configuration the switch runs with, its ports and
// password filled in: StartSwitch(s.Config()) starts a node where s was.
func (s *Switch) Config() SwitchConfig { return s.cfg }

// Kill ends FreeSWITCH with SIGKILL, as a crash or a lost host would: its
// calls end without a hangup on the wire. Stop still removes its state.
func (s *Switch) Kill() {
	if s.stop != nil {
		s.stop()
	}
	s.cmd.Process.Kill()
	<-s.done
}

// Stop sends SIGTERM and waits for FreeSWITCH to exit and remove its pid
// file (SIGKILL after 30 s), then removes its state directory.
func (s *Switch) Stop() error {
	if s.stop != nil {
		s.stop()
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		return errors.New("realswitch: FreeSWITCH did not stop within 30s of SIGTERM; killed")
	}
	pid := filepath.Join(s.State, "run", "freeswitch.pid")
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(pid); err != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if os.Getenv("REALSWITCH_KEEP") == "" {
		os.RemoveAll(s.State)
	}
	return nil
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// PID is FreeSWITCH's process id (for CPU accounting in measurements).
func (s *Switch) PID() int { return s.cmd.Process.Pid }
