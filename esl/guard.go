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

	"callbridge/esl/internal/wire"

	"github.com/fiorix/go-eventsocket/eventsocket"
)

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
	fr   *wire.Reader
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
func (c *Client) dial(deadline time.Time, reuse bool) (net.Conn, *wire.Reader, error) {
	d := net.Dialer{Deadline: deadline}
	conn, err := d.Dial("tcp", c.cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("esl: dial %s: %w", c.cfg.Addr, err)
	}
	fr := wire.NewReader(conn, c.cfg.MaxFrameBytes)
	fr.Reuse = reuse
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
func authenticate(conn net.Conn, fr *wire.Reader, password string, deadline time.Time) error {
	conn.SetDeadline(deadline)
	defer conn.SetDeadline(time.Time{})
	f, err := fr.Next()
	if err != nil {
		return fmt.Errorf("esl: reading auth request: %w", err)
	}
	switch ct := f.ContentType; ct {
	case "auth/request":
	case "text/rude-rejection":
		return fmt.Errorf("%w: connection rejected by access list", ErrAuth)
	default:
		return fmt.Errorf("esl: expected auth/request, got %s", strconv.QuoteToASCII(wire.Truncate(ct, 64)))
	}
	if _, err := io.WriteString(conn, "auth "+password+"\n\n"); err != nil {
		return fmt.Errorf("esl: sending auth: %w", err)
	}
	f, err = fr.Next()
	if err != nil {
		return fmt.Errorf("esl: reading auth reply: %w", err)
	}
	if f.ContentType != "command/reply" {
		return fmt.Errorf("esl: unexpected auth reply %s", strconv.QuoteToASCII(wire.Truncate(f.ContentType, 64)))
	}
	if rt := f.ReplyText; !strings.HasPrefix(rt, "+OK") {
		return fmt.Errorf("%w: %s", ErrAuth, strconv.QuoteToASCII(wire.Truncate(rt, 64)))
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
		f, err := g.fr.Next()
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
func (g *guard) handle(f *wire.Frame) []byte {
	switch ct := f.ContentType; ct {
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
	v, out, reason := wire.Inspect(f)
	switch v {
	case wire.Drop:
		g.c.dropped(roleCommand, f, reason)
		return nil
	case wire.Rewrite:
		g.c.framesRewritten.Add(1)
		g.c.log.Warn("esl: rewrote frame", "node", g.c.cfg.Name, "conn", string(roleCommand),
			"content_type", wire.Truncate(f.ContentType, 64), "reason", reason)
	}
	return out
}

func (c *Client) dropped(r role, f *wire.Frame, reason string) {
	c.framesDropped.Add(1)
	c.log.Warn("esl: dropped frame", "node", c.cfg.Name, "conn", string(r),
		"content_type", wire.Truncate(f.ContentType, 64), "bytes", f.Length, "reason", reason)
}

func (c *Client) disconnectNotice(r role, f *wire.Frame) {
	c.log.Info("esl: disconnect notice", "node", c.cfg.Name, "conn", string(r),
		"text", wire.Truncate(strings.TrimSpace(string(f.Body)), 200))
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
			if _, werr := g.real.Write(wire.LFOnly(chunk)); werr != nil {
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

// close closes both sockets; the library's reader then sees EOF.
func (g *guard) close() {
	g.real.Close()
	if g.lb != nil {
		g.lb.Close()
	}
}
