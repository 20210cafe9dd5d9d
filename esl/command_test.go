package esl

import (
	"strings"
	"testing"

	"callbridge/esl/freeswitch"
)

// hostile is a corpus of values that must never reach the wire: control
// and non-ASCII bytes, which the write path refuses whatever a builder let
// through, and text that would change an originate's meaning, which the
// builders refuse (package freeswitch tests every builder with a larger
// corpus).
var hostile = []string{
	"a\r\nexit", "a\nb", "a\rb", "\n", "a\x00b", "a\tb", "ä", "😀", "\xff", "a\x7fb",
	"a\r\n\r\nbgapi hupall", "{x=y}", "a,b", "${sip_h_x}", "x}sofia/gateway/evil/1 &park()", "",
}

// TestNothingHostileWritten tries every hostile value through the client
// and checks what the server received: nothing beyond the subscription.
func TestNothingHostileWritten(t *testing.T) {
	f := newFakeFS(t)
	c, _ := connected(t, f, Config{})
	before := f.rawReceived()
	for _, v := range hostile {
		if v == "" {
			v = "\x00" // an empty variable value is legitimately accepted
		}
		_, err := c.Originate(ctxT(t), freeswitch.Originate{Endpoint: freeswitch.Gateway("g", "4930123456"), Vars: []freeswitch.Var{{Name: "x", Value: v}}})
		if err == nil {
			t.Errorf("originate with %q accepted", v)
		}
		// A line no builder would make, standing for a builder that let
		// a control or non-ASCII byte through, is stopped on the write
		// path.
		if checkLine(v) == nil {
			continue
		}
		if _, err := c.bgapi(ctxT(t), "status"+v, "", 0); err == nil {
			t.Errorf("raw command with %q written", v)
		}
	}
	if _, err := c.BgAPI(ctxT(t), freeswitch.Command{}); err == nil {
		t.Error("zero Command accepted")
	}
	raw := f.rawReceived()[len(before):]
	if raw != "" {
		t.Errorf("server received %q", raw)
	}
	for _, bad := range []string{"exit", "hupall", "\x00", "{x=y}", "sofia/gateway/evil"} {
		if strings.Contains(raw, bad) {
			t.Errorf("server received %q in:\n%q", bad, raw)
		}
	}
	for _, cmd := range f.commandLines() {
		if strings.HasPrefix(cmd, "bgapi originate") {
			t.Errorf("server received an originate: %q", cmd)
		}
	}
}

func TestReplyErrorCause(t *testing.T) {
	for _, tt := range []struct{ text, want string }{
		{"-ERR USER_BUSY", "USER_BUSY"},
		{"-ERR No such channel!", "No such channel!"},
		{"-USAGE: <uuid>", "<uuid>"},
		{"-ERR", ""},
	} {
		if got := (&ReplyError{Text: tt.text}).Cause(); got != tt.want {
			t.Errorf("Cause(%q): got %q, want %q", tt.text, got, tt.want)
		}
	}
}
