package esl

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"callbridge/esl/esltest"
	"callbridge/esl/freeswitch"
)

// fixtureDir holds the captures from a real FreeSWITCH 1.10.12.
const fixtureDir = "../testdata/freeswitch-esl"

func readFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// fakeFS is a minimal FreeSWITCH event socket over real TCP: it
// authenticates, accepts "event plain ...", answers "bgapi" with
// "+OK Job-UUID" and sends the BACKGROUND_JOB event to every subscribed
// connection. Tests change its behaviour through the exported-style fields
// before connections exist, or through its methods.
type fakeFS struct {
	tb       testing.TB
	ln       net.Listener
	password string

	mu sync.Mutex
	// result computes a bgapi job's body from the command; "" withholds
	// the BACKGROUND_JOB event. Default: "+OK\n".
	result func(cmd string) string
	// reply overrides the command/reply Reply-Text for a bgapi when it
	// returns ok; a silent reply ("" , true) sends nothing.
	reply func(cmd string) (string, bool)
	// result and reply do not apply to the client's readiness probe
	// ("bgapi fsctl ready_check"), which is answered "+OK Job-UUID" with the
	// client's id and completed with "true" unless swallowProbes withholds
	// its BACKGROUND_JOB.
	swallowProbes bool
	conns         map[*fakeConn]bool
	accepted      []*fakeConn // every connection, in accept order
	commands      []string    // every command line received (first line)
	raw           bytes.Buffer
	subs          int // successful event subscriptions
	wg            sync.WaitGroup
}

type fakeConn struct {
	nc         net.Conn
	raw        bytes.Buffer // what the client sent; guarded by fakeFS.mu
	wmu        sync.Mutex
	subscribed bool
}

func (fc *fakeConn) write(b []byte) {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	fc.nc.Write(b)
}

func newFakeFS(tb testing.TB) *fakeFS {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f := &fakeFS{tb: tb, ln: ln, password: "ClueCon", conns: make(map[*fakeConn]bool)}
	f.wg.Add(1)
	go f.serve()
	tb.Cleanup(f.close)
	return f
}

func (f *fakeFS) addr() string { return f.ln.Addr().String() }

func (f *fakeFS) close() {
	f.ln.Close()
	f.dropAll()
	f.wg.Wait()
}

func (f *fakeFS) serve() {
	defer f.wg.Done()
	for {
		nc, err := f.ln.Accept()
		if err != nil {
			return
		}
		fc := &fakeConn{nc: nc}
		f.mu.Lock()
		f.conns[fc] = true
		f.accepted = append(f.accepted, fc)
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.handle(fc)
			nc.Close()
			f.mu.Lock()
			delete(f.conns, fc)
			f.mu.Unlock()
		}()
	}
}

// dropAll closes every connection, as a FreeSWITCH restart would.
func (f *fakeFS) dropAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for fc := range f.conns {
		fc.nc.Close()
	}
}

// dropEvents closes the subscribed (event) connections only.
func (f *fakeFS) dropEvents() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for fc := range f.conns {
		if fc.subscribed {
			fc.nc.Close()
		}
	}
}

// inject writes raw bytes to every subscribed connection.
func (f *fakeFS) inject(raw []byte) {
	f.mu.Lock()
	var targets []*fakeConn
	for fc := range f.conns {
		if fc.subscribed {
			targets = append(targets, fc)
		}
	}
	f.mu.Unlock()
	if len(targets) == 0 {
		f.tb.Error("fakeFS: inject with no subscribed connection")
	}
	for _, fc := range targets {
		fc.write(raw)
	}
}

func (f *fakeFS) commandLines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commands...)
}

func (f *fakeFS) rawReceived() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.raw.String()
}

// rawByConn returns what the client sent on each connection, in accept
// order.
func (f *fakeFS) rawByConn() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, fc := range f.accepted {
		out = append(out, fc.raw.String())
	}
	return out
}

func (f *fakeFS) subscriptions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.subs
}

