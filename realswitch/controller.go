package realswitch

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BuildController builds cmd/callbridge into dir and returns the binary's
// path. Build it once per test binary: every controller of the suite runs
// it as a subprocess, as an operator would, so that tests can SIGKILL or
// SIGSTOP it.
func BuildController(dir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "callbridge")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/callbridge")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("realswitch: go build ./cmd/callbridge: %v\n%s", err, out)
	}
	return bin, nil
}

// ControllerConfig is how one `callbridge serve` process is run.
type ControllerConfig struct {
	// Binary is the callbridge binary (BuildController).
	Binary string
	// DatabaseURL is CALLBRIDGE_DATABASE_URL.
	DatabaseURL string
	// HTTPAddr is CALLBRIDGE_HTTP_ADDR: a fixed loopback host:port, so a
	// restarted controller comes back where FreeSWITCH's dialplan URL
	// points (FreePort).
	HTTPAddr string
	// ESL is CALLBRIDGE_ESL and ESLPassword CALLBRIDGE_ESL_PASSWORD.
	ESL         []string
	ESLPassword string
	// AdminToken is CALLBRIDGE_ADMIN_TOKEN; DialplanUser and
	// DialplanPassword authenticate FreeSWITCH on /fs/dialplan.
	AdminToken, DialplanUser, DialplanPassword string
	// Dir holds the spool and report directories.
	Dir string
	// Env holds further CALLBRIDGE_* variables; they win.
	Env map[string]string
}

// Controller is a running `callbridge serve` subprocess.
type Controller struct {
	// URL is the API's base URL, "http://127.0.0.1:port".
	URL string

	cfg  ControllerConfig
	cmd  *exec.Cmd
	log  *logBuffer
	done chan struct{}
	err  error
}

// StartController runs `callbridge serve` with cfg and returns once it
// listens (not yet ready: see WaitReady).
func StartController(cfg ControllerConfig) (*Controller, error) {
	env := map[string]string{
		"CALLBRIDGE_DATABASE_URL":      cfg.DatabaseURL,
		"CALLBRIDGE_HTTP_ADDR":         cfg.HTTPAddr,
		"CALLBRIDGE_ESL":               strings.Join(cfg.ESL, ","),
		"CALLBRIDGE_ESL_PASSWORD":      cfg.ESLPassword,
		"CALLBRIDGE_ADMIN_TOKEN":       cfg.AdminToken,
		"CALLBRIDGE_DIALPLAN_USER":     cfg.DialplanUser,
		"CALLBRIDGE_DIALPLAN_PASSWORD": cfg.DialplanPassword,
		"CALLBRIDGE_DIALPLAN_ALLOW":    "127.0.0.0/8",
		"CALLBRIDGE_WEBHOOK_SECRET":    "realswitch-webhook-secret",
		"CALLBRIDGE_GATEWAY":           "carrier",
		"CALLBRIDGE_SPOOL_DIR":         filepath.Join(cfg.Dir, "spool"),
		"CALLBRIDGE_REPORT_DIR":        filepath.Join(cfg.Dir, "reports"),
		"CALLBRIDGE_LOG_LEVEL":         "debug",
		"CALLBRIDGE_LOG_FORMAT":        "text",
		"CALLBRIDGE_MAX_CPS":           "50",
		"CALLBRIDGE_RATE_LIMIT":        "0",
		"CALLBRIDGE_DRAIN_TIMEOUT":     "5s",
	}
	// The suite's webhook receivers listen on loopback.
	env["CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE"] = "true"
	for k, v := range cfg.Env {
		env[k] = v
	}
	cmd := exec.Command(cfg.Binary, "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + cfg.Dir}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c := &Controller{cfg: cfg, cmd: cmd, log: &logBuffer{}, done: make(chan struct{})}
	// The whole log also goes to a file in Dir, kept with REALSWITCH_KEEP.
	file, err := os.OpenFile(filepath.Join(cfg.Dir, "controller.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = io.MultiWriter(c.log, file)
	if err := cmd.Start(); err != nil {
		file.Close()
		return nil, fmt.Errorf("realswitch: start controller: %w", err)
	}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "callbridge listening on "); ok {
				select {
				case listening <- addr:
				default:
				}
			}
		}
	}()
	go func() {
		c.err = cmd.Wait()
		file.Close()
		close(c.done)
	}()
	select {
	case addr := <-listening:
		c.URL = "http://" + addr
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("realswitch: controller exited before listening: %v\n%s", c.err, c.LogTail(4000))
	case <-time.After(60 * time.Second):
		c.Kill()
		return nil, fmt.Errorf("realswitch: controller did not listen within 60s\n%s", c.LogTail(4000))
	}
}

// WaitReady polls /readyz until the controller is ready and every node
// is connected.
func (c *Controller) WaitReady(ctx context.Context) error {
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", c.URL+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var body struct {
				Ready bool `json:"ready"`
				Nodes []struct {
					Connected bool `json:"connected"`
				} `json:"nodes"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			all := body.Ready && len(body.Nodes) > 0
			for _, n := range body.Nodes {
				all = all && n.Connected
			}
			if err == nil && all {
				return nil
			}
			last = fmt.Sprintf("%d %+v", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("realswitch: /readyz not ready: %s: %w", last, ctx.Err())
		case <-c.done:
			return fmt.Errorf("realswitch: controller exited: %v\n%s", c.err, c.LogTail(4000))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Signal sends sig to the process (SIGSTOP, SIGCONT...).
func (c *Controller) Signal(sig os.Signal) error { return c.cmd.Process.Signal(sig) }

// Kill sends SIGKILL and waits for the process to be gone.
func (c *Controller) Kill() {
	c.cmd.Process.Signal(syscall.SIGCONT)
	c.cmd.Process.Kill()
	<-c.done
}

// Stop sends SIGTERM (the controller drains) and waits up to limit for
// it to exit, then kills it.
func (c *Controller) Stop(limit time.Duration) error {
	c.cmd.Process.Signal(syscall.SIGCONT)
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return c.err
	case <-time.After(limit):
		c.Kill()
		return errors.New("realswitch: controller did not stop after SIGTERM; killed")
	}
}

// Done is closed when the process has exited.
func (c *Controller) Done() <-chan struct{} { return c.done }

// Log returns everything the controller logged.
func (c *Controller) Log() string { return c.log.String() }

// LogTail returns the last n bytes of Log, for failure messages.
func (c *Controller) LogTail(n int) string { return tail(c.Log(), n) }

// logBuffer collects a subprocess's output.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// PID is the controller process's id (for CPU accounting in measurements).
func (c *Controller) PID() int { return c.cmd.Process.Pid }
