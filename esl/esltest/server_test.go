package esltest

import (
	"bufio"
	"bytes"
	"callbridge/internal/wait"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const fixtureDir = "../../testdata/freeswitch-esl"

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return data
}

func fixtureFrames(t testing.TB, name string) []*Frame {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(fixture(t, name)))
	var out []*Frame
	for {
		f, err := ReadFrame(r)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: frame %d: %v", name, len(out), err)
		}
		out = append(out, f)
	}
}

// rawClient is a bare TCP event-socket client.
type rawClient struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func dialRaw(t testing.TB, s *Server) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *rawClient) send(cmd string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, cmd+"\n\n"); err != nil {
		c.t.Fatalf("send %q: %v", cmd, err)
	}
}

func (c *rawClient) frame() *Frame {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	f, err := ReadFrame(c.r)
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	return f
}

// raw reads exactly n bytes.
func (c *rawClient) raw(n int) []byte {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, n)
	if _, err := io.ReadFull(c.r, buf); err != nil {
		c.t.Fatalf("read %d bytes: %v", n, err)
	}
	return buf
}

func (c *rawClient) expectEOF() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	if b, err := c.r.ReadByte(); err == nil {
		c.t.Fatalf("got byte %q, want EOF", b)
	}
}

func (c *rawClient) auth(pw string) {
	c.t.Helper()
	c.frame() // auth/request
	c.send("auth " + pw)
	if f := c.frame(); f.Get("Reply-Text") != "+OK accepted" {
		c.t.Fatalf("auth reply %q", f.Get("Reply-Text"))
	}
}

// event is a parsed event frame.
type parsedEvent struct {
	ct     string
	fields []Field
	body   []byte
}

