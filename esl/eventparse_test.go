package esl

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"callbridge/esl/freeswitch"
	"callbridge/esl/internal/wire"
)

// TestParserMatchesLibrary feeds every event of every capture (plain and
// JSON, streams included) to go-eventsocket over a loopback socket and to
// the parser, and compares every header, under the library's names and
// under FreeSWITCH's, and the body.
func TestParserMatchesLibrary(t *testing.T) {
	for _, name := range fixtureNames(t) {
		t.Run(name, func(t *testing.T) {
			var events []*wire.Frame
			var raw bytes.Buffer
			for _, f := range splitFrames(t, readFixture(t, name)) {
				if ct := f.ContentType; ct == "text/event-plain" || ct == "text/event-json" {
					events = append(events, f)
					raw.Write(fmt.Appendf(nil, "Content-Type: %s\nContent-Length: %d\n\n", ct, len(f.Body)))
					raw.Write(f.Body)
				}
			}
			if len(events) == 0 {
				return
			}
			lib := throughLibrary(t, raw.Bytes())
			if len(lib) != len(events) {
				t.Fatalf("library read %d events, want %d", len(lib), len(events))
			}
			var p wire.Parser
			for i, f := range events {
				parse := parsePlain
				if f.ContentType == "text/event-json" {
					parse = parseJSON
				}
				e, err := parse(&p, "n", f.Body, time.Now().UTC())
				if err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
				want := make(map[string]string, len(lib[i].Header))
				for k, v := range lib[i].Header {
					want[k] = wire.HeaderString(v)
				}
				key := plainKey
				if f.ContentType == "text/event-json" {
					key = libraryKey
				}
				if d := sameHeaders(e, want, lib[i].Body, key); d != "" {
					t.Fatalf("event %d (%s): %s", i, e.Name, d)
				}
				// Compatibility: the library's names find the same values.
				for k, v := range want {
					if got := e.Get(k); !e.Has(k) || got != v {
						t.Fatalf("event %d: Get(%q) = %q, library %q", i, k, got, v)
					}
				}
				if f.ContentType == "text/event-json" {
					if m, text, ok := libraryJSON(f.Body); !ok || sameHeaders(e, m, text, libraryKey) != "" {
						t.Fatalf("event %d: reference JSON parse differs", i)
					}
				} else if m, text, err := libraryPlain(f.Body); err != nil || sameHeaders(e, m, text, plainKey) != "" {
					t.Fatalf("event %d: reference plain parse differs (%v)", i, err)
				}
			}
		})
	}
}

func TestParsePlain(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		headers map[string]string // by the name asked
		text    string
		err     error
	}{
		{"decoded", "Event-Name: CUSTOM\nA: 2026-01-01%2012%3A00%3A00\nB: sofia/internal/2030%40127.0.0.1\n\n",
			map[string]string{"A": "2026-01-01 12:00:00", "B": "sofia/internal/2030@127.0.0.1"}, "", nil},
		{"plus as url.QueryUnescape", "A: %2B4930+x\n\n", map[string]string{"A": "+4930 x"}, "", nil},
		{"bad escape kept as sent", "A: 100%+x\nB: %4\nC: %zz%20\n\n",
			map[string]string{"A": "100%+x", "B": "%4", "C": "%zz%20"}, "", nil},
		{"lower-case escape", "A: %3a%3A\n\n", map[string]string{"A": "::"}, "", nil},
		{"blank trimmed", "A:  \t x y \t\nB:\nC: \n\n", map[string]string{"A": "x y", "B": "", "C": ""}, "", nil},
		{"crlf", "A: 1\r\nB: 2\r\n\r\n", map[string]string{"A": "1", "B": "2"}, "", nil},
		{"first of a repeated name wins", "Unique-ID: a\nunique-id: b\nUNIQUE-ID: c\n\n",
			map[string]string{"Unique-ID": "a", "unique-id": "a", "Unique-Id": "a"}, "", nil},
		{"library names", "Job-UUID: j\nvariable_billmsec: 3000\nCaller-Unique-ID: u\n\n",
			map[string]string{"Job-Uuid": "j", "Variable_billmsec": "3000", "Caller-Unique-Id": "u", "job-uuid": "j"}, "", nil},
		{"body", "Event-Name: BACKGROUND_JOB\nContent-Length: 15\n\n-ERR USER_BUSY\n", map[string]string{"Content-Length": "15"}, "-ERR USER_BUSY\n", nil},
		{"body shorter than the rest", "Content-Length: 2\n\nabcdef", nil, "ab", nil},
		{"empty length", "Content-Length:\n\nabc", nil, "", nil},
		{"no blank line", "A: 1\nB: 2\n", nil, "", wire.ErrPlainNoBlankLine},
		{"empty", "", nil, "", wire.ErrPlainNoBlankLine},
		{"no colon", "no colon\n\n", nil, "", wire.ErrPlainHeaderLine},
		{"empty name", ": x\n\n", nil, "", wire.ErrPlainHeaderLine},
		{"space in name", "A B: x\n\n", nil, "", wire.ErrPlainHeaderLine},
		{"continuation", "A: 1\n 2\n\n", nil, "", wire.ErrPlainHeaderLine},
		{"control byte", "A: x\x01y\n\n", nil, "", wire.ErrPlainValue},
		{"lone cr", "A: x\ry\n\n", nil, "", wire.ErrPlainValue},
		{"length too long", "Content-Length: 9\n\nabc", nil, "", wire.ErrPlainLength},
		{"length negative", "Content-Length: -1\n\n", nil, "", wire.ErrPlainLength},
		{"length signed", "Content-Length: +1\n\nx", nil, "", wire.ErrPlainLength},
		{"length huge", "Content-Length: 99999999999\n\n", nil, "", wire.ErrPlainLength},
	}
	var p wire.Parser
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := parsePlain(&p, "n", []byte(tt.body), time.Now().UTC())
			if err != tt.err {
				t.Fatalf("got error %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			for k, want := range tt.headers {
				if got := e.Get(k); got != want || !e.Has(k) {
					t.Errorf("Get(%q): got %q, want %q", k, got, want)
				}
			}
			if e.Body != tt.text {
				t.Errorf("got body %q, want %q", e.Body, tt.text)
			}
			if e.Has("Missing") || e.Get("Missing") != "" || e.Has("") {
				t.Errorf("absent header found")
			}
			// The library's algorithm agrees.
			lib, text, lerr := libraryPlain([]byte(tt.body))
			if lerr != nil {
				t.Fatalf("library refuses: %v", lerr)
			}
			if d := sameHeaders(e, lib, text, plainKey); d != "" {
				t.Errorf("differs from the library: %s", d)
			}
		})
	}
}

