package esl

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
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

// frame is one ESL frame: a header block and Content-Length bytes of
// body. Only the outer headers the client acts on are kept.
type frame struct {
	ct        string // Content-Type
	replyText string // Reply-Text
	jobUUID   string // Job-UUID
	body      []byte
	// oversize is set when the body exceeded the cap and was skipped.
	oversize bool
	length   int
}

func (f *frame) contentType() string { return f.ct }

// frameReader splits a byte stream into frames without trusting it.
type frameReader struct {
	br  *bufio.Reader
	max int
	// reuse makes next return the same frame, with a body in buf, each
	// time: the event connection's reader is done with a frame before it
	// reads the next, and so allocates nothing per frame.
	reuse bool
	f     frame
	buf   []byte
}

func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{br: bufio.NewReaderSize(r, readBufferSize), max: max}
}

// maxReusedBody bounds the body buffer a reusing frameReader keeps.
const maxReusedBody = 1 << 20

// next reads one frame. Any error means the stream is unusable. With
// reuse set, the frame and its body are valid until the next call.
func (r *frameReader) next() (*frame, error) {
	f := &frame{}
	if r.reuse {
		f = &r.f
		*f = frame{}
	}
	// ReadSlice's line is only valid until the next read: the
	// Content-Length is parsed at once.
	length, lengths, lengthOK := 0, 0, false
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
		v = bytes.TrimSpace(v)
		// The first of a repeated header wins, as with textproto's Get.
		switch {
		case foldEqualBytes(k, "Content-Length"):
			length, lengthOK = parseLength(v)
			lengths++
		case foldEqualBytes(k, "Content-Type"):
			if f.ct == "" {
				f.ct = contentTypeString(v)
			}
		case foldEqualBytes(k, "Reply-Text"):
			if f.replyText == "" {
				f.replyText = string(v)
			}
		case foldEqualBytes(k, "Job-UUID"):
			if f.jobUUID == "" {
				f.jobUUID = string(v)
			}
		}
	}
	if lengths == 0 {
		return f, nil
	}
	if lengths != 1 || !lengthOK {
		return nil, fmt.Errorf("%w: bad Content-Length", errDesync)
	}
	n := length
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
	switch {
	case r.reuse && n <= maxReusedBody:
		if cap(r.buf) < n {
			r.buf = make([]byte, n, min(max(n, 2*cap(r.buf)), maxReusedBody))
		}
		f.body = r.buf[:n]
	default:
		f.body = make([]byte, n)
	}
	if _, err := io.ReadFull(r.br, f.body); err != nil {
		return nil, io.ErrUnexpectedEOF
	}
	return f, nil
}

