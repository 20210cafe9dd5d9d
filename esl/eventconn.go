package esl

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"callbridge/esl/freeswitch"
	"callbridge/esl/internal/wire"
)

// drainTimeout bounds how long the event connection is still read after
// the command connection failed: events FreeSWITCH already sent (the
// CHANNEL_HANGUP_COMPLETEs of a shutdown, say) are delivered before the
// loss is reported. When FreeSWITCH closed both sockets the drain ends at
// the event connection's EOF, long before this.
const drainTimeout = 500 * time.Millisecond

// eventConn is the event connection. go-eventsocket is not used on it:
// its ReadEvent selects at random between a buffered event and the error
// at EOF, so it can lose events already received, and it parses every
// event a second time behind the guard. Instead frames are read and
// validated by wire.Reader and turned into Events by wire.Parser, in this one
// goroutine, in arrival order.
type eventConn struct {
	c    *Client
	conn net.Conn
	fr   *wire.Reader
	p    wire.Parser
	// early holds events that arrived before the subscription's reply.
	early []freeswitch.Event
}

// dialEvents connects the event connection, authenticates and subscribes
// with line ("event plain ..."), waiting at most timeout for the reply.
func (c *Client) dialEvents(deadline time.Time, line string, timeout time.Duration) (*eventConn, error) {
	conn, fr, err := c.dial(deadline, true)
	if err != nil {
		return nil, err
	}
	ec := &eventConn{c: c, conn: conn, fr: fr}
	if err := ec.subscribe(line, timeout); err != nil {
		conn.Close()
		return nil, err
	}
	return ec, nil
}

// subscribe writes the subscription command and reads up to its
// command/reply, which on this connection is just another frame.
func (ec *eventConn) subscribe(line string, timeout time.Duration) error {
	ec.conn.SetDeadline(time.Now().Add(timeout))
	defer ec.conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(ec.conn, line+"\n\n"); err != nil {
		return fmt.Errorf("esl: subscribe: %w", err)
	}
	for {
		f, err := ec.fr.Next()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("esl: subscribe: %w", ErrStuck)
		}
		if err != nil {
			return fmt.Errorf("esl: subscribe: %w", err)
		}
		if f.ContentType != "command/reply" {
			if e, ok := ec.handle(f); ok {
				ec.early = append(ec.early, e)
			}
			continue
		}
		switch rt := f.ReplyText; {
		case strings.HasPrefix(rt, "+OK"):
			return nil
		case strings.HasPrefix(rt, "-"):
			return fmt.Errorf("esl: subscribe: %w", &ReplyError{Text: rt})
		default:
			return fmt.Errorf("esl: subscribe: %w", &ReplyError{Text: wire.MalformedReply})
		}
	}
}

// handle applies the event connection's policy to one frame and returns
// the event it carries, if any. Everything else is dropped and counted,
// except disconnect notices, which are logged (the EOF that follows ends
// the connection).
func (ec *eventConn) handle(f *wire.Frame) (freeswitch.Event, bool) {
	c := ec.c
	if f.Oversize {
		c.dropped(roleEvent, f, fmt.Sprintf("body of %d bytes exceeds the limit", f.Length))
		return freeswitch.Event{}, false
	}
	var (
		h        *wire.Headers
		body     string
		received time.Time
		err      error
	)
	switch ct := f.ContentType; ct {
	case "text/event-plain":
		received = time.Now().UTC()
		h, body, err = ec.p.Plain(f.Body)
	case "text/event-json":
		received = time.Now().UTC()
		h, body, err = ec.p.JSON(f.Body)
	case "text/disconnect-notice":
		c.disconnectNotice(roleEvent, f)
		return freeswitch.Event{}, false
	case "command/reply":
		c.dropped(roleEvent, f, "command/reply nobody is waiting for")
		return freeswitch.Event{}, false
	case "api/response":
		c.dropped(roleEvent, f, "api/response was never requested")
		return freeswitch.Event{}, false
	case "auth/request":
		c.dropped(roleEvent, f, "auth/request after authentication")
		return freeswitch.Event{}, false
	case "":
		c.dropped(roleEvent, f, "no Content-Type")
		return freeswitch.Event{}, false
	default:
		c.dropped(roleEvent, f, "unsupported Content-Type")
		return freeswitch.Event{}, false
	}
	if err != nil {
		c.dropped(roleEvent, f, strings.TrimPrefix(err.Error(), "esl: "))
		return freeswitch.Event{}, false
	}
	return freeswitch.ReceivedEvent(c.cfg.Name, h, body, received), true
}
