package esltest

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// conn is one inbound event-socket connection. Subscription fields are
// guarded by Server.mu.
type conn struct {
	s   *Server
	nc  net.Conn
	out chan []byte
	// done is closed when the connection is finished; closing is idempotent.
	done      chan struct{}
	doneOnce  sync.Once
	flushThen chan struct{} // closed: close the socket once out is drained
	flushOnce sync.Once

	authed bool
	format string // "", "plain" or "json"
	all    bool
	events map[string]bool
	subcls map[string]bool // CUSTOM subclasses
	filter []header
	myUUID string
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, out: make(chan []byte, s.QueueSize), done: make(chan struct{}),
		flushThen: make(chan struct{}), events: map[string]bool{}, subcls: map[string]bool{}}
	c.out <- []byte("Content-Type: auth/request\n\n")
	return c
}

// enqueueLocked queues a frame without blocking; a connection whose queue
// is full is dropped, as FreeSWITCH drops a listener that does not read.
func (c *conn) enqueueLocked(frame []byte) {
	select {
	case <-c.done:
		return
	default:
	}
	select {
	case c.out <- frame:
	default:
		c.s.Logger.Warn("esltest: dropping connection that does not read its events", "remote", c.nc.RemoteAddr().String())
		c.abortLocked()
	}
}

// abortLocked closes the socket now, discarding queued frames.
func (c *conn) abortLocked() {
	c.doneOnce.Do(func() {
		close(c.done)
		c.nc.Close()
		delete(c.s.conns, c)
	})
}

// closeAfterFlushLocked closes the socket once the frames queued so far are
// written (after exit, failed auth or shutdown).
func (c *conn) closeAfterFlushLocked() {
	c.flushOnce.Do(func() { close(c.flushThen) })
}

func (c *conn) writeLoop() {
	defer c.s.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case f := <-c.out:
			if !c.write(f) {
				return
			}
			continue
		default:
		}
		select {
		case <-c.done:
			return
		case f := <-c.out:
			if !c.write(f) {
				return
			}
		case <-c.flushThen:
			// Drain what is queued, then close.
			for {
				select {
				case f := <-c.out:
					if !c.write(f) {
						return
					}
				default:
					c.s.mu.Lock()
					c.abortLocked()
					c.s.mu.Unlock()
					return
				}
			}
		}
	}
}

func (c *conn) write(f []byte) bool {
	c.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.nc.Write(f); err != nil {
		c.s.mu.Lock()
		c.abortLocked()
		c.s.mu.Unlock()
		return false
	}
	return true
}

// wants reports whether e passes this connection's subscription and filters.
func (c *conn) wants(e *event) bool {
	if !c.authed || c.format == "" {
		return false
	}
	if !c.all && !c.events[e.name] {
		if e.name != "CUSTOM" || !c.subcls[e.get("Event-Subclass")] {
			return false
		}
	}
	if c.myUUID != "" && e.get("Unique-ID") != c.myUUID && e.name != "BACKGROUND_JOB" {
		return false
	}
	if len(c.filter) == 0 {
		return true
	}
	for _, f := range c.filter {
		for _, h := range e.headers {
			if h.name == f.name && h.value == f.value {
				return true
			}
		}
	}
	return false
}

// readLoop reads command blocks (a command line, optional header lines, a
// blank line) and answers them in order.
func (c *conn) readLoop() {
	defer c.s.wg.Done()
	defer func() {
		c.s.mu.Lock()
		c.closeAfterFlushLocked()
		c.s.mu.Unlock()
	}()
	c.s.wg.Add(1)
	go func() {
		defer c.s.wg.Done()
		select {
		case <-c.s.ctx.Done():
			c.s.mu.Lock()
			c.closeAfterFlushLocked()
			c.s.mu.Unlock()
		case <-c.done:
		}
	}()
	r := bufio.NewReader(c.nc)
	for {
		lines, body, err := readCommand(r)
		if err != nil {
			return
		}
		if len(lines) == 0 {
			continue
		}
		c.s.mu.Lock()
		c.s.commands = append(c.s.commands, strings.Join(lines, "\n"))
		delay := c.s.replyDelay
		c.s.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-c.done:
				return
			}
		}
		if !c.handle(lines, body) {
			return
		}
		select {
		case <-c.done:
			return
		default:
		}
	}
}

// readCommand reads one command block; "\r\n" line ends are accepted. A
// Content-Length header line (sendmsg) is followed by that many body bytes.
func readCommand(r *bufio.Reader) ([]string, []byte, error) {
	var lines []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if len(lines) == 0 {
				continue
			}
			break
		}
		lines = append(lines, line)
	}
	var body []byte
	for _, l := range lines[1:] {
		if name, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Content-Length") {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err == nil && n > 0 && n < 1<<20 {
				body = make([]byte, n)
				if _, err := io.ReadFull(r, body); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	return lines, body, nil
}

func (c *conn) reply(text string, extra ...header) {
	c.s.mu.Lock()
	c.enqueueLocked(replyFrame(text, extra...))
	c.s.mu.Unlock()
}

