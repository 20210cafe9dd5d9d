package esl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"callbridge/esl/esltest"
	"callbridge/esl/freeswitch"
	"callbridge/esl/internal/wire"

	"github.com/fiorix/go-eventsocket/eventsocket"
)

// throughLibrary gives raw event frames to a real go-eventsocket
// connection over loopback, followed by an end marker, and returns the
// events it reads before the marker. (Reading until EOF would lose events:
// the library's ReadEvent picks at random between a buffered event and
// the EOF; that is why the client reads its event connection itself.)
func throughLibrary(tb testing.TB, frames []byte) []*eventsocket.Event {
	tb.Helper()
	conn := libraryConn(tb, func(nc net.Conn, br *bufio.Reader) {
		nc.Write(frames)
		nc.Write(endMarker)
		io.Copy(io.Discard, br)
	})
	var evs []*eventsocket.Event
	for {
		ev, err := conn.ReadEvent()
		if err != nil {
			tb.Fatalf("library: %v after %d events", err, len(evs))
		}
		if ev.Header["Event-Subclass"] == "fuzz-end" {
			return evs
		}
		evs = append(evs, ev)
	}
}

var endMarker = plainEvent([][2]string{{"Event-Name", "CUSTOM"}, {"Event-Subclass", "fuzz-end"}}, "")

// libraryConn serves one go-eventsocket connection on loopback: it
// authenticates it, then hands the socket to serve.
func libraryConn(tb testing.TB, serve func(net.Conn, *bufio.Reader)) *eventsocket.Connection {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		io.WriteString(nc, "Content-Type: auth/request\n\n")
		br := bufio.NewReader(nc)
		for {
			l, err := br.ReadString('\n')
			if err != nil || l == "\r\n" {
				break
			}
		}
		io.WriteString(nc, "Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
		serve(nc, br)
	}()
	conn, err := eventsocket.Dial(ln.Addr().String(), "x")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(conn.Close)
	return conn
}

// guardCommandStream runs raw server bytes through the command
// connection's guard, as if the library were waiting for every reply, and
// returns each forwarded frame.
func guardCommandStream(raw []byte) [][]byte {
	g := &guard{c: NewClient(Config{})}
	g.waiting.Store(1 << 30)
	fr := wire.NewReader(bytes.NewReader(raw), 1<<20)
	var out [][]byte
	for {
		f, err := fr.Next()
		if err != nil {
			return out
		}
		if b := g.handle(f); b != nil {
			out = append(out, b)
		}
	}
}

// throughLibraryCommands sends one command through a real go-eventsocket
// connection per reply and answers each with the next reply. A panic or
// log.Fatal in the library's reader fails the test binary; each Send must
// return.
func throughLibraryCommands(tb testing.TB, replies [][]byte) {
	tb.Helper()
	conn := libraryConn(tb, func(nc net.Conn, br *bufio.Reader) {
		for _, r := range replies {
			if _, err := esltest.ReadCommand(br); err != nil {
				return
			}
			nc.Write(r)
		}
		io.Copy(io.Discard, br)
	})
	for i := range replies {
		ev, err := conn.Send("status")
		if err != nil && err.Error() == "Timeout" {
			tb.Fatalf("reply %d: library timed out", i)
		}
		if err == nil && ev == nil {
			tb.Fatalf("reply %d: no event and no error", i)
		}
	}
}

func fixtureCorpus(f *testing.F) {
	names, _ := filepath.Glob(filepath.Join(fixtureDir, "*.txt"))
	for _, n := range names {
		if b, err := os.ReadFile(n); err == nil && len(b) < 64<<10 {
			f.Add(b)
		}
	}
}

// FuzzGuard feeds arbitrary server bytes to the command connection's
// guard and whatever it forwards to go-eventsocket.
func FuzzGuard(f *testing.F) {
	fixtureCorpus(f)
	f.Add([]byte("Content-Type: api/response\nContent-Length: 1\n\n-"))
	f.Add([]byte("Content-Type: command/reply\nReply-Text: -E\n\n"))
	f.Add([]byte("Content-Type: command/reply\nReply-Text: %\n\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if out := guardCommandStream(raw); len(out) > 0 {
			throughLibraryCommands(t, out)
		}
	})
}

// TestGuardedRepliesThroughLibrary runs each capture through the command
// connection's guard and the bare library, as FuzzGuard does.
func TestGuardedRepliesThroughLibrary(t *testing.T) {
	for _, name := range fixtureNames(t) {
		throughLibraryCommands(t, guardCommandStream(readFixture(t, name)))
	}
}

// libraryKey is go-eventsocket's header-key capitalisation
// (eventsocket.capitalize, unexported): "Job-UUID" becomes "Job-Uuid",
// "variable_billmsec" "Variable_billmsec"; keys starting with '_' are kept.
func libraryKey(s string) string {
	if s == "" || s[0] == '_' {
		return s
	}
	ns := []byte(strings.ToLower(s))
	if len(s) > 9 && s[1:9] == "ariable_" {
		ns[0] = 'V'
		return string(ns)
	}
	up := true
	for i, c := range ns {
		if up {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			ns[i] = c
			up = false
		} else if c == '-' || c == '_' {
			up = true
		}
	}
	return string(ns)
}