// contentTypeString returns the Content-Type as a string, without
// allocating for the types FreeSWITCH sends.
func contentTypeString(v []byte) string {
	switch string(v) {
	case "text/event-plain":
		return "text/event-plain"
	case "text/event-json":
		return "text/event-json"
	case "command/reply":
		return "command/reply"
	case "api/response":
		return "api/response"
	case "auth/request":
		return "auth/request"
	case "text/disconnect-notice":
		return "text/disconnect-notice"
	}
	return string(v)
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

// verdict is what the guard does with a frame.
type verdict int

const (
	forward verdict = iota // pass it on unchanged in meaning
	rewrite                // pass on a safe replacement
	drop                   // do not pass it on
)

// inspect decides whether go-eventsocket can be given f, and returns the
// bytes to give it. It knows nothing of connection roles; the guard
// applies those (see guard.handle). Events never reach the library: the
// event connection is read by parser.
func inspect(f *frame) (verdict, []byte, string) {
	if f.oversize {
		return drop, nil, fmt.Sprintf("body of %d bytes exceeds the limit", f.length)
	}
	ct := f.contentType()
	switch ct {
	case "auth/request":
		return forward, serialize(ct, nil, nil), ""
	case "command/reply":
		rt := f.replyText
		extra := [][2]string{}
		if f.jobUUID != "" {
			extra = append(extra, [2]string{"Job-UUID", f.jobUUID})
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
	case "text/disconnect-notice":
		return forward, serialize(ct, nil, f.body), ""
	case "text/event-plain", "text/event-json":
		return drop, nil, "events are not given to go-eventsocket"
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

// role names a connection of a node, in logs and errors.
type role string

const (
	roleCommand role = "command"
	roleEvent   role = "event"
)

// guard sits between the command connection's FreeSWITCH socket and
// go-eventsocket's connection, which talks to it over a private loopback
// socket.
type guard struct {
	c    *Client
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

// dialCommand connects the command connection, authenticates, and
// returns a go-eventsocket connection whose every incoming frame passes
// the guard.
func (c *Client) dialCommand(deadline time.Time, kill func(error)) (*guard, *eventsocket.Connection, error) {
	real, fr, err := c.dial(deadline, false)
	if err != nil {
		return nil, nil, err
	}
	g := &guard{c: c, real: real, fr: fr, kill: kill}
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

// dial connects to FreeSWITCH and authenticates.
func (c *Client) dial(deadline time.Time, reuse bool) (net.Conn, *frameReader, error) {
	d := net.Dialer{Deadline: deadline}
	conn, err := d.Dial("tcp", c.cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("esl: dial %s: %w", c.cfg.Addr, err)
	}
	fr := newFrameReader(conn, c.cfg.MaxFrameBytes)
	fr.reuse = reuse
	if err := authenticate(conn, fr, c.cfg.Password, deadline); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, fr, nil
}

func (g *guard) start(deadline time.Time) (*eventsocket.Connection, error) {
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

// authenticate performs the auth exchange with FreeSWITCH, so that a
// refusal is a typed error and the deadline applies.
func authenticate(conn net.Conn, fr *frameReader, password string, deadline time.Time) error {
	conn.SetDeadline(deadline)
	defer conn.SetDeadline(time.Time{})
	f, err := fr.next()
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
	if _, err := io.WriteString(conn, "auth "+password+"\n\n"); err != nil {
		return fmt.Errorf("esl: sending auth: %w", err)
	}
	f, err = fr.next()
	if err != nil {
		return fmt.Errorf("esl: reading auth reply: %w", err)
	}
	if f.contentType() != "command/reply" {
		return fmt.Errorf("esl: unexpected auth reply %s", strconv.QuoteToASCII(truncate(f.contentType(), 64)))
	}
	if rt := f.replyText; !strings.HasPrefix(rt, "+OK") {
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
			g.kill(fmt.Errorf("esl: command connection: %w", err))
			return
		}
		out := g.handle(f)
		if out == nil {
			continue
		}
		if _, err := g.lb.Write(out); err != nil {
			g.kill(fmt.Errorf("esl: command connection: loopback: %w", err))
			return
		}
	}
}

// handle applies the command connection's policy and inspect to one
// frame and returns the bytes to forward, or nil.
func (g *guard) handle(f *frame) []byte {
	switch ct := f.contentType(); ct {
	case "command/reply":
		if g.waiting.Load() <= 0 {
			g.c.dropped(roleCommand, f, "command/reply nobody is waiting for")
			return nil
		}
		g.waiting.Add(-1)
	case "api/response":
		g.c.dropped(roleCommand, f, "api/response was never requested")
		return nil
	case "auth/request":
		g.c.dropped(roleCommand, f, "auth/request after authentication")
		return nil
	case "text/disconnect-notice":
		g.c.disconnectNotice(roleCommand, f)
		return nil
	case "text/event-plain", "text/event-json":
		g.c.dropped(roleCommand, f, "event on the command connection")
		return nil
	}
	v, out, reason := inspect(f)
	switch v {
	case drop:
		g.c.dropped(roleCommand, f, reason)
		return nil
	case rewrite:
		g.c.framesRewritten.Add(1)
		g.c.log.Warn("esl: rewrote frame", "node", g.c.cfg.Name, "conn", string(roleCommand),
			"content_type", truncate(f.contentType(), 64), "reason", reason)
	}
	return out
}

func (c *Client) dropped(r role, f *frame, reason string) {
	c.framesDropped.Add(1)
	c.log.Warn("esl: dropped frame", "node", c.cfg.Name, "conn", string(r),
		"content_type", truncate(f.contentType(), 64), "bytes", f.length, "reason", reason)
}

func (c *Client) disconnectNotice(r role, f *frame) {
	c.log.Info("esl: disconnect notice", "node", c.cfg.Name, "conn", string(r),
		"text", truncate(strings.TrimSpace(string(f.body)), 200))
}

// writeLoop copies the library's writes to FreeSWITCH, counting commands
// (each ends with "\r\n\r\n"; the client refuses CR inside commands).
//
// Every line goes out ending in a bare LF. go-eventsocket ends a command
// with "\r\n\r\n", and FreeSWITCH's mod_event_socket reads a block that
// holds "\r\n" as CR LF-separated lines: "bgapi x\nJob-UUID: id\r\n\r\n"
// would reach it as one command line with our Job-UUID inside its last
// argument. Since no command may contain CR, every CR here is the
// library's framing and is dropped, so each command is "line\n...\n\n".
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
			if _, werr := g.real.Write(lfOnly(chunk)); werr != nil {
				g.kill(fmt.Errorf("esl: command connection: write: %w", werr))
				return
			}
		}
		if err != nil {
			g.kill(fmt.Errorf("esl: command connection: loopback read: %w", err))
			return
		}
	}
}

// lfOnly removes every CR from b, in place.
func lfOnly(b []byte) []byte {
	out := b[:0]
	for _, c := range b {
		if c != '\r' {
			out = append(out, c)
		}
	}
	return out
}

// close closes both sockets; the library's reader then sees EOF.
func (g *guard) close() {
	g.real.Close()
	if g.lb != nil {
		g.lb.Close()
	}
}
