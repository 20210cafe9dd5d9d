package esl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"callbridge/esl/freeswitch"
	"callbridge/esl/internal/wire"
)

// splitFrames splits raw server bytes into frames with the guard's reader.
func splitFrames(tb testing.TB, raw []byte) []*wire.Frame {
	tb.Helper()
	fr := wire.NewReader(bytes.NewReader(raw), 16<<20)
	var frames []*wire.Frame
	for {
		f, err := fr.Next()
		if err != nil {
			if err.Error() == "EOF" {
				return frames
			}
			tb.Fatalf("frame %d: %v", len(frames), err)
		}
		frames = append(frames, f)
	}
}

// TestFixtureFrames checks that every frame of every capture is framed,
// and that every event parses and every other frame is judged safe by the
// guard without being dropped or rewritten.
func TestFixtureFrames(t *testing.T) {
	for _, name := range fixtureNames(t) {
		t.Run(name, func(t *testing.T) {
			frames := splitFrames(t, readFixture(t, name))
			if len(frames) == 0 {
				t.Fatal("no frames")
			}
			if !strings.Contains(name, "stream") && len(frames) != 1 {
				t.Fatalf("got %d frames, want 1", len(frames))
			}
			var p wire.Parser
			for i, f := range frames {
				switch f.ContentType {
				case "text/event-plain":
					if _, err := parsePlain(&p, "n", f.Body, time.Now()); err != nil {
						t.Fatalf("frame %d: %v", i, err)
					}
					continue
				case "text/event-json":
					if _, err := parseJSON(&p, "n", f.Body, time.Now()); err != nil {
						t.Fatalf("frame %d: %v", i, err)
					}
					continue
				}
				v, out, reason := wire.Inspect(f)
				if v != wire.Forward {
					t.Fatalf("frame %d (%s): verdict %d: %s", i, f.ContentType, v, reason)
				}
				// The forwarded bytes frame identically.
				again := splitFrames(t, out)
				if len(again) != 1 || again[0].ContentType != f.ContentType || !bytes.Equal(again[0].Body, f.Body) {
					t.Fatalf("frame %d: forwarded bytes differ", i)
				}
			}
		})
	}
}

// eventFrames counts the event frames in a capture and returns their
// Event-Name and Unique-ID, read independently of the client.
func eventFrames(tb testing.TB, raw []byte) (names, uuids []string) {
	for _, f := range splitFrames(tb, raw) {
		switch f.ContentType {
		case "text/event-plain":
			h, err := textproto.NewReader(bufioReader(f.Body)).ReadMIMEHeader()
			if err != nil {
				tb.Fatal(err)
			}
			names = append(names, h.Get("Event-Name"))
			uuids = append(uuids, h.Get("Unique-Id"))
		case "text/event-json":
			var m map[string]any
			if err := json.Unmarshal(f.Body, &m); err != nil {
				tb.Fatal(err)
			}
			u, _ := m["Unique-ID"].(string)
			names = append(names, m["Event-Name"].(string))
			uuids = append(uuids, u)
		}
	}
	return names, uuids
}

// TestFixturesThroughClient replays every capture, streams included, on a
// live client's event connection and checks every event arrives, in order,
// with its name and Unique-ID, through the guard and go-eventsocket.
func TestFixturesThroughClient(t *testing.T) {
	f := newFakeFS(t)
	c, sub := connected(t, f, Config{})
	dropped := uint64(0)
	for _, name := range fixtureNames(t) {
		raw := readFixture(t, name)
		names, uuids := eventFrames(t, raw)
		for _, fr := range splitFrames(t, raw) {
			switch fr.ContentType {
			case "command/reply", "api/response", "auth/request":
				dropped++ // nobody asked: dropped, never forwarded
			}
		}
		marker := fmt.Sprintf("marker-%s", name)
		f.inject(raw)
		f.inject(plainEvent([][2]string{{"Event-Name", "CUSTOM"}, {"Event-Subclass", marker}}, ""))
		i := 0
		waitEvent(t, sub, func(e freeswitch.Event) bool {
			if e.Get("Event-Subclass") == marker {
				return true
			}
			if i >= len(names) {
				t.Fatalf("%s: unexpected event %s", name, e.Name)
			}
			if string(e.Name) != names[i] || e.UUID != uuids[i] || e.Node != c.Name() {
				t.Errorf("%s: event %d: got %s %s, want %s %s", name, i, e.Name, e.UUID, names[i], uuids[i])
			}
			i++
			return false
		})
		if i != len(names) {
			t.Errorf("%s: got %d events, want %d", name, i, len(names))
		}
	}
	if got := c.Stats().FramesDropped; got != dropped {
		t.Errorf("got %d dropped frames, want %d", got, dropped)
	}
	if got := c.Stats().Redials; got != 0 {
		t.Errorf("got %d redials, want 0", got)
	}
}