func (f *fakeFS) handle(fc *fakeConn) {
	fc.write([]byte("Content-Type: auth/request\n\n"))
	// Every byte the client sends is recorded as sent; commands are read
	// as a real FreeSWITCH reads them.
	br := bufio.NewReader(io.TeeReader(fc.nc, recorder{f, fc}))
	authed := false
	for {
		c, err := esltest.ReadCommand(br)
		if err != nil {
			return
		}
		cmd := c.Line
		if !authed {
			if cmd != "auth "+f.password {
				fc.write([]byte("Content-Type: command/reply\nReply-Text: -ERR invalid\n\n"))
				fc.write(readFixture(f.tb, "05-auth-invalid-disconnect-notice.txt"))
				return
			}
			authed = true
			fc.write([]byte("Content-Type: command/reply\nReply-Text: +OK accepted\n\n"))
			continue
		}
		f.mu.Lock()
		f.commands = append(f.commands, cmd)
		f.mu.Unlock()
		switch {
		case strings.HasPrefix(cmd, "event plain "):
			f.mu.Lock()
			fc.subscribed = true
			f.subs++
			f.mu.Unlock()
			fc.write([]byte("Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n"))
		case strings.HasPrefix(cmd, "bgapi "):
			f.bgapi(fc, strings.TrimPrefix(cmd, "bgapi "), c.Get("Job-UUID"))
		default:
			fc.write([]byte("Content-Type: command/reply\nReply-Text: -ERR command not found\n\n"))
		}
	}
}

// recorder appends what a connection's client sent to the server's and
// the connection's raw logs.
type recorder struct {
	f  *fakeFS
	fc *fakeConn
}

func (r recorder) Write(b []byte) (int, error) {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	r.f.raw.Write(b)
	r.fc.raw.Write(b)
	return len(b), nil
}

func (f *fakeFS) bgapi(fc *fakeConn, cmd, id string) {
	if id == "" {
		id = "00000000-0000-4000-8000-00000000f5f5" // FreeSWITCH's own
	}
	f.mu.Lock()
	replyFn, resultFn := f.reply, f.result
	if cmd == freeswitch.ReadyCheck().String() {
		replyFn, resultFn = nil, func(string) string { return "true" }
		if f.swallowProbes {
			resultFn = func(string) string { return "" }
		}
	}
	f.mu.Unlock()
	if replyFn != nil {
		if rt, ok := replyFn(cmd); ok {
			if rt != "" {
				fc.write([]byte("Content-Type: command/reply\nReply-Text: " + rt + "\n\n"))
			}
			return
		}
	}
	fc.write([]byte("Content-Type: command/reply\nReply-Text: +OK Job-UUID: " + id + "\nJob-UUID: " + id + "\n\n"))
	body := "+OK\n"
	if resultFn != nil {
		body = resultFn(cmd)
	}
	if body == "" {
		return
	}
	name, arg, _ := strings.Cut(cmd, " ")
	f.inject(plainEvent([][2]string{
		{"Event-Name", "BACKGROUND_JOB"},
		{"Job-UUID", id},
		{"Job-Command", name},
		{"Job-Command-Arg", arg},
	}, body))
}

// plainEvent frames a text/event-plain event the way FreeSWITCH does.
func plainEvent(headers [][2]string, body string) []byte {
	var in bytes.Buffer
	for _, h := range headers {
		in.WriteString(h[0] + ": " + strings.ReplaceAll(url.QueryEscape(h[1]), "+", "%20") + "\n")
	}
	if body != "" {
		fmt.Fprintf(&in, "Content-Length: %d\n\n%s", len(body), body)
	} else {
		in.WriteString("\n")
	}
	return fmt.Appendf(nil, "Content-Length: %d\nContent-Type: text/event-plain\n\n%s", in.Len(), in.Bytes())
}

// fixtureNames lists the server->client fixture files.
func fixtureNames(tb testing.TB) []string {
	tb.Helper()
	ents, err := os.ReadDir(fixtureDir)
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".txt") || strings.HasSuffix(n, ".client.txt") || strings.HasPrefix(n, "xml-curl") {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
