//go:build realswitch

package esl_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/esl"
	"callbridge/esl/esltest"
	"callbridge/esl/freeswitch"
	"callbridge/internal/wait"
	"callbridge/realswitch"
)

// parkDialplan is what the test's mod_xml_curl server answers for every
// call: answer, then park, so originated loopback legs stay up answered.
const parkDialplan = `<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<document type="freeswitch/xml">
  <section name="dialplan">
    <context name="public">
      <extension name="answer_and_park">
        <condition field="destination_number" expression="^.*$">
          <action application="answer"/>
          <action application="park"/>
        </condition>
      </extension>
    </context>
  </section>
</document>
`

// startRealSwitch runs a real FreeSWITCH (FREESWITCH_DIR, default
// ../shared/freeswitch) with the repository's freeswitch-conf on free
// loopback ports, its dialplan served by the test: every call is answered
// and parked.
func startRealSwitch(t *testing.T) *realswitch.Switch {
	t.Helper()
	dp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		io.WriteString(w, parkDialplan)
	}))
	t.Cleanup(dp.Close)
	sw, err := realswitch.StartSwitch(realswitch.SwitchConfig{DialplanURL: dp.URL, DialplanCredentials: "test:test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(sw.LogTail(3000))
		}
		sw.Stop()
	})
	return sw
}

// TestRealSwitchCommands proves on a real FreeSWITCH 1.10.12 that every
// command the client sends works as framed: the connection's probe (bgapi
// with our Job-UUID) passes, a bgapi's BACKGROUND_JOB carries our
// Job-UUID, "show channels as json" answers JSON, two parked loopback legs
// are bridged by uuid_bridge, and uuid_kill hangs one up.
func TestRealSwitchCommands(t *testing.T) {
	sw := startRealSwitch(t)
	c := esl.NewClient(esl.Config{Name: "real", Addr: sw.ESLAddr, Password: sw.ESLPassword,
		ProbeInterval: 200 * time.Millisecond, JobTimeout: 5 * time.Second})
	sub := c.Subscribe(0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	next(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.SocketConnected })
	if !c.Ready() {
		t.Fatalf("connected but not ready: %+v", c.Stats())
	}

	// bgapi keeps our Job-UUID: the job completes, and the event says so.
	j, err := c.BgAPI(tctx(t), freeswitch.Status())
	if err != nil {
		t.Fatal(err)
	}
	ev := next(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.BackgroundJob && e.Get("Job-UUID") == j.ID })
	if out, err := j.Wait(tctx(t)); err != nil || !strings.HasPrefix(out, "UP ") || ev.Get("Job-Command") != "status" {
		t.Fatalf("status: %q, %v; event Job-Command %q", out, err, ev.Get("Job-Command"))
	}

	// Two answered, parked legs.
	var legs [2]string
	for i := range legs {
		n, err := callbridge.ParseNumber(fmt.Sprintf("+1555000%04d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		job, err := c.Originate(tctx(t), freeswitch.Originate{Endpoint: freeswitch.Loopback(n, "public"), Timeout: 10 * time.Second,
			Vars: []freeswitch.Var{{Name: "loopback_bowout", Value: "false"}}})
		if err != nil {
			t.Fatal(err)
		}
		out, err := job.Wait(tctx(t))
		if err != nil || out != job.UUID {
			t.Fatalf("originate %d: %q, %v, want +OK %s", i, out, err, job.UUID)
		}
		legs[i] = job.UUID
	}

	// "show channels" reads FreeSWITCH's core database, which it writes
	// in batches: the legs appear within a second or so.
	wait.ForState(t, "show channels as json to list both legs", func() (bool, string) {
		out, err := c.API(tctx(t), freeswitch.ShowChannels())
		if err != nil {
			t.Fatal(err)
		}
		var shown struct {
			RowCount int `json:"row_count"`
			Rows     []struct {
				UUID string `json:"uuid"`
			} `json:"rows"`
		}
		if err := json.Unmarshal([]byte(out), &shown); err != nil {
			t.Fatalf("show channels as json: %v, %.300q", err, out)
		}
		found := 0
		for _, r := range shown.Rows {
			if r.UUID == legs[0] || r.UUID == legs[1] {
				found++
			}
		}
		return found == 2, fmt.Sprintf("%.500q", out)
	}, wait.Every(100*time.Millisecond))

	bridge, err := freeswitch.UUIDBridge(legs[0], legs[1])
	if err != nil {
		t.Fatal(err)
	}
	if out, err := c.API(tctx(t), bridge); err != nil || out != legs[1] {
		t.Fatalf("uuid_bridge: %q, %v, want %s", out, err, legs[1])
	}
	next(t, sub, func(e freeswitch.Event) bool {
		return e.Name == freeswitch.ChannelBridge && (e.Get("Unique-ID") == legs[0] || e.Get("Unique-ID") == legs[1])
	})

	kill, _ := freeswitch.UUIDKill(legs[0], "")
	if _, err := c.API(tctx(t), kill); err != nil {
		t.Fatalf("uuid_kill: %v", err)
	}
	// Both legs end, in either order.
	ended := map[string]bool{}
	for len(ended) < 2 {
		e := next(t, sub, func(e freeswitch.Event) bool {
			return e.Name == freeswitch.ChannelHangupComplete && (e.UUID == legs[0] || e.UUID == legs[1])
		})
		ended[e.UUID] = true
	}
	if st := c.Stats(); !st.Ready || st.JobTimeouts != 0 || st.ProbeFailures != 0 || st.Probes < 2 {
		t.Errorf("after the commands: %+v", st)
	}
}