// TestEventHeaders checks header access by FreeSWITCH's own names, on
// plain and JSON captures of the same kind of event.
func TestEventHeaders(t *testing.T) {
	f := newFakeFS(t)
	_, sub := connected(t, f, Config{})
	for _, name := range []string{
		"29-channel-hangup-complete-normal.plain.txt",
		"29-channel-hangup-complete-normal.json.txt",
		"12-background-job-originate-user-busy.plain.txt",
		"12-background-job-originate-user-busy.json.txt",
	} {
		t.Run(name, func(t *testing.T) {
			f.inject(readFixture(t, name))
			e := waitEvent(t, sub, func(e freeswitch.Event) bool { return e.Name != freeswitch.SocketConnected })
			switch e.Name {
			case freeswitch.ChannelHangupComplete:
				if e.Get("Hangup-Cause") != "NORMAL_CLEARING" || e.Var("billsec") != "3" {
					t.Errorf("got cause %q billsec %q", e.Get("Hangup-Cause"), e.Var("billsec"))
				}
				if ms, ok := e.Int64("variable_billmsec"); !ok || ms < 2500 || ms > 3500 {
					t.Errorf("got billmsec %d %v", ms, ok)
				}
				if e.Get("Caller-Destination-Number") == "" || e.UUID == "" || e.Get("unique-id") != e.UUID {
					t.Errorf("missing Caller-Destination-Number or Unique-ID")
				}
				if e.Time().IsZero() || e.Time().Location().String() != "UTC" {
					t.Errorf("got time %v", e.Time())
				}
			case freeswitch.BackgroundJob:
				if e.Get("Job-UUID") == "" || e.Body != "-ERR USER_BUSY\n" {
					t.Errorf("got job %q body %q", e.Get("Job-UUID"), e.Body)
				}
				if !strings.Contains(e.Get("Job-Command-Arg"), "{origination_uuid=") {
					t.Errorf("got Job-Command-Arg %q (not URL-decoded?)", e.Get("Job-Command-Arg"))
				}
			default:
				t.Fatalf("got %s", e.Name)
			}
		})
	}
}

// TestHazards sends every frame go-eventsocket cannot survive (see
// notes/go-eventsocket.md) on the event connection, then checks that the
// process is alive, the frames were dropped, JSON values of every type
// read back, and commands still work on the same connections.
func TestHazards(t *testing.T) {
	hazards := []struct {
		name string
		raw  string
	}{
		{"log data", "Content-Type: log/data\nContent-Length: 5\nLog-Level: 7\n\nhello"},
		{"rude rejection", "Content-Type: text/rude-rejection\nContent-Length: 8\n\nGo away!"},
		{"no content type", "Content-Length: 3\n\nabc"},
		{"short api body", "Content-Type: api/response\nContent-Length: 1\n\n-"},
		{"empty api body", "Content-Type: api/response\n\n"},
		{"short reply", "Content-Type: command/reply\nReply-Text: +\n\n"},
		{"short err reply", "Content-Type: command/reply\nReply-Text: -ER\n\n"},
		{"missing reply text", "Content-Type: command/reply\n\n"},
		{"plain not headers", "Content-Type: text/event-plain\nContent-Length: 12\n\nno colon\nxx"},
		{"plain inner length too long", "Content-Type: text/event-plain\nContent-Length: 40\n\nEvent-Name: CUSTOM\nContent-Length: 99\n\nab"},
		{"plain inner length negative", "Content-Type: text/event-plain\nContent-Length: 40\n\nEvent-Name: CUSTOM\nContent-Length: -1\n\nab"},
		{"json not object", "Content-Type: text/event-json\nContent-Length: 7\n\n[1,2,3]"},
		{"json null", "Content-Type: text/event-json\nContent-Length: 4\n\nnull"},
		{"json broken", "Content-Type: text/event-json\nContent-Length: 5\n\n{\"a\":"},
		{"json empty key", "Content-Type: text/event-json\nContent-Length: 8\n\n{\"\":\"x\"}"},
		{"json numeric body", "Content-Type: text/event-json\nContent-Length: 11\n\n{\"_body\":1}"},
		{"oversize", "Content-Type: text/event-plain\nContent-Length: 2000\n\n" + strings.Repeat("x", 2000)},
	}
	f := newFakeFS(t)
	c, sub := connected(t, f, Config{MaxFrameBytes: 1024})
	for _, h := range hazards {
		f.inject([]byte(h.raw))
	}
	// JSON events with non-string values are delivered, not fatal.
	js := `{"Event-Name":"CUSTOM","Unique-ID":"u1","Num":5,"Float":1.5,"Bool":true,"Null":null,"Arr":[1,"a"],"Obj":{"k":1},"_body":"hi"}`
	f.inject(fmt.Appendf(nil, "Content-Type: text/event-json\nContent-Length: %d\n\n%s", len(js), js))
	e := waitEvent(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.Custom })
	for k, want := range map[string]string{"Num": "5", "Float": "1.5", "Bool": "true", "Null": "", "Arr": "1, a", "Obj": `{"k":1}`} {
		if got := e.Get(k); got != want {
			t.Errorf("Get(%q): got %q, want %q", k, got, want)
		}
	}
	if e.Body != "hi" || e.UUID != "u1" {
		t.Errorf("got body %q uuid %q", e.Body, e.UUID)
	}
	if _, err := c.API(ctxT(t), freeswitch.Status()); err != nil {
		t.Fatalf("after hazards: %v", err)
	}
	st := c.Stats()
	if st.FramesDropped != uint64(len(hazards)) || st.Redials != 0 || st.State != StateConnected {
		t.Errorf("got dropped %d redials %d state %v, want %d, 0, connected", st.FramesDropped, st.Redials, st.State, len(hazards))
	}
}

