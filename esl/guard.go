package esl

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fiorix/go-eventsocket/eventsocket"
)

// Limits of the frame reader. A header line longer than the reader's
// buffer, more header lines than maxHeaderLines, or a Content-Length with
// more digits than maxLengthDigits desynchronise the stream: the
// connection is closed and redialled.
const (
	readBufferSize  = 64 << 10
	maxHeaderLines  = 64
	maxLengthDigits = 10
	// discardFactor bounds how far beyond Config.MaxFrameBytes a frame may
	// go and still be skipped (rather than closing the connection).
	discardFactor = 16
)

// malformedReply replaces a Reply-Text go-eventsocket would panic on.
const malformedReply = "-ERR esl: malformed reply"

// errDesync is the cause of closing a connection whose byte stream can no
// longer be split into frames.
var errDesync = errors.New("esl: malformed frame header")

// frame is one ESL frame: a header block and Content-Length bytes of body.
type frame struct {
	header textproto.MIMEHeader
	body   []byte
	// oversize is set when the body exceeded the cap and was skipped.
	oversize bool
	length   int
}

func (f *frame) contentType() string { return f.header.Get("Content-Type") }

// frameReader splits a byte stream into frames without trusting it.
type frameReader struct {
	br  *bufio.Reader
	max int
}

func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{br: bufio.NewReaderSize(r, readBufferSize), max: max}
}