func (e parsedEvent) get(name string) string {
	for _, f := range e.fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

func parse(t testing.TB, f *Frame) parsedEvent {
	t.Helper()
	pe := parsedEvent{ct: f.Get("Content-Type")}
	if pe.ct == "text/event-plain" {
		fields, body, err := EventHeaders(f.Body)
		if err != nil {
			t.Fatalf("parse event: %v", err)
		}
		pe.fields, pe.body = fields, body
	}
	return pe
}

func newTestServer(t testing.TB, speed float64) *Server {
	t.Helper()
	s := NewUnstartedServer()
	s.Speed = speed
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func TestFixturesParse(t *testing.T) {
	names, err := filepath.Glob(filepath.Join(fixtureDir, "*.txt"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, p := range names {
		name := filepath.Base(p)
		if strings.Contains(name, ".client.") || strings.HasPrefix(name, "xml-curl") {
			continue
		}
		t.Run(name, func(t *testing.T) {
			for i, f := range fixtureFrames(t, name) {
				if f.Get("Content-Type") == "" {
					t.Errorf("frame %d has no Content-Type", i)
				}
				if f.Get("Content-Type") == "text/event-plain" {
					if _, _, err := EventHeaders(f.Body); err != nil {
						t.Errorf("frame %d: %v", i, err)
					}
				}
			}
		})
	}
}

func TestAuth(t *testing.T) {
	s := newTestServer(t, 1)
	t.Run("refused", func(t *testing.T) {
		c := dialRaw(t, s)
		want := fixture(t, "05b-auth-fail-session.stream.txt")
		c.send("auth WrongPassword")
		if got := c.raw(len(want)); !bytes.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
		c.expectEOF()
	})
	t.Run("accepted", func(t *testing.T) {
		c := dialRaw(t, s)
		want := append(fixture(t, "01-auth-request.txt"), fixture(t, "03-auth-reply-ok.txt")...)
		c.send("auth ClueCon")
		if got := c.raw(len(want)); !bytes.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("refuse switch", func(t *testing.T) {
		s.SetRefuseAuth(true)
		defer s.SetRefuseAuth(false)
		c := dialRaw(t, s)
		c.frame()
		c.send("auth ClueCon")
		if f := c.frame(); f.Get("Reply-Text") != "-ERR invalid" {
			t.Errorf("got %q, want -ERR invalid", f.Get("Reply-Text"))
		}
	})
}

func TestCommandReplies(t *testing.T) {
	s := newTestServer(t, 1)
	zero := "00000000-0000-0000-0000-000000000000"
	tests := []struct {
		cmd, fixture string
	}{
		// api first: once subscribed, each api command also fires an API event.
		{"api version", "07-api-version.txt"},
		{"api bogus_command_xyz", "09-api-unknown-command.txt"},
		{"api uuid_kill " + zero, "09b-api-uuid_kill-no-such-channel.txt"},
		{"filter Unique-ID " + zero, "60-filter-add-reply.txt"},
		{"filter delete Unique-ID " + zero, "61-filter-delete-reply.txt"},
		{"linger", "65-linger-inbound-reply.txt"},
		{"nolinger", "66-nolinger-inbound-reply.txt"},
		{"bogus_socket_command", "67-unknown-socket-command-reply.txt"},
		{"event plain ALL", "06-event-subscribe-reply.plain.txt"},
		{"event json ALL", "06-event-subscribe-reply.json.txt"},
		{"noevents", "63-noevents-reply.txt"},
		{"event plain CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE BACKGROUND_JOB", "68-event-subscribe-list-reply.plain.txt"},
		{"nixevent CHANNEL_CREATE", "62-nixevent-reply.txt"},
		{"myevents " + zero, "64-myevents-reply.txt"},
	}
	c := dialRaw(t, s)
	c.auth("ClueCon")
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			c.t = t
			want := fixture(t, tt.fixture)
			c.send(tt.cmd)
			if got := c.raw(len(want)); !bytes.Equal(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
	t.Run("exit", func(t *testing.T) {
		c.t = t
		want := append(fixture(t, "70-exit-reply.txt"), fixture(t, "71-disconnect-notice-after-exit.txt")...)
		c.send("exit")
		if got := c.raw(len(want)); !bytes.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
		c.expectEOF()
	})
	if got := s.Commands(); !slices.Contains(got, "bogus_socket_command") || got[0] != "auth ClueCon" {
		t.Errorf("Commands() = %q", got)
	}
}

func TestStatusAndShow(t *testing.T) {
	s := newTestServer(t, 1)
	c := dialRaw(t, s)
	c.auth("ClueCon")
	c.send("api status")
	f := c.frame()
	want := fixtureFrames(t, "08-api-status.txt")[0]
	gotLines, wantLines := strings.Split(string(f.Body), "\n"), strings.Split(string(want.Body), "\n")
	if len(gotLines) != len(wantLines) || !strings.HasPrefix(gotLines[0], "UP 0 years, 0 days") {
		t.Errorf("status = %q, want the shape of %q", f.Body, want.Body)
	}
	c.send("api show channels as json")
	if f := c.frame(); string(f.Body) != "{\"row_count\":0}\n" {
		t.Errorf("empty show channels as json = %q", f.Body)
	}
	c.send("bgapi originate {origination_uuid=11111111-2222-3333-4444-555555555555}sofia/internal/1000480@127.0.0.1 &park()")
	c.frame()
	wait.For(t, "the originated channel", func() bool { return len(s.Channels()) > 0 })
	c.send("api show channels as json")
	f = c.frame()
	if !strings.HasPrefix(string(f.Body), `{"row_count":1,"rows":[{"uuid":"11111111-2222-3333-4444-555555555555","direction":"outbound","created":`) {
		t.Errorf("show channels as json = %q", f.Body)
	}
	c.send("api uuid_exists 11111111-2222-3333-4444-555555555555")
	if f := c.frame(); string(f.Body) != "true" {
		t.Errorf("uuid_exists = %q, want true", f.Body)
	}
}

// eventSequence returns "Event-Name" for events and the content type for
// other frames, leaving out API events (their place relative to channel
// events is a race in FreeSWITCH itself).
func eventKey(t testing.TB, f *Frame) (string, parsedEvent) {
	pe := parse(t, f)
	if pe.ct == "text/event-plain" {
		return pe.get("Event-Name"), pe
	}
	return pe.ct, pe
}

// headerNames lists the header names of an event, without the channel
// variables (whose set depends on SIP details we do not simulate).
func headerNames(pe parsedEvent) []string {
	var out []string
	for _, f := range pe.fields {
		if !strings.HasPrefix(f.Name, "variable_") {
			out = append(out, f.Name)
		}
	}
	return out
}

// compareStream checks got against a fixture stream frame by frame:
// same kinds of frames in the same order and, for events, the same header
// names in the same order.
func compareStream(t *testing.T, got []*Frame, fixtureName string, keep func(parsedEvent) bool) {
	t.Helper()
	var want []*Frame
	for _, f := range fixtureFrames(t, fixtureName) {
		if k, pe := eventKey(t, f); k != "API" && keep(pe) {
			want = append(want, f)
		}
	}
	var g []*Frame
	for _, f := range got {
		if k, pe := eventKey(t, f); k != "API" && keep(pe) {
			g = append(g, f)
		}
	}
	var gk, wk []string
	for _, f := range g {
		k, _ := eventKey(t, f)
		gk = append(gk, k)
	}
	for _, f := range want {
		k, _ := eventKey(t, f)
		wk = append(wk, k)
	}
	if !slices.Equal(gk, wk) {
		t.Fatalf("frame sequence:\n got %q\nwant %q", gk, wk)
	}
	for i := range g {
		_, gp := eventKey(t, g[i])
		_, wp := eventKey(t, want[i])
		if gn, wn := headerNames(gp), headerNames(wp); !slices.Equal(gn, wn) {
			j := 0
			for j < len(gn) && j < len(wn) && gn[j] == wn[j] {
				j++
			}
			t.Errorf("frame %d %s headers differ at %d:\n got %q\nwant %q", i, gk[i], j, gn[j:min(j+4, len(gn))], wn[j:min(j+4, len(wn))])
		}
	}
}

// collect reads frames until stop returns true.
func (c *rawClient) collect(stop func(parsedEvent) bool) []*Frame {
	c.t.Helper()
	var out []*Frame
	for {
		f := c.frame()
		out = append(out, f)
		if _, pe := eventKey(c.t, f); stop(pe) {
			return out
		}
	}
}

func isDestroyed(id string) func(parsedEvent) bool {
	return func(pe parsedEvent) bool {
		return pe.get("Event-Name") == "CHANNEL_STATE" && pe.get("Channel-State") == "CS_DESTROY" && (id == "" || pe.get("Unique-ID") == id)
	}
}

func all(parsedEvent) bool { return true }

func TestOriginateParkKillMatchesFixture(t *testing.T) {
	s := NewUnstartedServer()
	s.Speed = 50
	s.Script = &Script{Rules: []Rule{{Prefix: "2000", RingMS: 500, Outcome: OutcomeAnswer}}}
	s.Start()
	defer s.Close()
	c := dialRaw(t, s)
	c.auth("ClueCon")
	c.send("event plain ALL")
	c.frame()
	c.send("bgapi originate {origination_caller_id_number=1000,origination_caller_id_name=Alice}sofia/internal/2000@127.0.0.1:5090 &park()")
	var id string
	got := c.collect(func(pe parsedEvent) bool {
		if pe.get("Event-Name") == "CHANNEL_OUTGOING" {
			id = pe.get("Unique-ID")
		}
		return pe.get("Event-Name") == "CHANNEL_PARK"
	})
	c.send("api uuid_kill " + id)
	got = append(got, c.collect(isDestroyed(id))...)
	compareStream(t, got, "80-stream-originate-ok-park-uuid_kill.plain.stream.txt", all)

	var hc parsedEvent
	for _, f := range got {
		if k, pe := eventKey(t, f); k == "CHANNEL_HANGUP_COMPLETE" {
			hc = pe
		}
	}
	_, wantHC := eventKey(t, fixtureFrames(t, "29-channel-hangup-complete-normal.plain.txt")[0])
	for _, name := range []string{"variable_billsec", "variable_billmsec", "variable_duration", "variable_mduration",
		"variable_answersec", "variable_answermsec", "variable_progresssec", "variable_progressmsec",
		"variable_start_epoch", "variable_start_uepoch", "variable_answer_epoch", "variable_answer_uepoch",
		"variable_end_epoch", "variable_end_uepoch", "variable_hangup_cause", "variable_sip_hangup_disposition",
		"variable_origination_caller_id_number"} {
		if wantHC.get(name) == "" {
			t.Errorf("fixture lacks %s", name)
		}
		if hc.get(name) == "" {
			t.Errorf("HANGUP_COMPLETE lacks %s", name)
		}
	}
	if got := hc.get("variable_sip_hangup_disposition"); got != "send_bye" {
		t.Errorf("disposition = %q, want send_bye", got)
	}
}

func TestOriginateBusyMatchesFixture(t *testing.T) {
	s := newTestServer(t, 50)
	c := dialRaw(t, s)
	c.auth("ClueCon")
	c.send("event plain ALL")
	c.frame()
	c.send("bgapi originate {origination_uuid=32bd3967-2a28-47c3-9f9b-816945ca759f}sofia/internal/2002486@127.0.0.1:5092 &park()")
	got := c.collect(isDestroyed(""))
	compareStream(t, got, "81-stream-originate-busy.plain.stream.txt", all)
	for _, f := range got {
		if k, pe := eventKey(t, f); k == "BACKGROUND_JOB" && string(pe.body) != "-ERR USER_BUSY\n" {
			t.Errorf("job body %q", pe.body)
		}
	}
}

func TestInvalidProfile(t *testing.T) {
	s := newTestServer(t, 50)
	c := dialRaw(t, s)
	c.auth("ClueCon")
	c.send("event plain ALL")
	c.frame()
	c.send("api originate {origination_uuid=11672407-7aa3-4dc8-af74-995359b8d8a9}sofia/nosuchprofile/2005@127.0.0.1:5090 &park()")
	f := c.frame()
	_, pe := eventKey(t, f)
	_, want := eventKey(t, fixtureFrames(t, "31-channel-destroy-invalid-profile.plain.txt")[0])
	if gn, wn := headerNames(pe), headerNames(want); !slices.Equal(gn, wn) {
		t.Errorf("headers:\n got %q\nwant %q", gn, wn)
	}
	if f := c.frame(); string(f.Body) != "-ERR INVALID_PROFILE\n" {
		t.Errorf("originate = %q", f.Body)
	}
}

func TestSlowClientIsDropped(t *testing.T) {
	s := NewUnstartedServer()
	s.QueueSize = 8
	s.Start()
	defer s.Close()
	c := dialRaw(t, s)
	c.auth("ClueCon")
	c.send("event plain ALL")
	c.frame()
	s.Flood(1000) // returns without waiting for the client
	n := 0
	c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		if _, err := ReadFrame(c.r); err != nil {
			break
		}
		n++
	}
	if n >= 1000 {
		t.Errorf("read %d events; want the connection dropped first", n)
	}
}

func TestInjectFrame(t *testing.T) {
	s := newTestServer(t, 1)
	c := dialRaw(t, s)
	c.auth("ClueCon")
	raw := []byte("Content-Type: api/response\nContent-Length: 1\n\nx")
	s.InjectFrame(raw)
	if got := c.raw(len(raw)); !bytes.Equal(got, raw) {
		t.Errorf("got %q", got)
	}
}

func TestCloseTwice(t *testing.T) {
	s := NewServer()
	c := dialRaw(t, s)
	c.auth("ClueCon")
	c.send("bgapi originate sofia/internal/1000@127.0.0.1 &park()")
	c.frame()
	s.Close()
	s.Close()
	want := fixture(t, "73-disconnect-notice-on-shutdown.txt")
	if got := c.raw(len(want)); !bytes.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	c.expectEOF()
}

func TestScript(t *testing.T) {
	sc, err := ParseScript([]byte(`{"rules":[{"prefix":"1555","ring_ms":100,"outcome":"busy"},{"prefix":"15551","outcome":"answer","talk_ms":0}]}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		number string
		want   Outcome
	}{
		{"15551234", OutcomeAnswer},
		{"15559999", OutcomeBusy},
		{"2000486", OutcomeBusy},
		{"2000480", OutcomeNoAnswer},
		{"2000404", OutcomeUnallocated},
		{"2000603", OutcomeRejected},
		{"2000183", OutcomeAnswer},
		{"2000", OutcomeAnswer},
	}
	for _, tt := range tests {
		if got := sc.Lookup(tt.number).Outcome; got != tt.want {
			t.Errorf("Lookup(%s) = %v, want %v", tt.number, got, tt.want)
		}
	}
	if _, err := ParseScript([]byte(`{"rules":[{"prefix":"1","outcome":"maybe"}]}`)); err == nil {
		t.Error("unknown outcome accepted")
	}
	p := filepath.Join(t.TempDir(), "s.json")
	os.WriteFile(p, []byte(`{"rules":[]}`), 0o600)
	if _, err := LoadScript(p); err != nil {
		t.Error(err)
	}
}

func ExampleNewServer() {
	s := NewServer()
	defer s.Close()
	fmt.Println(s.Addr() != "")
	// Output: true
}

// The switch reads the Script where it uses it, so a Script set after
// Start (as some tests do) is still followed.
func TestScriptSetAfterStart(t *testing.T) {
	s := newTestServer(t, 50)
	s.Script = &Script{Rules: []Rule{{Prefix: "3000", Outcome: OutcomeBusy}}}
	c := dialRaw(t, s)
	c.auth("ClueCon")
	c.send("api originate sofia/internal/3000 &park()")
	if f := c.frame(); string(f.Body) != "-ERR USER_BUSY\n" {
		t.Errorf("originate of a number scripted busy = %q, want -ERR USER_BUSY", f.Body)
	}
}
