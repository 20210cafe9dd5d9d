package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"callbridge/internal/wait"
	"callbridge/postgres/pgtest"

	"golang.org/x/sys/unix"
)

// TestDemoInterrupt runs `make demo` on a terminal of its own (a pseudo
// terminal whose session make leads, as a shell in a terminal window
// would start it), waits for the tour to end and the API to be left
// running, and types Ctrl-C: the terminal sends SIGINT to its foreground
// process group. make must exit 0 without reporting an error, the
// controller must drain and stop, then the simulator, and nothing may be
// left running.
func TestDemoInterrupt(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("make is needed to run the demo: %v", err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ptm, pts := openPty(t)
	logs := t.TempDir()
	httpPort, eslPort := freePort(t), freePort(t)
	db := pgtest.URL(t)

	cmd := exec.Command("make", "--no-print-directory", "demo")
	cmd.Dir = root
	cmd.Env = append(envWithout("CALLBRIDGE_", "DATABASE_URL", "DEMO_"),
		"DATABASE_URL="+db, "CALLBRIDGE_TEST_DATABASE_URL="+db, "CALLBRIDGE_DATABASE_URL="+db,
		"DEMO_HTTP_PORT="+strconv.Itoa(httpPort), "DEMO_ESL_PORT="+strconv.Itoa(eslPort),
		"DEMO_LOG_DIR="+logs, "TERM=dumb")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pts.Close()
	out := &lockedBuffer{}
	// drained closes when the terminal has nothing more to give: Linux
	// answers EIO on the master once every process holding the slave
	// end has exited.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		buf := make([]byte, 4096)
		for {
			n, err := ptm.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	killed := false
	t.Cleanup(func() {
		if !killed {
			// Whatever failed, leave nothing running: make's session
			// and the demo's own process groups.
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			killDemoProcesses(strconv.Itoa(httpPort))
		}
	})

	const ready = "Press Ctrl-C to stop"
	wait.ForState(t, "make demo to print "+strconv.Quote(ready), func() (bool, string) {
		select {
		case err := <-done:
			killed = true
			t.Fatalf("make demo ended before the API was left running: %v\n%s", err, out.String())
		default:
		}
		return strings.Contains(out.String(), ready), "\n" + out.String()
	}, wait.Within(4*time.Minute), wait.Every(200*time.Millisecond)) // a cold `make build` included
	if _, err := ptm.Write([]byte{0x03}); err != nil { // Ctrl-C, as typed
		t.Fatal(err)
	}
	select {
	case err := <-done:
		killed = true
		if err != nil {
			t.Errorf("make demo after Ctrl-C: %v, want exit status 0\n%s", err, out.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("make demo still running 90 s after Ctrl-C:\n%s", out.String())
	}
	// make has exited, but what the demo wrote last may still be in the
	// terminal's buffer, not yet read (CI once saw the output end at ^C).
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Errorf("the terminal stayed open 10 s after make exited: something still holds it")
	}
	text := out.String()
	for _, bad := range []string{"make: ***", "Error 130"} {
		if strings.Contains(text, bad) {
			t.Errorf("the demo's terminal shows %q after Ctrl-C:\n%s", bad, tail(text, 2000))
		}
	}
	if !strings.Contains(text, "demo: callbridge serve drained and stopped") {
		t.Errorf("the demo did not say the controller drained and stopped:\n%s", tail(text, 2000))
	}
	serveLog := readFile(t, filepath.Join(logs, "serve.log"))
	iDrain, iStop := strings.Index(serveLog, `msg="shutting down: draining"`), strings.Index(serveLog, "msg=stopped")
	if iDrain < 0 || iStop < iDrain {
		t.Errorf("serve.log does not show a drain then a stop:\n%s", tail(serveLog, 2000))
	}
	fsimLog := readFile(t, filepath.Join(logs, "fsim.log"))
	if !strings.Contains(fsimLog, "fsim: shutting down") {
		t.Errorf("fsim.log does not show the simulator stopping:\n%s", tail(fsimLog, 1000))
	}
	if left := demoProcesses(strconv.Itoa(httpPort)); len(left) > 0 {
		t.Errorf("processes left running after the demo: %v", left)
	}
	for _, port := range []int{httpPort, eslPort} {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
			c.Close()
			t.Errorf("port %d still answers after the demo ended", port)
		}
	}
}

// openPty opens a pseudo terminal and returns its master and slave ends,
// closed when the test ends.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the pty's slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// freePort returns a TCP port free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// envWithout is this process's environment without the variables whose
// names start with one of prefixes.
func envWithout(prefixes ...string) []string {
	var env []string
next:
	for _, kv := range os.Environ() {
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		env = append(env, kv)
	}
	return env
}

// demoProcesses lists the processes whose command line or environment
// names the demo's HTTP port: the controller, the simulator, the scripts.
func demoProcesses(port string) []string {
	var found []string
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		cmdline, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if bytes.Contains(env, []byte("DEMO_HTTP_PORT="+port+"\x00")) || bytes.Contains(cmdline, []byte("127.0.0.1:"+port)) {
			found = append(found, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
	}
	return found
}

// killDemoProcesses kills what demoProcesses finds.
func killDemoProcesses(port string) {
	for _, p := range demoProcesses(port) {
		pid, _ := strconv.Atoi(strings.Fields(p)[0])
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
