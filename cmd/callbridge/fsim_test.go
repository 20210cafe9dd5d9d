package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-eventsocket/eventsocket"
)

func TestRunFsim(t *testing.T) {
	script := filepath.Join(t.TempDir(), "script.json")
	if err := os.WriteFile(script, []byte(`{"rules":[{"prefix":"1555","outcome":"busy"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runFsim(ctx, []string{"--listen", "127.0.0.1:0", "--script", script, "--speed", "50"},
			func(string) string { return "" }, pw, io.Discard)
		pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	var addr string
	for lines.Scan() {
		if _, a, ok := strings.Cut(lines.Text(), "addr="); ok {
			addr = strings.Fields(a)[0]
			break
		}
	}
	if addr == "" {
		t.Fatalf("no listening line: %v", <-done)
	}
	go io.Copy(io.Discard, pr) // keep the logger from blocking

	c, err := eventsocket.Dial(addr, "ClueCon")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	// go-eventsocket turns an "-ERR ..." api/response into an error.
	if _, err := c.Send("api originate sofia/internal/15550000@127.0.0.1 &park()"); err == nil || strings.TrimSpace(err.Error()) != "USER_BUSY" {
		t.Errorf("originate error = %v, want USER_BUSY from the script", err)
	}
	c.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("runFsim: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("runFsim did not stop")
	}
}

func TestRunFsimBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--speed", "0"}, {"--password", ""}, {"extra"}, {"--nope"}} {
		err := runFsim(t.Context(), args, func(string) string { return "" }, io.Discard, io.Discard)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("runFsim(%q) = %v, want a usage error", args, err)
		}
	}
}
