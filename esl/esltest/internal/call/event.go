package call

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Header is one event header; events keep their headers in emission order
// because real FreeSWITCH does and clients may depend on it.
type Header struct {
	Name, Value string
}

// Event is a FreeSWITCH event before it is rendered for a connection.
type Event struct {
	Name    string
	Headers []Header
	Body    string
}

func (e *Event) Add(name, value string) {
	e.Headers = append(e.Headers, Header{name, value})
}

// Get returns the first value of the named header.
func (e *Event) Get(name string) string {
	for _, h := range e.Headers {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

// LookupFold returns the first value of the named header, the name
// compared without case as switch_event_get_header does.
func (e *Event) LookupFold(name string) (string, bool) {
	for _, h := range e.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value, true
		}
	}
	return "", false
}

// urlUnsafe is the set FreeSWITCH's switch_url_encode escapes (besides
// control and non-ASCII bytes); ',' '/' '(' ')' stay as they are, as the
// captures show.
const urlUnsafe = "\r\n \"#%&+:;<=>?@[\\]^`{|}"

// URLEncode encodes s like FreeSWITCH encodes text/event-plain header values.
func URLEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || strings.IndexByte(urlUnsafe, c) >= 0 {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// renderPlain returns the text/event-plain body of e (what follows the outer
// header block).
func (e *Event) Plain() []byte {
	var b bytes.Buffer
	for _, h := range e.Headers {
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(URLEncode(h.Value))
		b.WriteByte('\n')
	}
	if e.Body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\n\n", len(e.Body))
		b.WriteString(e.Body)
	} else {
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// JSONString writes s the way cJSON does: only '"', '\\' and control
// characters are escaped; '/', '<', '&' and non-ASCII text stay literal.
func JSONString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"':
			b.WriteString(`\"`)
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\b':
			b.WriteString(`\b`)
		case c == '\f':
			b.WriteString(`\f`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20:
			fmt.Fprintf(b, `\u%04x`, c)
		case c < utf8.RuneSelf:
			b.WriteByte(c)
		default:
			_, n := utf8.DecodeRuneInString(s[i:])
			b.WriteString(s[i : i+n])
			i += n
			continue
		}
		i++
	}
	b.WriteByte('"')
}

// renderJSON returns the text/event-json body of e: one object, header order
// kept, the body (if any) under "_body" after a "Content-Length" key.
func (e *Event) JSON() []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, h := range e.Headers {
		if i > 0 {
			b.WriteByte(',')
		}
		JSONString(&b, h.Name)
		b.WriteByte(':')
		JSONString(&b, h.Value)
	}
	if e.Body != "" {
		b.WriteString(`,"Content-Length":`)
		JSONString(&b, strconv.Itoa(len(e.Body)))
		b.WriteString(`,"_body":`)
		JSONString(&b, e.Body)
	}
	b.WriteByte('}')
	return b.Bytes()
}
