package esl

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/fiorix/go-eventsocket/eventsocket"
)

// throughLibrary gives raw frames to a real go-eventsocket connection over
// loopback, followed by an end marker, and returns the events it reads
// before the marker. A panic or log.Fatal in the library's reader fails
// the test binary. (Reading until EOF would lose events: the library's
// ReadEvent picks at random between a buffered event and the EOF.)
func throughLibrary(tb testing.TB, frames []byte) []*eventsocket.Event {
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
		nc.Write(frames)
		nc.Write(endMarker)
		io.Copy(io.Discard, nc)
	}()
	conn, err := eventsocket.Dial(ln.Addr().String(), "x")
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
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

// guardEventStream runs raw server bytes through the event connection's
// guard policy and returns what would be forwarded, and how many frames.
func guardEventStream(raw []byte) ([]byte, int) {
	g := &guard{c: NewClient(Config{}), role: roleEvent}
	fr := newFrameReader(bytes.NewReader(raw), 1<<20)
	var out bytes.Buffer
	n := 0
	for {
		f, err := fr.next()
		if err != nil {
			return out.Bytes(), n
		}
		if b := g.handle(f); b != nil {
			out.Write(b)
			n++
		}
	}
}

func FuzzGuard(f *testing.F) {
	names, _ := filepath.Glob(filepath.Join(fixtureDir, "*.txt"))
	for _, n := range names {
		if b, err := os.ReadFile(n); err == nil && len(b) < 64<<10 {
			f.Add(b)
		}
	}
	f.Add([]byte("Content-Type: api/response\nContent-Length: 1\n\n-"))
	f.Add([]byte("Content-Type: command/reply\nReply-Text: -E\n\n"))
	f.Add([]byte("Content-Type: text/event-json\nContent-Length: 8\n\n{\"\":\"x\"}"))
	f.Add([]byte("Content-Type: text/event-plain\nContent-Length: 20\n\nContent-Length: -1\n\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, n := guardEventStream(raw)
		if n == 0 {
			return
		}
		if got := len(throughLibrary(t, out)); got != n {
			t.Fatalf("library read %d events, guard forwarded %d", got, n)
		}
	})
}

// TestGuardedStreamsThroughLibrary runs each capture through the guard
// and the bare library, as the fuzz target does.
func TestGuardedStreamsThroughLibrary(t *testing.T) {
	for _, name := range fixtureNames(t) {
		out, n := guardEventStream(readFixture(t, name))
		if got := len(throughLibrary(t, out)); got != n {
			t.Errorf("%s: library read %d events, guard forwarded %d", name, got, n)
		}
	}
}
