package esl

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/esl/freeswitch"
)

// jobIDs matches the Job-UUIDs the client chooses, which differ per run.
var jobIDs = regexp.MustCompile(`Job-UUID: [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n`)

// TestWireBytes captures every byte the client writes, on both of its
// connections, and compares them with golden bytes: every line of every
// command ends in a bare LF and every command in a blank line, the framing
// mod_event_socket 1.10.12 reads as meant (a CR anywhere makes it cut the
// block at that CR instead). The client writes only these commands: auth,
// the event subscription, and bgapi with our Job-UUID (API results come as
// BACKGROUND_JOB events; there is no api, sendmsg or filter).
func TestWireBytes(t *testing.T) {
	f := newFakeFS(t)
	c, _ := connected(t, f, Config{ProbeInterval: -1, CommandTimeout: 5 * time.Second})
	bridge, err := freeswitch.UUIDBridge("11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222")
	if err != nil {
		t.Fatal(err)
	}
	const n = "4930123456"
	orig, err := freeswitch.Originate{UUID: "33333333-3333-4333-8333-333333333333", Endpoint: freeswitch.Gateway("carrier", n), Timeout: 30 * time.Second}.Command()
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []freeswitch.Command{freeswitch.Status(), bridge, freeswitch.ShowChannels(), orig} {
		if _, err := c.API(ctxT(t), cmd); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	raw := f.rawByConn()
	if len(raw) != 2 {
		t.Fatalf("client opened %d connections, want 2", len(raw))
	}
	const job = "Job-UUID: <id>\n"
	want := []string{
		// The command connection: auth, the readiness probe, then ours.
		"auth ClueCon\n\n" +
			"bgapi fsctl ready_check\n" + job + "\n" +
			"bgapi status\n" + job + "\n" +
			"bgapi uuid_bridge 11111111-1111-4111-8111-111111111111 22222222-2222-4222-8222-222222222222\n" + job + "\n" +
			"bgapi show channels as json\n" + job + "\n" +
			"bgapi originate {origination_uuid=33333333-3333-4333-8333-333333333333,originate_timeout=30,callbridge_callee=4930123456,callbridge_dollar=$}sofia/gateway/carrier/4930123456" +
			" set:api_reporting_hook=" + callbridge.CDRHook(callbridge.CDRHookSetRef) + ",park inline\n" + job + "\n",
		// The event connection.
		"auth ClueCon\n\n" +
			"event plain CHANNEL_CREATE CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA CHANNEL_ANSWER CHANNEL_PARK CHANNEL_BRIDGE CHANNEL_UNBRIDGE CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE CHANNEL_DESTROY BACKGROUND_JOB HEARTBEAT CUSTOM\n\n",
	}
	for i := range want {
		if strings.ContainsRune(raw[i], '\r') {
			t.Errorf("connection %d: a CR on the wire: %q", i, raw[i])
		}
		got := jobIDs.ReplaceAllString(raw[i], job)
		if got != want[i] {
			t.Errorf("connection %d sent\n%q\nwant\n%q", i, got, want[i])
		}
	}
}