func TestEventKeepsFreeSWITCHNames(t *testing.T) {
	var p wire.Parser
	frames := splitFrames(t, readFixture(t, "29-channel-hangup-complete-normal.plain.txt"))
	e, err := parsePlain(&p, "n", frames[0].Body, time.Now().UTC())
	if err != nil {
		t.Fatal(err)
	}
	h := e.Headers()
	for _, k := range []string{"Unique-ID", "Caller-Unique-ID", "variable_billmsec", "FreeSWITCH-IPv6"} {
		if _, ok := h[k]; !ok {
			t.Errorf("Headers lacks %q", k)
		}
	}
	if got := e.Get("FreeSWITCH-IPv6"); got != "fd00::2" {
		t.Errorf("got FreeSWITCH-IPv6 %q, want fd00::2", got)
	}
	if got := e.Get("Event-Date-Local"); !strings.Contains(got, " ") || strings.Contains(got, "%") {
		t.Errorf("got Event-Date-Local %q, want it decoded", got)
	}
	ne := freeswitch.NewEvent("n", map[string]string{"Unique-ID": "u", "variable_x": "1", "Event-Name": "CUSTOM"}, "b")
	if ne.UUID != "u" || ne.Name != freeswitch.Custom || ne.Var("x") != "1" || ne.Get("Variable_X") != "1" || ne.Body != "b" {
		t.Errorf("NewEvent: got %+v", ne.Headers())
	}
	var zero freeswitch.Event
	if zero.Get("x") != "" || zero.Has("x") || len(zero.Headers()) != 0 {
		t.Errorf("zero Event has headers")
	}
}

// TestNoEventLostAtEOF sends a burst of events and closes the socket at
// once, several times: every event must be delivered before the next
// SocketConnected, so before the loss can be observed. dropAll closes
// the command and the event connection in random order; when the command
// connection goes first the event connection is drained.
func TestNoEventLostAtEOF(t *testing.T) {
	f := newFakeFS(t)
	c, sub := connected(t, f, Config{})
	hangup := readFixture(t, "29-channel-hangup-complete-normal.plain.txt")
	for round := range 5 {
		var burst bytes.Buffer
		const n = 500
		for i := range n {
			if i%10 == 0 {
				burst.Write(hangup)
				continue
			}
			burst.Write(plainEvent([][2]string{
				{"Event-Name", "CHANNEL_HANGUP_COMPLETE"},
				{"Unique-ID", fmt.Sprintf("00000000-0000-4000-8000-%012d", i)},
			}, ""))
		}
		f.inject(burst.Bytes())
		if round%2 == 0 {
			f.dropEvents()
		} else {
			f.dropAll()
		}
		got := 0
		waitEvent(t, sub, func(e freeswitch.Event) bool {
			if e.Name == freeswitch.ChannelHangupComplete {
				got++
			}
			return e.Name == freeswitch.SocketConnected
		})
		if got != n {
			t.Fatalf("round %d: got %d events before the reconnection, want %d", round, got, n)
		}
	}
	if st := c.Stats(); st.FramesDropped != 0 {
		t.Errorf("got %d dropped frames", st.FramesDropped)
	}
}

// parsePlain and parseJSON parse an event body as the event connection
// does (eventConn.handle).
func parsePlain(p *wire.Parser, node string, body []byte, received time.Time) (freeswitch.Event, error) {
	h, text, err := p.Plain(body)
	if err != nil {
		return freeswitch.Event{}, err
	}
	return freeswitch.ReceivedEvent(node, h, text, received), nil
}

func parseJSON(p *wire.Parser, node string, body []byte, received time.Time) (freeswitch.Event, error) {
	h, text, err := p.JSON(body)
	if err != nil {
		return freeswitch.Event{}, err
	}
	return freeswitch.ReceivedEvent(node, h, text, received), nil
}