// next reads one frame. Any error means the stream is unusable.
func (r *frameReader) next() (*frame, error) {
	f := &frame{header: make(textproto.MIMEHeader)}
	for n := 0; ; n++ {
		line, err := r.br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, fmt.Errorf("%w: header line too long", errDesync)
			}
			if errors.Is(err, io.EOF) && (n > 0 || len(line) > 0) {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
		if len(line) == 0 {
			break
		}
		if n >= maxHeaderLines {
			return nil, fmt.Errorf("%w: too many header lines", errDesync)
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, fmt.Errorf("%w: continuation line", errDesync)
		}
		k, v, ok := bytes.Cut(line, []byte{':'})
		if !ok || !isToken(k) {
			return nil, fmt.Errorf("%w: not a header line", errDesync)
		}
		key := textproto.CanonicalMIMEHeaderKey(string(k))
		f.header[key] = append(f.header[key], string(bytes.TrimSpace(v)))
	}
	cl, ok := f.header["Content-Length"]
	if !ok {
		return f, nil
	}
	if len(cl) != 1 || cl[0] == "" || len(cl[0]) > maxLengthDigits || !allDigits(cl[0]) {
		return nil, fmt.Errorf("%w: bad Content-Length", errDesync)
	}
	n, err := strconv.Atoi(cl[0])
	if err != nil {
		return nil, fmt.Errorf("%w: bad Content-Length", errDesync)
	}
	f.length = n
	if n > r.max {
		if n > r.max*discardFactor {
			return nil, fmt.Errorf("%w: Content-Length %d far above the limit", errDesync, n)
		}
		if _, err := io.CopyN(io.Discard, r.br, int64(n)); err != nil {
			return nil, io.ErrUnexpectedEOF
		}
		f.oversize = true
		return f, nil
	}
	f.body = make([]byte, n)
	if _, err := io.ReadFull(r.br, f.body); err != nil {
		return nil, io.ErrUnexpectedEOF
	}
	return f, nil
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !(isAlnum(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// verdict is what the guard does with a frame.
type verdict int

const (
	forward verdict = iota // pass it on unchanged in meaning
	rewrite                // pass on a safe replacement
	drop                   // do not pass it on
)

// inspect decides whether go-eventsocket can be given f, and returns the
// bytes to give it. It knows nothing of connection roles; the guard
// applies those (see guard.handle).
func inspect(f *frame) (verdict, []byte, string) {
	if f.oversize {
		return drop, nil, fmt.Sprintf("body of %d bytes exceeds the limit", f.length)
	}
	ct := f.contentType()
	switch ct {
	case "auth/request":
		return forward, serialize(ct, nil, nil), ""
	case "command/reply":
		rt := f.header.Get("Reply-Text")
		extra := [][2]string{}
		if id := f.header.Get("Job-Uuid"); id != "" {
			extra = append(extra, [2]string{"Job-UUID", id})
		}
		if !safeReply(rt) {
			extra = append(extra, [2]string{"Reply-Text", malformedReply})
			return rewrite, serialize(ct, extra, nil), "short or missing Reply-Text"
		}
		extra = append(extra, [2]string{"Reply-Text", rt})
		return forward, serialize(ct, extra, nil), ""
	case "api/response":
		if !safeReply(string(f.body)) {
			return rewrite, serialize(ct, nil, []byte(malformedReply)), "short api/response body"
		}
		return forward, serialize(ct, nil, f.body), ""
	case "text/event-plain":
		if reason := checkPlainBody(f.body); reason != "" {
			return drop, nil, reason
		}
		return forward, serialize(ct, nil, f.body), ""
	case "text/event-json":
		if reason := checkJSONBody(f.body); reason != "" {
			return drop, nil, reason
		}
		return forward, serialize(ct, nil, f.body), ""
	case "text/disconnect-notice":
		return forward, serialize(ct, nil, f.body), ""
	case "":
		return drop, nil, "no Content-Type"
	default:
		return drop, nil, "unsupported Content-Type " + strconv.QuoteToASCII(truncate(ct, 64))
	}
}

// safeReply reports whether go-eventsocket can slice s without panicking:
// it reads s[:2] and, for "-E...", s[5:]; it also reads s[0].
func safeReply(s string) bool {
	if len(s) < 2 {
		return false
	}
	if strings.HasPrefix(s, "-E") && len(s) < 5 {
		return false
	}
	return true
}

// checkPlainBody parses the body exactly as go-eventsocket will (same
// textproto code) and checks its inner Content-Length against the bytes
// that follow, so the library's parse cannot fail or allocate wildly.
func checkPlainBody(body []byte) string {
	br := bufio.NewReader(bytes.NewReader(body))
	hdr, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		return "plain event body is not a header block"
	}
	for k := range hdr {
		if k == "" {
			return "plain event has an empty header name"
		}
	}
	if v := hdr.Get("Content-Length"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > br.Buffered() {
			return "plain event has a bad inner Content-Length"
		}
	}
	return ""
}

// checkJSONBody requires a JSON object without empty keys (go-eventsocket
// indexes key[0]) whose _body, if any, is a string (it asserts one).
func checkJSONBody(body []byte) string {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return "json event body is not a JSON object"
	}
	for k, v := range m {
		if k == "" {
			return "json event has an empty key"
		}
		if k == "_body" && v != nil {
			if _, ok := v.(string); !ok {
				return "json event _body is not a string"
			}
		}
	}
	return ""
}

// serialize writes a frame in the form go-eventsocket expects. Header
// values lose any control bytes so each stays one line.
func serialize(ct string, headers [][2]string, body []byte) []byte {
	var b bytes.Buffer
	b.WriteString("Content-Type: " + ct + "\n")
	for _, h := range headers {
		b.WriteString(h[0] + ": " + cleanValue(h[1]) + "\n")
	}
	if body != nil {
		b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\n")
	}
	b.WriteString("\n")
	b.Write(body)
	return b.Bytes()
}

func cleanValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// role names a connection of a node.
type role string

const (
	roleCommand role = "command"
	roleEvent   role = "event"
)

// guard sits between one FreeSWITCH socket and go-eventsocket's
// connection, which talks to it over a private loopback socket.
type guard struct {
	c    *Client
	role role
	real net.Conn
	fr   *frameReader
	lb   net.Conn // our end of the loopback connection
	lbr  *bufio.Reader
	// waiting counts commands the library wrote and has not had a reply
	// to. A command/reply arriving when it is zero is dropped: passing it
	// on would block the library's reader on its unbuffered channel, or
	// hand the reply to the next command.
	waiting atomic.Int64
	kill    func(error)
}

// dialGuarded connects to FreeSWITCH, authenticates, and returns a
// go-eventsocket connection whose every incoming frame passes the guard.
func (c *Client) dialGuarded(r role, deadline time.Time, kill func(error)) (*guard, *eventsocket.Connection, error) {
	d := net.Dialer{Deadline: deadline}
	real, err := d.Dial("tcp", c.cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("esl: dial %s: %w", c.cfg.Addr, err)
	}
	g := &guard{c: c, role: r, real: real, fr: newFrameReader(real, c.cfg.MaxFrameBytes), kill: kill}
	lib, err := g.start(deadline)
	if err != nil {
		real.Close()
		if g.lb != nil {
			g.lb.Close()
		}
		return nil, nil, err
	}
	return g, lib, nil
}

func (g *guard) start(deadline time.Time) (*eventsocket.Connection, error) {
	if err := g.authenticate(deadline); err != nil {
		return nil, err
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("esl: loopback listen: %w", err)
	}
	token, err := randomToken()
	if err != nil {
		ln.Close()
		return nil, err
	}
	type dialed struct {
		conn *eventsocket.Connection
		err  error
	}
	libc := make(chan dialed, 1)
	go func() {
		conn, err := eventsocket.Dial(ln.Addr().String(), token)
		libc <- dialed{conn, err}
	}()
	ln.SetDeadline(deadline)
	lb, err := ln.Accept()
	ln.Close() // exactly one connection
	if err != nil {
		<-libc
		return nil, fmt.Errorf("esl: loopback accept: %w", err)
	}
	g.lb = lb
	g.lbr = bufio.NewReaderSize(lb, 32<<10)
	if err := g.fakeAuth(token, deadline); err != nil {
		lb.Close()
		if d := <-libc; d.conn != nil {
			d.conn.Close()
		}
		return nil, err
	}
	// The library is waiting for our reply; from here its I/O flows
	// through the loops.
	go g.readLoop()
	go g.writeLoop()
	d := <-libc
	if d.err != nil {
		return nil, fmt.Errorf("esl: loopback handshake: %w", d.err)
	}
	return d.conn, nil
}

// authenticate performs the auth exchange with FreeSWITCH itself, so that
// a refusal is a typed error and the deadline applies.
func (g *guard) authenticate(deadline time.Time) error {
	g.real.SetDeadline(deadline)
	defer g.real.SetDeadline(time.Time{})
	f, err := g.fr.next()
	if err != nil {
		return fmt.Errorf("esl: reading auth request: %w", err)
	}
	switch ct := f.contentType(); ct {
	case "auth/request":
	case "text/rude-rejection":
		return fmt.Errorf("%w: connection rejected by access list", ErrAuth)
	default:
		return fmt.Errorf("esl: expected auth/request, got %s", strconv.QuoteToASCII(truncate(ct, 64)))
	}
	if _, err := io.WriteString(g.real, "auth "+g.c.cfg.Password+"\n\n"); err != nil {
		return fmt.Errorf("esl: sending auth: %w", err)
	}
	f, err = g.fr.next()
	if err != nil {
		return fmt.Errorf("esl: reading auth reply: %w", err)
	}
	if f.contentType() != "command/reply" {
		return fmt.Errorf("esl: unexpected auth reply %s", strconv.QuoteToASCII(truncate(f.contentType(), 64)))
	}
	if rt := f.header.Get("Reply-Text"); !strings.HasPrefix(rt, "+OK") {
		return fmt.Errorf("%w: %s", ErrAuth, strconv.QuoteToASCII(truncate(rt, 64)))
	}
	return nil
}

// fakeAuth authenticates the loopback peer with the one-time token, so
// that no other local process can take the place of the library.
func (g *guard) fakeAuth(token string, deadline time.Time) error {
	g.lb.SetDeadline(deadline)
	defer g.lb.SetDeadline(time.Time{})
	if _, err := io.WriteString(g.lb, "Content-Type: auth/request\n\n"); err != nil {
		return fmt.Errorf("esl: loopback: %w", err)
	}
	want := "auth " + token + "\r\n\r\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(g.lbr, got); err != nil {
		return fmt.Errorf("esl: loopback auth: %w", err)
	}
	if subtle.ConstantTimeCompare(got, []byte(want)) != 1 {
		return errors.New("esl: loopback peer failed authentication")
	}
	_, err := io.WriteString(g.lb, "Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
	return err
}

func randomToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("esl: random token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// readLoop moves frames from FreeSWITCH to the library, through inspect.
func (g *guard) readLoop() {
	for {
		f, err := g.fr.next()
		if err != nil {
			g.kill(fmt.Errorf("esl: %s connection: %w", g.role, err))
			return
		}
		out := g.handle(f)
		if out == nil {
			continue
		}
		if _, err := g.lb.Write(out); err != nil {
			g.kill(fmt.Errorf("esl: %s connection: loopback: %w", g.role, err))
			return
		}
	}
}

// handle applies the connection's policy and inspect to one frame and
// returns the bytes to forward, or nil.
func (g *guard) handle(f *frame) []byte {
	ct := f.contentType()
	switch {
	case ct == "command/reply":
		if g.waiting.Load() <= 0 {
			g.dropped(f, "command/reply nobody is waiting for")
			return nil
		}
		g.waiting.Add(-1)
	case ct == "api/response":
		g.dropped(f, "api/response was never requested")
		return nil
	case ct == "auth/request":
		g.dropped(f, "auth/request after authentication")
		return nil
	case ct == "text/disconnect-notice":
		g.c.log.Info("esl: disconnect notice", "node", g.c.cfg.Name, "conn", string(g.role),
			"text", truncate(strings.TrimSpace(string(f.body)), 200))
		if g.role == roleCommand {
			return nil
		}
	case g.role == roleCommand && (ct == "text/event-plain" || ct == "text/event-json"):
		g.dropped(f, "event on the command connection")
		return nil
	}
	v, out, reason := inspect(f)
	switch v {
	case drop:
		g.dropped(f, reason)
		return nil
	case rewrite:
		g.c.framesRewritten.Add(1)
		g.c.log.Warn("esl: rewrote frame", "node", g.c.cfg.Name, "conn", string(g.role),
			"content_type", truncate(ct, 64), "reason", reason)
	}
	return out
}

func (g *guard) dropped(f *frame, reason string) {
	g.c.framesDropped.Add(1)
	g.c.log.Warn("esl: dropped frame", "node", g.c.cfg.Name, "conn", string(g.role),
		"content_type", truncate(f.contentType(), 64), "bytes", f.length, "reason", reason)
}

// writeLoop copies the library's writes to FreeSWITCH, counting commands
// (each ends with "\r\n\r\n"; the client refuses CR inside commands).
func (g *guard) writeLoop() {
	buf := make([]byte, 32<<10)
	var tail [3]byte
	tailLen := 0
	for {
		n, err := g.lbr.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			joined := append(append([]byte{}, tail[:tailLen]...), chunk...)
			if k := bytes.Count(joined, []byte("\r\n\r\n")); k > 0 {
				g.waiting.Add(int64(k))
			}
			tailLen = copy(tail[:], joined[max(0, len(joined)-3):])
			if _, werr := g.real.Write(chunk); werr != nil {
				g.kill(fmt.Errorf("esl: %s connection: write: %w", g.role, werr))
				return
			}
		}
		if err != nil {
			g.kill(fmt.Errorf("esl: %s connection: loopback read: %w", g.role, err))
			return
		}
	}
}

// close closes both sockets; the library's reader then sees EOF.
func (g *guard) close() {
	g.real.Close()
	if g.lb != nil {
		g.lb.Close()
	}
}
