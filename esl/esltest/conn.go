package esltest

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"time"

	"callbridge/esl/esltest/internal/call"
	"callbridge/esl/esltest/internal/fswitch"

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
	// listening is set once an event, nixevent or myevents command
	// succeeded; format is "plain" (the default) or "json".
	listening bool
	format    string
	all       bool
	events    map[string]bool
	subcls    map[string]bool // CUSTOM subclasses
	filter    []header
	myUUID    string
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, out: make(chan []byte, s.QueueSize), done: make(chan struct{}),
		flushThen: make(chan struct{}), format: "plain", events: map[string]bool{}, subcls: map[string]bool{}}
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
func (c *conn) wants(e *call.Event) bool {
	if !c.authed || !c.listening {
		return false
	}
	if !c.all {
		if !c.events[e.Name] {
			return false
		}
		if sub := e.Get("Event-Subclass"); e.Name == "CUSTOM" && sub != "" && !c.subcls[sub] {
			return false
		}
	}
	if c.myUUID != "" && e.Get("Unique-ID") != c.myUUID && e.Name != "BACKGROUND_JOB" {
		return false
	}
	return c.passesFilters(e)
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
		p, err := readPacket(r)
		if err != nil {
			return
		}
		c.s.mu.Lock()
		c.s.commands = append(c.s.commands, p.String())
		delay := c.s.replyDelay
		c.s.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-c.done:
				return
			}
		}
		if !c.handle(p) {
			return
		}
		select {
		case <-c.done:
			return
		default:
		}
	}
}

func (c *conn) reply(text string, extra ...header) {
	c.s.mu.Lock()
	c.enqueueLocked(replyFrame(text, extra...))
	c.s.mu.Unlock()
}

// hasPrefixFold is strncasecmp(s, prefix, len(prefix)) == 0.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// handle executes one command block as mod_event_socket's parse_command
// does: commands are recognised by prefix, in its order, and each reads its
// arguments from the block cut by stripCR. It returns false when the
// connection must stop reading.
func (c *conn) handle(p *packet) bool {
	cmd := p.command
	s := c.s
	if hasPrefixFold(cmd, "exit") || hasPrefixFold(cmd, "...") {
		s.mu.Lock()
		c.enqueueLocked(replyFrame("+OK bye"))
		c.enqueueLocked(bodyFrame("text/disconnect-notice", goodbyeNotice))
		c.closeAfterFlushLocked()
		s.mu.Unlock()
		return false
	}
	s.mu.Lock()
	authed := c.authed
	s.mu.Unlock()
	if !authed {
		if !hasPrefixFold(cmd, "auth ") {
			c.reply("-ERR command not found")
			return true
		}
		s.mu.Lock()
		ok := !s.refuseAuth && stripCR(cmd)[len("auth "):] == s.Password
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
	line := stripCR(cmd)
	switch {
	case hasPrefixFold(cmd, "filter "):
		c.filterCmd(line[len("filter "):])
	case hasPrefixFold(cmd, "myevents "):
		c.myevents(line[len("myevents "):])
	case hasPrefixFold(cmd, "divert_events"):
		c.reply("-ERR not controlling a session.")
	case hasPrefixFold(cmd, "sendmsg"):
		id := strings.TrimLeft(cmd[len("sendmsg"):], " ")
		if strings.HasPrefix(id, "\r") || strings.HasPrefix(id, "\n") {
			id = ""
		}
		id = stripCR(id)
		if id == "" {
			id, _ = p.header("session-id")
		}
		get := func(name string) string {
			v, _ := p.header(name)
			return v
		}
		m := fswitch.Msg{Command: get("call-command"), HangupCause: get("hangup-cause"),
			App: get("execute-app-name"), Arg: get("execute-app-arg")}
		if len(p.body) > 0 {
			m.Arg = string(p.body)
		}
		c.reply(s.sw.SendMsg(id, m))
	case hasPrefixFold(cmd, "api "):
		name, arg := splitAPI(line[len("api "):])
		s.sw.API(name, arg, c.done, func(out string) {
			if out == "" {
				out = "-ERR no reply\n"
			}
			s.mu.Lock()
			c.enqueueLocked(bodyFrame("api/response", out))
			s.mu.Unlock()
		})
	case hasPrefixFold(cmd, "bgapi "):
		name, arg := splitAPI(line[len("bgapi "):])
		job, ok := p.header("job-uuid")
		s.mu.Lock()
		own := s.jobEvents == JobEventsOwnUUID
		s.mu.Unlock()
		if !ok || own {
			job = uuid.NewString()
		}
		// acs->uuid_str holds SWITCH_UUID_FORMATTED_LENGTH (36) bytes.
		if len(job) > 36 {
			job = job[:36]
		}
		c.reply("+OK Job-UUID: "+job, header{"Job-UUID", job})
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.sw.Job(job, name, arg, func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.jobEvents != JobEventsSwallowed
			})
		}()
	case hasPrefixFold(cmd, "log"):
		// Log streaming is not simulated (see the package documentation).
		c.reply("-ERR command not found")
	case hasPrefixFold(cmd, "linger"), hasPrefixFold(cmd, "nolinger"):
		c.reply("-ERR not controlling a session")
	case hasPrefixFold(cmd, "nolog"):
		c.reply("-ERR not loging")
	case hasPrefixFold(cmd, "event"):
		c.subscribe(line[len("event"):])
	case hasPrefixFold(cmd, "nixevent"):
		c.nixevent(line[len("nixevent"):])
	case hasPrefixFold(cmd, "noevents"):
		s.mu.Lock()
		if !c.listening {
			c.enqueueLocked(replyFrame("-ERR not listening for events"))
		} else {
			c.listening = false
			c.all = false
			c.events = map[string]bool{}
			c.subcls = map[string]bool{}
			c.enqueueLocked(replyFrame("+OK no longer listening for events"))
		}
		s.mu.Unlock()
	default:
		c.reply("-ERR command not found")
	}
	return true
}