// rawConn is an authenticated event-socket connection that writes bytes
// as given and reads frames back.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialRaw(t *testing.T, addr, password string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	rc := &rawConn{t: t, nc: nc, r: bufio.NewReader(nc)}
	rc.frame() // auth/request
	if got := rc.send("auth " + password + "\n\n"); !strings.HasPrefix(got.Get("Reply-Text"), "+OK") {
		t.Fatalf("auth: %+v", got)
	}
	return rc
}

// frame reads frames up to the next command/reply or api/response,
// skipping events.
func (rc *rawConn) frame() *esltest.Frame {
	rc.t.Helper()
	for {
		f, err := esltest.ReadFrame(rc.r)
		if err != nil {
			rc.t.Fatal(err)
		}
		switch f.Get("Content-Type") {
		case "text/event-plain", "text/event-json":
			continue
		}
		return f
	}
}

func (rc *rawConn) send(raw string) *esltest.Frame {
	rc.t.Helper()
	if _, err := io.WriteString(rc.nc, raw); err != nil {
		rc.t.Fatal(err)
	}
	return rc.frame()
}

// uuidPattern matches uuids, which differ between the two switches.
var uuidPattern = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// TestRealSwitchCommandParsing sends the same bytes, command by command,
// to a real FreeSWITCH and to the simulator, and requires the same
// answers: the simulator reads commands as mod_event_socket does, quirks
// included (the mixed line endings that lost our Job-UUID).
func TestRealSwitchCommandParsing(t *testing.T) {
	sw := startRealSwitch(t)
	sim := esltest.NewUnstartedServer()
	sim.Password = sw.ESLPassword
	sim.Start()
	t.Cleanup(sim.Close)

	const job = "7d0a1c52-4a4e-4f0e-9a55-0f3c1c2b8e01"
	const zero = "00000000-0000-0000-0000-000000000000"
	cmds := []string{
		"event plain CHANNEL_CREATE NOT_AN_EVENT\n\n",
		"event plain\n\n",
		"event json BACKGROUND_JOB\r\n\r\n",
		"nixevent CHANNEL_CREATE\n\n",
		"filter Unique-ID " + zero + "\n\n",
		"filter add Unique-ID " + zero + "\n\n",
		"filter Unique-ID\n\n",
		"filter delete Unique-ID " + zero + "\n\n",
		"filter delete all\n\n",
		"noevents\n\n",
		"noevents\n\n",
		"bgapi status\nJob-UUID: " + job + "\n\n",
		"bgapi status\r\nJob-UUID: " + job + "\r\n\r\n",
		"bgapi status\nJob-UUID: " + job + "\r\n\r\n", // go-eventsocket's framing: the Job-UUID is lost
		"\n\nbgapi status\n\n",
		"sendmsg " + zero + "\ncall-command: execute\nexecute-app-name: set\nexecute-app-arg: x=y\n\n",
		"sendmsg\nsession-id: " + zero + "\ncall-command: hangup\n\n",
		"linger\n\n",
		"nolinger\n\n",
		"divert_events on\n\n",
		"myevents " + zero + " json\n\n",
		"bogus_socket_command\n\n",
	}
	real := dialRaw(t, sw.ESLAddr, sw.ESLPassword)
	fake := dialRaw(t, sim.Addr(), sw.ESLPassword)
	for _, cmd := range cmds {
		r, f := real.send(cmd), fake.send(cmd)
		rt, ft := r.Get("Reply-Text"), f.Get("Reply-Text")
		// The Job-UUID each switch chose itself differs; whether it is
		// ours must not.
		norm := func(s string) string {
			return uuidPattern.ReplaceAllStringFunc(s, func(u string) string {
				if u == job || u == zero {
					return u
				}
				return "<their-uuid>"
			})
		}
		if norm(rt) != norm(ft) {
			t.Errorf("%q: real switch %q, simulator %q", cmd, rt, ft)
		}
	}

	// sendmsg executes on a real channel: set a variable, read it back.
	c := esl.NewClient(esl.Config{Name: "real", Addr: sw.ESLAddr, Password: sw.ESLPassword})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wait.For(t, "the client to be ready", c.Ready)
	n, _ := callbridge.ParseNumber("+15550009999")
	leg, err := c.Originate(tctx(t), freeswitch.Originate{Endpoint: freeswitch.Loopback(n, "public"), Timeout: 10 * time.Second,
		Vars: []freeswitch.Var{{Name: "loopback_bowout", Value: "false"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leg.Wait(tctx(t)); err != nil {
		t.Fatal(err)
	}
	got := real.send("sendmsg " + leg.UUID + "\ncall-command: execute\nexecute-app-name: set\nexecute-app-arg: esl_sendmsg_test=done\nevent-lock: true\n\n")
	if got.Get("Reply-Text") != "+OK" {
		t.Fatalf("sendmsg: %q", got.Get("Reply-Text"))
	}
	wait.ForState(t, "sendmsg's set to run", func() (bool, string) {
		resp := real.send("api uuid_getvar " + leg.UUID + " esl_sendmsg_test\n\n")
		return string(resp.Body) == "done", fmt.Sprintf("uuid_getvar says %q", resp.Body)
	}, wait.Every(50*time.Millisecond))
	kill, _ := freeswitch.UUIDKill(leg.UUID, "")
	if _, err := c.API(tctx(t), kill); err != nil {
		t.Fatal(err)
	}
}

// maxDurationOutcome is what one run of the max_duration scenario showed.
type maxDurationOutcome struct {
	BridgeHasLastBridgeTo bool
	Causes                [2]string // hangup_cause/q850 of A and B
}

// maxDurationScenario parks two answered legs, bridges them and hangs both
// up with sched_hangup ALLOTTED_TIMEOUT, as the controller enforces a
// callback's max_duration. advance lets the simulated clock move.
func maxDurationScenario(t *testing.T, addr, password string, endpoint func(i int) freeswitch.Endpoint, advance func(time.Duration)) maxDurationOutcome {
	t.Helper()
	c := esl.NewClient(esl.Config{Name: "diff", Addr: addr, Password: password})
	sub := c.Subscribe(0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	next(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.SocketConnected })
	var legs [2]string
	for i := range legs {
		job, err := c.Originate(tctx(t), freeswitch.Originate{Endpoint: endpoint(i), Timeout: 10 * time.Second,
			Vars: []freeswitch.Var{{Name: "loopback_bowout", Value: "false"}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := job.Wait(tctx(t)); err != nil {
			t.Fatal(err)
		}
		legs[i] = job.UUID
	}
	bridge, _ := freeswitch.UUIDBridge(legs[0], legs[1])
	if _, err := c.API(tctx(t), bridge); err != nil {
		t.Fatal(err)
	}
	var out maxDurationOutcome
	br := next(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.ChannelBridge && e.UUID == legs[0] })
	out.BridgeHasLastBridgeTo = br.Has("variable_last_bridge_to")
	for _, id := range legs {
		cmd, _ := freeswitch.SchedHangup(time.Second, id, "ALLOTTED_TIMEOUT")
		if _, err := c.API(tctx(t), cmd); err != nil {
			t.Fatal(err)
		}
	}
	advance(time.Second)
	seen := 0
	for seen < 2 {
		hc := next(t, sub, func(e freeswitch.Event) bool {
			return e.Name == freeswitch.ChannelHangupComplete && (e.UUID == legs[0] || e.UUID == legs[1])
		})
		i := 0
		if hc.UUID == legs[1] {
			i = 1
		}
		out.Causes[i] = hc.Var("hangup_cause") + "/" + hc.Var("hangup_cause_q850")
		seen++
	}
	return out
}

// TestRealSwitchMaxDurationDifferential runs the max_duration scenario on
// the real switch and on the simulator and requires the same outcome:
// CHANNEL_BRIDGE without last_bridge_to, both legs ALLOTTED_TIMEOUT/16.
func TestRealSwitchMaxDurationDifferential(t *testing.T) {
	sw := startRealSwitch(t)
	loop := func(i int) freeswitch.Endpoint {
		n, _ := callbridge.ParseNumber(fmt.Sprintf("+1555100%04d", i))
		return freeswitch.Loopback(n, "public")
	}
	real := maxDurationScenario(t, sw.ESLAddr, sw.ESLPassword, loop, func(time.Duration) {})
	sim := esltest.NewServer()
	t.Cleanup(sim.Close)
	fake := maxDurationScenario(t, sim.Addr(), "ClueCon", func(i int) freeswitch.Endpoint {
		n, _ := callbridge.ParseNumber(fmt.Sprintf("+4930100%04d", i))
		return freeswitch.Gateway("carrier", n)
	}, sim.Jump)
	want := maxDurationOutcome{Causes: [2]string{"ALLOTTED_TIMEOUT/16", "ALLOTTED_TIMEOUT/16"}}
	if real != want {
		t.Errorf("real switch: %+v, want %+v", real, want)
	}
	if fake != real {
		t.Errorf("simulator %+v, real switch %+v", fake, real)
	}
}
