package esltest

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"

	"callbridge"

	"github.com/fiorix/go-eventsocket/eventsocket"
)

// An inbound leg routed by a dialplan that sets the CDR hook, and the leg
// its bridge creates, each leave a record in the hash realm with the
// billmsec and cause of their own CHANNEL_HANGUP_COMPLETE.
func TestCDRHookRecords(t *testing.T) {
	esc := func(s string) string {
		var b bytes.Buffer
		xml.EscapeText(&b, []byte(s))
		return b.String()
	}
	action := func(app, data string) string {
		return `<action application="` + app + `" data="` + esc(data) + `"/>`
	}
	doc := `<document type="freeswitch/xml"><section name="dialplan"><context name="public"><extension name="x">` +
		`<condition field="destination_number" expression="^5551234$">` +
		action("set", callbridge.VarDollar+"=$") +
		action("set", callbridge.VarBackslash+`=\\\\`) +
		action("set", "api_reporting_hook="+callbridge.CDRHook(callbridge.CDRHookSetRef)) +
		action("set", callbridge.VarLeg+"=inbound") +
		action("bridge", "{"+callbridge.VarLeg+"=outbound,"+callbridge.VarCallee+"=5551234,"+callbridge.VarDollar+"=$"+
			",execute_on_originate='set api_reporting_hook="+callbridge.CDRHook(callbridge.CDRHookBridgeRef)+"'}sofia/gateway/carrier/5551234") +
		`</condition></extension></context></section></document>`
	srv, _ := dialplanServer(t, doc)
	s := NewUnstartedServer()
	s.Speed = 50
	s.DialplanURL = srv.URL + "/fs/dialplan"
	s.DialplanUser, s.DialplanPassword = "fs", "secret"
	s.Start()
	defer s.Close()
	c, err := eventsocket.Dial(s.Addr(), "ClueCon")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if _, err := c.Send("event plain CHANNEL_HANGUP_COMPLETE"); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if ev, err := c.Send("api sim_inbound 15550001 5551234"); err != nil || !strings.HasPrefix(ev.Body, "+OK ") {
		t.Fatalf("sim_inbound: %v %v", ev, err)
	}
	complete := map[string]*eventsocket.Event{}
	readUntil(t, c, func(ev *eventsocket.Event) bool {
		complete[ev.Get("Unique-Id")] = ev
		return len(complete) == 2
	})
	ev, err := c.Send("api hash_dump db " + callbridge.CDRHookRealm)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(ev.Body)
	if len(lines) != 2 {
		t.Fatalf("records %q, want two", lines)
	}
	for _, line := range lines {
		id, rec, _ := strings.Cut(strings.TrimPrefix(line, "D/"+callbridge.CDRHookRealm+"_"), "/")
		hc := complete[id]
		if hc == nil {
			t.Errorf("record of %s, which did not hang up", id)
			continue
		}
		f := strings.Split(rec, ";")
		if len(f) != len(callbridge.CDRRecordFields())+1 {
			t.Fatalf("record %q has %d fields", rec, len(f))
		}
		for i, name := range callbridge.CDRRecordFields() {
			if want := hc.Get("Variable_" + name); f[i+1] != want {
				t.Errorf("%s: %s = %q, want %q as in its hangup", id, name, f[i+1], want)
			}
		}
	}
	if ev, err := c.Send("api hash delete/" + callbridge.CDRHookRealm + "/" + strings.Split(strings.TrimPrefix(lines[0], "D/"+callbridge.CDRHookRealm+"_"), "/")[0]); err != nil || ev.Body != "+OK\n" {
		t.Errorf("hash delete: %q %v", ev.Body, err)
	}
	if ev, _ := c.Send("api hash_dump db " + callbridge.CDRHookRealm); len(strings.Fields(ev.Body)) != 1 {
		t.Errorf("after a delete: %q", ev.Body)
	}
}