// handle executes one command block; it returns false when the connection
// must stop reading.
func (c *conn) handle(lines []string, body []byte) bool {
	cmd := lines[0]
	verb, rest, _ := strings.Cut(cmd, " ")
	verb = strings.ToLower(verb)
	rest = strings.TrimSpace(rest)
	hdrs := map[string]string{}
	for _, l := range lines[1:] {
		if name, v, ok := strings.Cut(l, ":"); ok {
			hdrs[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(v)
		}
	}
	s := c.s
	s.mu.Lock()
	authed := c.authed
	s.mu.Unlock()
	if !authed {
		if verb != "auth" {
			c.reply("-ERR command not found")
			return true
		}
		s.mu.Lock()
		ok := !s.refuseAuth && rest == s.Password
		if ok {
			c.authed = true
			c.enqueueLocked(replyFrame("+OK accepted"))
		} else {
			c.enqueueLocked(replyFrame("-ERR invalid"))
			c.enqueueLocked(bodyFrame("text/disconnect-notice", goodbyeNotice))
			c.closeAfterFlushLocked()
		}
		s.mu.Unlock()
		return ok
	}
	switch verb {
	case "api":
		name, arg, _ := strings.Cut(rest, " ")
		out := s.execAPI(c, name, strings.TrimSpace(arg))
		s.mu.Lock()
		c.enqueueLocked(bodyFrame("api/response", out))
		s.apiEventLocked(name, strings.TrimSpace(arg))
		s.mu.Unlock()
	case "bgapi":
		job := hdrs["job-uuid"]
		if job == "" {
			job = uuid.NewString()
		}
		c.reply("+OK Job-UUID: "+job, header{"Job-UUID", job})
		name, arg, _ := strings.Cut(rest, " ")
		arg = strings.TrimSpace(arg)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.runJob(job, name, arg)
		}()
	case "event":
		c.subscribe(rest)
	case "nixevent":
		s.mu.Lock()
		for _, n := range strings.Fields(rest) {
			if n == "ALL" {
				c.all = false
				c.events = map[string]bool{}
				continue
			}
			delete(c.events, n)
		}
		c.enqueueLocked(replyFrame("+OK events nixed"))
		s.mu.Unlock()
	case "noevents":
		s.mu.Lock()
		c.all = false
		c.events = map[string]bool{}
		c.subcls = map[string]bool{}
		c.enqueueLocked(replyFrame("+OK no longer listening for events"))
		s.mu.Unlock()
	case "filter":
		c.filterCmd(rest)
	case "myevents":
		f := strings.Fields(rest)
		format := "plain"
		if len(f) > 0 && (f[0] == "plain" || f[0] == "json") {
			format, f = f[0], f[1:]
		}
		if len(f) != 1 {
			c.reply("-ERR Usage: myevents <uuid>")
			break
		}
		s.mu.Lock()
		c.myUUID = f[0]
		c.format = format
		c.all = true
		c.enqueueLocked(replyFrame("+OK Events Enabled"))
		s.mu.Unlock()
	case "linger", "nolinger":
		c.reply("-ERR not controlling a session")
	case "exit":
		s.mu.Lock()
		c.enqueueLocked(replyFrame("+OK bye"))
		c.enqueueLocked(bodyFrame("text/disconnect-notice", goodbyeNotice))
		c.closeAfterFlushLocked()
		s.mu.Unlock()
		return false
	case "sendmsg":
		c.reply(s.sendmsg(rest, hdrs, body))
	default:
		c.reply("-ERR command not found")
	}
	return true
}

func (c *conn) subscribe(rest string) {
	f := strings.Fields(rest)
	format := "plain"
	if len(f) > 0 {
		switch strings.ToLower(f[0]) {
		case "plain", "json":
			format, f = strings.ToLower(f[0]), f[1:]
		case "xml":
			c.reply("-ERR xml event format is not simulated")
			return
		}
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c.format = format
	custom := false
	for _, n := range f {
		switch {
		case n == "ALL":
			c.all = true
		case n == "CUSTOM":
			custom = true
			c.events["CUSTOM"] = true
		case custom && strings.Contains(n, "::"):
			c.subcls[n] = true
		default:
			c.events[n] = true
		}
	}
	c.enqueueLocked(replyFrame("+OK event listener enabled " + format))
}

func (c *conn) filterCmd(rest string) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := strings.CutPrefix(rest, "delete"); ok {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		value = strings.TrimSpace(value)
		if name == "all" || name == "" {
			c.filter = nil
			c.enqueueLocked(replyFrame("+OK filter deleted."))
			return
		}
		kept := c.filter[:0]
		for _, h := range c.filter {
			if h.name == name && (value == "" || h.value == value) {
				continue
			}
			kept = append(kept, h)
		}
		c.filter = kept
		c.enqueueLocked(replyFrame("+OK filter deleted. [" + name + "][" + value + "]"))
		return
	}
	name, value, ok := strings.Cut(rest, " ")
	if !ok || name == "" {
		c.enqueueLocked(replyFrame("-ERR invalid syntax"))
		return
	}
	value = strings.TrimSpace(value)
	c.filter = append(c.filter, header{name, value})
	c.enqueueLocked(replyFrame("+OK filter added. [" + name + "]=[" + value + "]"))
}