// plainKey is the library's name of a plain event's header: textproto
// canonicalises it, then the library capitalises it.
func plainKey(k string) string { return libraryKey(textproto.CanonicalMIMEHeaderKey(k)) }

// libraryPlain parses a text/event-plain body with go-eventsocket's
// algorithm (readOne and copyHeaders, which are unexported): textproto,
// the inner Content-Length, capitalised keys, url.QueryUnescape'd values.
func libraryPlain(body []byte) (map[string]string, string, error) {
	br := bufio.NewReader(bytes.NewReader(body))
	hdr, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		return nil, "", err
	}
	text := ""
	if v := hdr.Get("Content-Length"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, "", errors.New("bad inner length")
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, "", err
		}
		text = string(b)
	}
	m := make(map[string]string, len(hdr))
	for k, v := range hdr {
		d, err := url.QueryUnescape(v[0])
		if err != nil {
			d = v[0]
		}
		m[libraryKey(k)] = d
	}
	return m, text, nil
}

// sameHeaders reports the first difference between an Event and the
// library's headers (under its names: key maps a FreeSWITCH name to the
// library's) and body, or "". Two
// names the library capitalises alike are one header to it, kept at
// random; sameHeaders then reports nothing. (Real names never collide, but
// the library turns any "?ariable_x" into "Variable_x".)
func sameHeaders(e freeswitch.Event, lib map[string]string, body string, key func(string) string) string {
	if e.Body != body {
		return "body " + strconv.Quote(e.Body) + ", library " + strconv.Quote(body)
	}
	hs := e.Headers()
	seen := make(map[string]bool, len(hs))
	for k := range hs {
		if seen[key(k)] {
			return ""
		}
		seen[key(k)] = true
	}
	if len(hs) != len(lib) {
		return "got " + strconv.Itoa(len(hs)) + " headers, library " + strconv.Itoa(len(lib))
	}
	for k, v := range hs {
		if got, ok := lib[key(k)]; !ok || got != v {
			return "header " + strconv.Quote(k) + " = " + strconv.Quote(v) + ", library " + strconv.Quote(got)
		}
		if e.Get(k) != v {
			return "Get(" + strconv.Quote(k) + ") = " + strconv.Quote(e.Get(k)) + ", Headers " + strconv.Quote(v)
		}
	}
	return ""
}

// FuzzEventParser parses arbitrary bodies as plain and JSON events. The
// parser must not panic; every header it returns must read back through
// Get; and whatever it accepts as plain the library's algorithm accepts
// too, with identical headers and body.
func FuzzEventParser(f *testing.F) {
	for _, name := range []string{
		"29-channel-hangup-complete-normal.plain.txt",
		"11-background-job-originate-ok.plain.txt",
		"29-channel-hangup-complete-normal.json.txt",
		"12-background-job-originate-user-busy.json.txt",
	} {
		fr := wire.NewReader(bytes.NewReader(readFixture(f, name)), 1<<20)
		fm, err := fr.Next()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(fm.Body)
	}
	f.Add([]byte("Event-Name: CUSTOM\nA: %zz\nB: a+b%2B\nC:\t x \t\nContent-Length: 3\n\nabcdef"))
	f.Add([]byte("Event-Name: CUSTOM\r\nevent-name: dup\r\n\r\n"))
	f.Add([]byte(`{"Event-Name":"CUSTOM","_body":"x","n":1,"a":[1,"b"]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var p wire.Parser
		when := time.Unix(0, 0).UTC()
		for _, kind := range []string{"plain", "json"} {
			parse := parsePlain
			if kind == "json" {
				parse = parseJSON
			}
			e, err := parse(&p, "n", body, when)
			if err != nil {
				continue
			}
			for k, v := range e.Headers() {
				if got := e.Get(k); got != v {
					t.Fatalf("%s: Get(%q) = %q, Headers has %q", kind, k, got, v)
				}
				if !e.Has(strings.ToUpper(k)) {
					t.Fatalf("%s: Has(%q) is false", kind, strings.ToUpper(k))
				}
			}
			if kind == "json" {
				continue
			}
			lib, text, err := libraryPlain(body)
			if err != nil {
				t.Fatalf("parser accepted what the library refuses (%v)", err)
			}
			if d := sameHeaders(e, lib, text, plainKey); d != "" {
				t.Fatal(d)
			}
		}
	})
}

// libraryJSON parses a text/event-json body as go-eventsocket does. It
// reports false when two keys differ only in case and have different
// values: the library then keeps one of them at random. (FreeSWITCH does
// send such pairs, with equal values: the CODEC event has both
// "Channel-Read-Codec-Name" and "channel-read-codec-name".)
func libraryJSON(body []byte) (map[string]string, string, bool) {
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, "", false
	}
	m := make(map[string]string, len(raw))
	folded := make(map[string]string, len(raw))
	text := ""
	for k, v := range raw {
		if k == "_body" && v != nil {
			text = v.(string)
			continue
		}
		v := wire.HeaderString(v)
		if prev, dup := folded[strings.ToLower(k)]; dup {
			if prev != v {
				return nil, "", false
			}
			continue
		}
		folded[strings.ToLower(k)] = v
		m[libraryKey(k)] = v
	}
	return m, text, true
}
