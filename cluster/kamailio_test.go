//go:build cluster

package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"callbridge/realswitch"
)

// kamailio is the repository's kamailio/kamailio.cfg running in the
// foreground on a free loopback UDP port, in front of nodes.
type kamailio struct {
	// Addr is where phones and carriers send INVITEs.
	Addr string
	ctl  string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// startKamailio runs Kamailio over the nodes' SIP addresses (host:port),
// probing them every second, and returns once every node is in service.
func startKamailio(nodes []string) (*kamailio, error) {
	bin, err := exec.LookPath("kamailio")
	if err != nil {
		return nil, errors.New("cluster: kamailio is not installed (Debian: apt-get install kamailio); scripts/test-cluster.sh installs it")
	}
	root, err := realswitch.RepoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "cluster-kamailio-")
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	var list strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&list, "1 sip:%s\n", n)
	}
	if err := os.WriteFile(filepath.Join(dir, "dispatcher.list"), []byte(list.String()), 0o644); err != nil {
		return nil, err
	}
	k := &kamailio{Addr: addr, ctl: "unix:" + filepath.Join(dir, "ctl"), dir: dir, done: make(chan struct{})}
	if k.log, err = os.Create(filepath.Join(dir, "kamailio.log")); err != nil {
		return nil, err
	}
	k.cmd = exec.Command(bin, "-f", filepath.Join(root, "kamailio", "kamailio.cfg"), "-DD", "-E",
		"-P", filepath.Join(dir, "kamailio.pid"), "-w", dir, "-m", "64", "-M", "8")
	k.cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"KAMAILIO_LISTEN=udp:" + addr,
		"KAMAILIO_DISPATCHER=" + filepath.Join(dir, "dispatcher.list"),
		"KAMAILIO_CTL=" + k.ctl,
		"KAMAILIO_PROBE_SECONDS=1",
		"KAMAILIO_FAILOVER_MS=1000",
	}
	k.cmd.Stdout, k.cmd.Stderr = k.log, k.log
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := k.cmd.Start(); err != nil {
		return nil, fmt.Errorf("cluster: start kamailio: %w", err)
	}
	go func() { k.cmd.Wait(); close(k.done) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := k.waitState(ctx, n, "AP"); err != nil {
			k.Stop()
			return nil, fmt.Errorf("%w\n%s", err, k.LogTail(3000))
		}
	}
	return k, nil
}

// kamcmd runs one kamcmd command on the control socket.
func (k *kamailio) kamcmd(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "kamcmd", append([]string{"-s", k.ctl}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("cluster: kamcmd %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// States returns each node's dispatcher flags (A active, I inactive, D
// disabled, P probing) by host:port.
func (k *kamailio) States(ctx context.Context) (map[string]string, error) {
	out, err := k.kamcmd(ctx, "dispatcher.list")
	if err != nil {
		return nil, err
	}
	states := map[string]string{}
	var uri string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "URI:":
			uri = strings.TrimPrefix(f[1], "sip:")
		case len(f) == 2 && f[0] == "FLAGS:" && uri != "":
			states[uri] = f[1]
		}
	}
	return states, nil
}

// waitState waits until node's flags are want.
func (k *kamailio) waitState(ctx context.Context, node, want string) error {
	var got string
	for {
		if st, err := k.States(ctx); err == nil {
			if got = st[node]; got == want {
				return nil
			}
		}
		select {
		case <-k.done:
			return errors.New("cluster: kamailio exited")
		case <-ctx.Done():
			return fmt.Errorf("cluster: node %s is %q in kamailio, want %q: %w", node, got, want, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Drain disables node: no new calls, and probes do not bring it back.
func (k *kamailio) Drain(ctx context.Context, node string) error {
	_, err := k.kamcmd(ctx, "dispatcher.set_state", "d", "1", "sip:"+node)
	return err
}

// Undrain puts node back in service.
func (k *kamailio) Undrain(ctx context.Context, node string) error {
	_, err := k.kamcmd(ctx, "dispatcher.set_state", "a", "1", "sip:"+node)
	return err
}

// LogTail returns the end of Kamailio's log.
func (k *kamailio) LogTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(k.dir, "kamailio.log"))
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Stop ends Kamailio and removes its directory.
func (k *kamailio) Stop() {
	k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(10 * time.Second):
		k.cmd.Process.Kill()
		<-k.done
	}
	k.log.Close()
	if os.Getenv("REALSWITCH_KEEP") == "" {
		os.RemoveAll(k.dir)
	}
}