// TestDesync checks that a stream that cannot be framed closes the
// connection (and only that): the client redials.
func TestDesync(t *testing.T) {
	for _, raw := range []string{
		"Content-Type: text/event-plain\nContent-Length: abc\n\n",
		"Content-Type: text/event-plain\n continuation\n\n",
		"garbage line without colon\n\n",
		"Content-Type: text/event-plain\nContent-Length: 99999999999\n\n",
		"Content-Type: text/event-plain\n" + strings.Repeat("x", 70000) + "\n\n",
	} {
		t.Run(raw[:min(len(raw), 40)], func(t *testing.T) {
			f := newFakeFS(t)
			c, sub := connected(t, f, Config{})
			f.inject([]byte(raw))
			waitEvent(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.SocketConnected })
			if _, err := c.API(ctxT(t), freeswitch.Status()); err != nil {
				t.Fatalf("after redial: %v", err)
			}
		})
	}
}

func TestSlowConsumer(t *testing.T) {
	f := newFakeFS(t)
	c, _ := connected(t, f, Config{})
	idle := c.Subscribe(20000) // never read
	defer idle.Close()
	small := c.Subscribe(10) // overflows
	// reader subscribes last: an event it has seen is already queued for
	// the others.
	reader := c.Subscribe(0)
	defer reader.Close()
	const n = 10000
	var all bytes.Buffer
	for i := range n {
		all.Write(plainEvent([][2]string{
			{"Event-Name", "CHANNEL_HANGUP_COMPLETE"},
			{"Unique-ID", fmt.Sprintf("00000000-0000-4000-8000-%012d", i)},
			{"variable_billmsec", "3000"},
		}, ""))
	}
	f.inject(all.Bytes())
	// Commands complete while nobody reads idle.
	if _, err := c.API(ctxT(t), freeswitch.Status()); err != nil {
		t.Fatal(err)
	}
	f.inject(plainEvent([][2]string{{"Event-Name", "CUSTOM"}, {"Event-Subclass", "last"}}, ""))
	got := 0
	waitEvent(t, reader, func(e freeswitch.Event) bool {
		if e.Name == freeswitch.ChannelHangupComplete {
			got++
		}
		return e.Get("Event-Subclass") == "last"
	})
	if got != n {
		t.Errorf("reader got %d events, want %d", got, n)
	}
	// idle holds every event: n hangups, the job's BACKGROUND_JOB and
	// "last", less the one waiting on its channel.
	if depth := idle.Len(); depth != n+1 {
		t.Errorf("idle queue depth %d, want %d", depth, n+1)
	}
	if _, ok := <-small.C(); ok {
		// it may deliver one event it took before overflowing
		for range small.C() {
		}
	}
	if err := small.Err(); err != ErrOverflow {
		t.Errorf("got %v, want ErrOverflow", err)
	}
	depths := c.Stats().QueueDepths
	if len(depths) != 3 || depths[1] != n+1 {
		t.Errorf("got queue depths %v", depths)
	}
}