// splitAPI splits an api or bgapi command line at its first space into the
// command's name and argument, as mod_event_socket does.
func splitAPI(s string) (name, arg string) {
	name, arg, _ = strings.Cut(s, " ")
	return name, arg
}

// myevents implements "myevents <uuid> [plain|json]" on an inbound
// connection: an unknown uuid is refused only when a format follows it.
func (c *conn) myevents(rest string) {
	id, format, hasFormat := strings.Cut(rest, " ")
	s := c.s
	known := !hasFormat || s.sw.Exists(id) // before mu: the switch's lock comes first
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.myUUID != "" {
		c.enqueueLocked(replyFrame("-ERR aready enabled."))
		return
	}
	if !known {
		c.enqueueLocked(replyFrame("-ERR invalid uuid"))
		return
	}
	c.myUUID = id
	c.listening = true
	c.format = "plain"
	if strings.EqualFold(format, "json") {
		c.format = "json"
	}
	c.all = true
	c.enqueueLocked(replyFrame("+OK Events Enabled"))
}

// subscribe implements "event [plain|json|xml] <names...>": rest is what
// follows "event". Names are matched as switch_name_event does (unknown ones
// are ignored), every word after CUSTOM is a subclass, and a command with
// no known name is refused.
func (c *conn) subscribe(rest string) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	keys, custom := 0, false
	if _, words, ok := strings.Cut(rest, " "); ok {
		for i, w := range strings.Split(words, " ") {
			if i == 0 {
				switch strings.ToLower(w) {
				case "plain", "json":
					c.format = strings.ToLower(w)
					continue
				case "xml":
					c.enqueueLocked(replyFrame("-ERR xml event format is not simulated"))
					return
				}
			}
			if custom {
				c.subcls[w] = true
				continue
			}
			name, ok := eventName(w)
			if !ok {
				continue
			}
			keys++
			switch name {
			case "ALL":
				c.all = true
			case "CUSTOM":
				custom = true
				c.events[name] = true
			default:
				c.events[name] = true
			}
		}
	}
	if keys == 0 {
		c.enqueueLocked(replyFrame("-ERR no keywords supplied"))
		return
	}
	c.listening = true
	c.enqueueLocked(replyFrame("+OK event listener enabled " + c.format))
}

// nixevent implements "nixevent <names...>"; rest is what follows
// "nixevent".
func (c *conn) nixevent(rest string) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	keys, custom := 0, false
	if _, words, ok := strings.Cut(rest, " "); ok {
		for _, w := range strings.Split(words, " ") {
			if custom {
				delete(c.subcls, w)
				continue
			}
			name, ok := eventName(w)
			if !ok {
				continue
			}
			keys++
			switch name {
			case "CUSTOM":
				custom = true
			case "ALL":
				c.all = false
				c.events = map[string]bool{}
			default:
				if c.all {
					c.all = false
					for _, n := range eventNames {
						if n != "ALL" {
							c.events[n] = true
						}
					}
				}
				delete(c.events, name)
			}
		}
	}
	if keys == 0 {
		c.enqueueLocked(replyFrame("-ERR no keywords supplied"))
		return
	}
	c.listening = true
	c.enqueueLocked(replyFrame("+OK events nixed"))
}

// filterCmd implements "filter [add] <header> <value>" and "filter delete
// <header> [<value>]|all"; rest is what follows "filter ".
func (c *conn) filterCmd(rest string) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	name, value, hasValue := strings.Cut(strings.TrimLeft(rest, " "), " ")
	switch {
	case strings.EqualFold(name, "delete") && hasValue:
		name, value, hasValue = strings.Cut(value, " ")
		if strings.EqualFold(name, "all") {
			c.filter = nil
		} else {
			kept := c.filter[:0]
			for _, h := range c.filter {
				if strings.EqualFold(h.name, name) && (!hasValue || h.value == value) {
					continue
				}
				kept = append(kept, h)
			}
			c.filter = kept
		}
		c.enqueueLocked(replyFrame("+OK filter deleted. [" + name + "][" + value + "]"))
	case hasValue:
		if strings.EqualFold(name, "add") {
			name, value, _ = strings.Cut(value, " ")
		}
		c.filter = append(c.filter, header{name, value})
		c.enqueueLocked(replyFrame("+OK filter added. [" + name + "]=[" + value + "]"))
	default:
		c.enqueueLocked(replyFrame("-ERR invalid syntax"))
	}
}

// passesFilters applies the connection's filters as mod_event_socket's
// event_handler does: with filters set, an event passes when one of its
// headers equals (without case) a filter's value, unless a filter whose
// value starts with '-' matches it. Regular-expression filters ("/...")
// are not simulated.
func (c *conn) passesFilters(e *call.Event) bool {
	if len(c.filter) == 0 {
		return true
	}
	send := false
	for _, f := range c.filter {
		hval, ok := e.LookupFold(f.name)
		if !ok {
			continue
		}
		pos := true
		v := f.value
		for v != "" {
			if v[0] == '+' {
				pos = true
			} else if v[0] == '-' {
				pos = false
			} else if v[0] != ' ' {
				break
			}
			v = v[1:]
		}
		if send && pos {
			continue
		}
		if strings.EqualFold(hval, v) {
			if !pos {
				return false
			}
			send = true
		}
	}
	return send
}
