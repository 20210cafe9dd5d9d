//go:build realswitch

package realswitch_test

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"callbridge/realswitch"
)

// TestDialplanFallback: with the controller stopped, then hung (SIGSTOP),
// FreeSWITCH gets no dialplan over mod_xml_curl and the static fallback of
// freeswitch-conf/dialplan/public.xml answers: early media (183, the SIT
// tone), then 503. Hung, the refusal waits for mod_xml_curl's timeout
// (FS_DIALPLAN_TIMEOUT, 2 s); stopped, the connection is refused at once.
// It stops the controller, so it runs on an Env of its own.
func TestDialplanFallback(t *testing.T) {
	t.Parallel()
	own := startOwn(t, realswitch.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	refused := func(name, number string, minWait, maxWait time.Duration) {
		t.Helper()
		c, err := realswitch.Dial(ctx, own.Switch.ExternalSIP, realswitch.Number(531, "999"), number, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		inv, _ := c.Invite()
		f, ok := c.Final()
		if !ok || f.Status != 503 {
			t.Errorf("%s: final answer %d (%v), want 503", name, f.Status, ok)
		}
		early, ok := firstResponse(c, 183)
		if !ok || early.Header("Content-Type") != "application/sdp" {
			t.Errorf("%s: no 183 with SDP (the SIT tone as early media) before the 503", name)
		} else if wait := early.At.Sub(inv.At); wait < minWait || wait > maxWait {
			t.Errorf("%s: early media after %v, want %v to %v", name, wait, minWait, maxWait)
		} else {
			t.Logf("%s: 183 after %v, %d %s after %v", name, wait.Round(time.Millisecond), f.Status, reason(f), f.At.Sub(inv.At).Round(time.Millisecond))
		}
		if want := "callbridge: no dialplan from the controller for " + realswitch.Digits(number); !strings.Contains(own.Switch.Log(), want) {
			t.Errorf("%s: FreeSWITCH's log lacks %q", name, want)
		}
	}

	if err := own.Controller.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	refused("controller stopped", realswitch.Number(532, "901"), 0, 1900*time.Millisecond)

	if err := own.StartController(); err != nil {
		t.Fatal(err)
	}
	if err := own.Controller.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	refused("controller hung", realswitch.Number(533, "901"), 1900*time.Millisecond, 6*time.Second)
	if err := own.Controller.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// firstResponse returns the first response with status code to the INVITE.
func firstResponse(c realswitch.Call, code int) (realswitch.Message, bool) {
	for _, m := range c.Messages {
		if m.Status == code && m.CSeqMethod() == "INVITE" {
			return m, true
		}
	}
	return realswitch.Message{}, false
}

// reason is a response's reason phrase.
func reason(m realswitch.Message) string {
	first, _, _ := strings.Cut(m.Text, "\n")
	if f := strings.SplitN(strings.TrimSpace(first), " ", 3); len(f) == 3 {
		return f[2]
	}
	return ""
}
