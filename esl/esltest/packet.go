package esltest

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// maxPacket is read_packet's max_len: a block this long ends even without
// its blank line.
const maxPacket = 10 << 20

// packet is one command block as mod_event_socket 1.10.12's read_packet
// splits it. Its quirks are kept on purpose, since a client that works here
// must work on a real switch:
//
//   - The block ends at the first LF that follows another LF with nothing
//     but CRs between them ("\n\n", "\r\n\r\n", "\n\r\n").
//   - Lines are split at the first CR left in the block if there is one,
//     else at the first LF. So in "bgapi x\nJob-UUID: id\r\n\r\n" the first
//     "line" runs up to the CR: FreeSWITCH sees no Job-UUID header, and the
//     command's text is "x\nJob-UUID: id".
//   - The Command header is the whole block; each command cuts it the same
//     way (stripCR) when it reads its arguments.
type packet struct {
	// command is the whole block, as FreeSWITCH's "Command" header holds it.
	command string
	// headers are the header lines FreeSWITCH parsed, in order; the first of
	// a name wins on lookup.
	headers []header
	// body holds Content-Length bytes read after the Content-Length line.
	body []byte
}

// header returns the first header named name, compared without case as
// switch_event_get_header does.
func (p *packet) header(name string) (string, bool) {
	for _, h := range p.headers {
		if strings.EqualFold(h.name, name) {
			return h.value, true
		}
	}
	return "", false
}

// line returns the command line as a command handler reads it: the block
// cut by stripCR.
func (p *packet) line() string { return stripCR(p.command) }

// String renders the packet as Server.Commands records it: the command
// line, then "name: value" per parsed header, joined by "\n".
func (p *packet) String() string {
	parts := []string{p.line()}
	for _, h := range p.headers {
		parts = append(parts, h.name+": "+h.value)
	}
	return strings.Join(parts, "\n")
}

// stripCR is mod_event_socket's strip_cr: s up to its first CR if it has
// one, else up to its first LF.
func stripCR(s string) string {
	if i := strings.IndexByte(s, '\r'); i >= 0 {
		return s[:i]
	}
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// nextLine returns where the line after s's first one starts, as
// read_packet finds it: after the first CR (else LF) and the run of CRs and
// LFs that follows; ok is false when s holds neither.
func nextLine(s string) (int, bool) {
	i := strings.IndexByte(s, '\r')
	if i < 0 {
		i = strings.IndexByte(s, '\n')
	}
	if i < 0 {
		return 0, false
	}
	for i < len(s) && (s[i] == '\r' || s[i] == '\n') {
		i++
	}
	return i, true
}

// readPacket reads one command block the way read_packet does.
func readPacket(r *bufio.Reader) (*packet, error) {
	var buf []byte
	crcount := 0
	for crcount < 2 {
		b, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if len(buf) == 0 && (b == '\r' || b == '\n') {
			continue // "bah": line breaks before a block are skipped
		}
		buf = append(buf, b)
		switch b {
		case '\n':
			crcount++
		case '\r':
		default:
			crcount = 0
		}
		if len(buf) >= maxPacket {
			crcount = 2
		}
	}
	s := string(buf)
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i] // C strings end at NUL
	}
	p := &packet{command: s}
	cur, more := nextLine(s)
	for more {
		rest := s[cur:]
		n, ok := nextLine(rest)
		if line := stripCR(rest); line != "" {
			if name, val, found := strings.Cut(line, ":"); found {
				val = strings.TrimLeft(val, " ")
				p.headers = append(p.headers, header{name, val})
				if strings.EqualFold(name, "content-length") {
					if clen := atoi(val); clen > 0 {
						body := make([]byte, min(clen, maxPacket))
						if _, err := io.ReadFull(r, body); err != nil {
							return nil, err
						}
						p.body = body
					}
				}
			}
		}
		cur, more = cur+n, ok
	}
	return p, nil
}

// atoi is C's atoi: leading spaces, an optional sign, then digits; 0 when
// there are none.
func atoi(s string) int {
	s = strings.TrimLeft(s, " \t")
	end := 0
	if end < len(s) && (s[end] == '-' || s[end] == '+') {
		end++
	}
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(s[:end])
	if err != nil {
		return 0
	}
	return n
}

// Command is one client command block as a real FreeSWITCH 1.10.12 reads
// it (see ReadCommand).
type Command struct {
	// Line is the command line as FreeSWITCH's commands read it: the block
	// up to its first CR if it holds one, else up to its first LF.
	Line string
	// Header holds the header lines FreeSWITCH parsed, in order.
	Header []Field
	// Body holds the Content-Length bytes after the block (sendmsg).
	Body []byte
}

// Get returns the first value of the named header, compared without case
// ("" if absent).
func (c *Command) Get(name string) string {
	for _, h := range c.Header {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// ReadCommand reads one client command block exactly as mod_event_socket
// 1.10.12 does, quirks included: a block whose lines end differently is not
// split where its author meant ("bgapi x\nJob-UUID: id\r\n\r\n" is one line,
// "x\nJob-UUID: id", with no header). Test servers use it so that a client
// that passes them frames its commands as a real switch reads them.
func ReadCommand(r *bufio.Reader) (*Command, error) {
	p, err := readPacket(r)
	if err != nil {
		return nil, err
	}
	c := &Command{Line: p.line(), Body: p.body}
	for _, h := range p.headers {
		c.Header = append(c.Header, Field{Name: h.name, Value: h.value})
	}
	return c, nil
}

// header is one "name: value" line of a command block, a reply or an
// event filter, in the order it was read or is sent.
type header struct {
	name, value string
}
