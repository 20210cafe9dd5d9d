package esltest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-eventsocket/eventsocket"
)

func TestEventSocketWrongPassword(t *testing.T) {
	s := newTestServer(t, 1)
	if c, err := eventsocket.Dial(s.Addr(), "nope"); err == nil {
		c.Close()
		t.Fatal("wrong password accepted")
	}
}

// readUntil reads events until f returns true.
func readUntil(t *testing.T, c *eventsocket.Connection, f func(*eventsocket.Event) bool) []*eventsocket.Event {
	t.Helper()
	// go-eventsocket has no deadlines: close the connection if the
	// simulator never sends what the test waits for.
	timer := time.AfterFunc(20*time.Second, func() { c.Close() })
	defer timer.Stop()
	var got []*eventsocket.Event
	for {
		ev, err := c.ReadEvent()
		if err != nil {
			t.Fatalf("read event: %v", err)
		}
		got = append(got, ev)
		if f(ev) {
			return got
		}
	}
}

func TestEventSocketOriginateBehaviours(t *testing.T) {
	s := newTestServer(t, 20)
	c, err := eventsocket.Dial(s.Addr(), "ClueCon")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if _, err := c.Send("event plain ALL"); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	tests := []struct {
		number, body string
		events       []string // channel events of the leg, in order
	}{
		{"2000486", "-ERR USER_BUSY", []string{"CHANNEL_OUTGOING", "CHANNEL_CREATE", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"}},
		{"2000480", "-ERR NO_ANSWER", []string{"CHANNEL_OUTGOING", "CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"}},
		{"2000404", "-ERR UNALLOCATED_NUMBER", []string{"CHANNEL_OUTGOING", "CHANNEL_CREATE", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"}},
		{"2000603", "-ERR CALL_REJECTED", []string{"CHANNEL_OUTGOING", "CHANNEL_CREATE", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"}},
		{"2000183", "+OK ", []string{"CHANNEL_OUTGOING", "CHANNEL_CREATE", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_PARK", "CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"}},
		{"2000", "+OK ", []string{"CHANNEL_OUTGOING", "CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_ANSWER", "CHANNEL_PARK", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"}},
	}
	interesting := []string{"CHANNEL_OUTGOING", "CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER", "CHANNEL_PARK", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"}
	for i, tt := range tests {
		t.Run(tt.number, func(t *testing.T) {
			id := fmt.Sprintf("00000000-0000-0000-0000-%012d", i+1)
			// go-eventsocket ends commands with CRLF, so a Job-UUID line
			// after a bare LF would not be read (as on a real switch):
			// the job id is FreeSWITCH's, from the reply.
			cmd := fmt.Sprintf("bgapi originate {origination_uuid=%s,originate_timeout=5}sofia/internal/%s@127.0.0.1 &park()", id, tt.number)
			reply, err := c.Send(cmd)
			if err != nil {
				t.Fatalf("bgapi: %v", err)
			}
			job := reply.Get("Job-Uuid")
			var seq []string
			var body string
			var hc *eventsocket.Event
			readUntil(t, c, func(ev *eventsocket.Event) bool {
				name := ev.Get("Event-Name")
				if name == "BACKGROUND_JOB" && ev.Get("Job-Uuid") == job {
					body = ev.Body
				}
				if ev.Get("Unique-Id") == id && slices.Contains(interesting, name) {
					seq = append(seq, name)
				}
				if name == "CHANNEL_HANGUP_COMPLETE" && ev.Get("Unique-Id") == id {
					hc = ev
				}
				return name == "CHANNEL_DESTROY" && ev.Get("Unique-Id") == id
			})
			if !strings.HasPrefix(body, tt.body) {
				t.Errorf("job body %q, want prefix %q", body, tt.body)
			}
			if !slices.Equal(seq, tt.events) {
				t.Errorf("events %q, want %q", seq, tt.events)
			}
			if hc == nil {
				t.Fatal("no CHANNEL_HANGUP_COMPLETE")
			}
			answered, _ := strconv.ParseInt(hc.Get("Variable_answer_uepoch"), 10, 64)
			end, _ := strconv.ParseInt(hc.Get("Variable_end_uepoch"), 10, 64)
			bill, _ := strconv.ParseInt(hc.Get("Variable_billmsec"), 10, 64)
			if answered == 0 && bill != 0 {
				t.Errorf("unanswered billmsec = %d", bill)
			}
			if answered != 0 && bill != (end-answered)/1000 {
				t.Errorf("billmsec %d, want %d", bill, (end-answered)/1000)
			}
			// Real scheduling jitter is multiplied by Speed, so only the lower
			// bound is exact.
			if tt.number == "2000" && (bill < 3000 || bill > 30000) {
				t.Errorf("billmsec %d, want at least 3000 (3 s of talk)", bill)
			}
		})
	}
}

// dialplanServer serves the captured xml_curl response, bridging to
// 127.0.0.1, and records each request.
func dialplanServer(t *testing.T, xmlBody string) (*httptest.Server, func() []url.Values) {
	var mu sync.Mutex
	var reqs []url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, _ := r.BasicAuth()
		if user != "fs" || pw != "secret" || r.UserAgent() != "freeswitch-xml/1.0" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		v, err := url.ParseQuery(string(body))
		if err != nil {
			t.Errorf("parse form: %v", err)
		}
		mu.Lock()
		reqs = append(reqs, v)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/xml")
		io.WriteString(w, xmlBody)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []url.Values {
		mu.Lock()
		defer mu.Unlock()
		return append([]url.Values(nil), reqs...)
	}
}

func TestInboundBridge(t *testing.T) {
	resp := strings.ReplaceAll(string(fixture(t, "xml-curl-dialplan-response.txt")), "127.0.0.1:5090", "127.0.0.1")
	srv, requests := dialplanServer(t, resp)
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
	if _, err := c.Send("event plain ALL"); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	ev, err := c.Send("api sim_inbound 15550001 5551234")
	if err != nil || !strings.HasPrefix(ev.Body, "+OK ") {
		t.Fatalf("sim_inbound: %v %v", ev, err)
	}
	a := strings.TrimSpace(strings.TrimPrefix(ev.Body, "+OK "))
	complete := map[string]*eventsocket.Event{}
	var b string
	readUntil(t, c, func(ev *eventsocket.Event) bool {
		switch ev.Get("Event-Name") {
		case "CHANNEL_BRIDGE":
			b = ev.Get("Bridge-B-Unique-Id")
		case "CHANNEL_HANGUP_COMPLETE":
			complete[ev.Get("Unique-Id")] = ev
		}
		return len(complete) == 2
	})
	if complete[a] == nil || complete[b] == nil {
		t.Fatalf("HANGUP_COMPLETE for %v, want a=%s b=%s", slices.Collect(func(yield func(string) bool) {
			for k := range complete {
				yield(k)
			}
		}), a, b)
	}
	for _, id := range []string{a, b} {
		hc := complete[id]
		answered, _ := strconv.ParseInt(hc.Get("Variable_answer_uepoch"), 10, 64)
		end, _ := strconv.ParseInt(hc.Get("Variable_end_uepoch"), 10, 64)
		bill, _ := strconv.ParseInt(hc.Get("Variable_billmsec"), 10, 64)
		if bill != (end-answered)/1000 || bill < 3000 || bill > 30000 {
			t.Errorf("%s billmsec %d (answer %d end %d), want (end-answer) and at least 3000", id, bill, answered, end)
		}
	}
	if complete[a].Get("Variable_xml_curl_served") != "true" {
		t.Error("a: variable set by the dialplan missing")
	}
	if got := complete[b].Get("Variable_sip_hangup_disposition"); got != "recv_bye" {
		t.Errorf("b disposition %q, want recv_bye", got)
	}
	if got := complete[a].Get("Other-Leg-Unique-Id"); got != b {
		t.Errorf("a Other-Leg-Unique-ID %q, want %q", got, b)
	}
	if got := complete[b].Get("Caller-Caller-Id-Number"); got != "15550001" {
		t.Errorf("b caller id %q, want 15550001 (from ${caller_id_number})", got)
	}
	if got, ok := complete[b].Header["Caller-Orig-Caller-Id-Number"]; !ok || got != "15550001" {
		t.Errorf("b Caller-Orig-Caller-ID-Number %q, want the real caller 15550001 (issue 12)", got)
	}
	if got := complete[b].Get("Variable_originator"); got != a {
		t.Errorf("b variable_originator %q, want a %s", got, a)
	}

	// The dialplan request carries the same fields, in the same order, as
	// the one FreeSWITCH sent (variables aside).
	reqs := requests()
	if len(reqs) != 1 {
		t.Fatalf("%d dialplan requests, want 1", len(reqs))
	}
	if reqs[0].Get("Caller-Destination-Number") != "5551234" || reqs[0].Get("Caller-Context") != "public" || reqs[0].Get("section") != "dialplan" {
		t.Errorf("request %v", reqs[0])
	}
}

func TestDialplanRequestFieldOrder(t *testing.T) {
	resp := string(fixture(t, "xml-curl-dialplan-response.txt"))
	var mu sync.Mutex
	var body string
	got := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		body = string(b)
		mu.Unlock()
		io.WriteString(w, `<document type="freeswitch/xml"><section name="dialplan"><result status="not found"/></section></document>`)
		select {
		case got <- struct{}{}:
		default:
		}
	}))
	defer srv.Close()
	_ = resp
	s := NewUnstartedServer()
	s.DialplanURL = srv.URL
	s.Start()
	defer s.Close()
	if _, err := s.Inbound(t.Context(), "sipp", "5551234"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("no dialplan request")
	}
	names := func(form string) []string {
		var out []string
		for _, kv := range strings.Split(form, "&") {
			k, _, _ := strings.Cut(kv, "=")
			if !strings.HasPrefix(k, "variable_") {
				out = append(out, k)
			}
		}
		return out
	}
	mu.Lock()
	defer mu.Unlock()
	want := strings.TrimSpace(string(fixture(t, "xml-curl-dialplan-request.txt")))
	if g, w := names(body), names(want); !slices.Equal(g, w) {
		t.Errorf("fields:\n got %q\nwant %q", g, w)
	}
}

func TestInboundStreamMatchesFixture(t *testing.T) {
	resp := strings.ReplaceAll(string(fixture(t, "xml-curl-dialplan-response.txt")), "127.0.0.1:5090", "127.0.0.1")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, resp) }))
	defer srv.Close()
	s := NewUnstartedServer()
	s.Speed = 50
	s.DialplanURL = srv.URL
	s.Script = &Script{Rules: []Rule{{Prefix: "5551234", RingMS: 200, Outcome: OutcomeAnswer}}}
	s.Start()
	defer s.Close()
	c := dialRaw(t, s)
	c.auth("ClueCon")
	c.send("event plain ALL")
	c.frame()
	a, err := s.Inbound(t.Context(), "sipp", "5551234")
	if err != nil {
		t.Fatal(err)
	}
	var b string
	destroyed := 0
	got := c.collect(func(pe parsedEvent) bool {
		if pe.get("Event-Name") == "CHANNEL_BRIDGE" {
			b = pe.get("Bridge-B-Unique-ID")
			if err := s.Hangup(a, "NORMAL_CLEARING"); err != nil {
				t.Errorf("hangup: %v", err)
			}
		}
		if isDestroyed("")(pe) {
			destroyed++
		}
		return destroyed == 2
	})
	if b == "" {
		t.Fatal("no bridge")
	}
	// Interleaving of the two legs is a race in FreeSWITCH too: compare each
	// leg's own sequence.
	legOf := func(direction string) func(parsedEvent) bool {
		return func(pe parsedEvent) bool { return pe.get("Call-Direction") == direction }
	}
	t.Run("a", func(t *testing.T) {
		compareStream(t, got, "83-stream-inbound-xml_curl-bridge.plain.stream.txt", legOf("inbound"))
	})
	t.Run("b", func(t *testing.T) {
		compareStream(t, got, "83-stream-inbound-xml_curl-bridge.plain.stream.txt", legOf("outbound"))
	})
}

func TestLoadScriptFromFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "script.json")
	if err := os.WriteFile(p, []byte(`{"rules":[{"prefix":"44","outcome":"fail"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	sc, err := LoadScript(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.Lookup("4420").Outcome; got != OutcomeFail {
		t.Errorf("got %v, want fail", got)
	}
}
