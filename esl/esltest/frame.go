package esltest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strconv"
	"strings"
)

// eventFrame wraps an event body in the outer frame FreeSWITCH sends:
// Content-Length first, then Content-Type.
func eventFrame(contentType string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Content-Length: %d\nContent-Type: %s\n\n", len(body), contentType)
	b.Write(body)
	return b.Bytes()
}

// replyFrame is a command/reply frame; extra headers follow Reply-Text.
func replyFrame(text string, extra ...header) []byte {
	var b bytes.Buffer
	b.WriteString("Content-Type: command/reply\nReply-Text: ")
	b.WriteString(text)
	b.WriteByte('\n')
	for _, h := range extra {
		fmt.Fprintf(&b, "%s: %s\n", h.name, h.value)
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// bodyFrame is a frame with Content-Type first and a Content-Length body, the
// shape of api/response and text/disconnect-notice.
func bodyFrame(contentType, body string) []byte {
	return []byte(fmt.Sprintf("Content-Type: %s\nContent-Length: %d\n\n%s", contentType, len(body), body))
}

// Disconnect notice bodies, byte for byte as FreeSWITCH 1.10 sends them.
const (
	goodbyeNotice  = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
	shutdownNotice = "The system is being shut down.\n"
)

// Frame is one frame of the event-socket protocol as it travels on the wire:
// an ordered header block and an optional body of Content-Length bytes.
type Frame struct {
	// Header holds the outer headers in arrival order.
	Header []Field
	// Body holds exactly Content-Length bytes (nil without Content-Length).
	Body []byte
}

// Field is one "Name: value" header line, value as sent (not decoded).
type Field struct {
	Name, Value string
}

// Get returns the first value of the named outer header ("" if absent).
func (f *Frame) Get(name string) string {
	for _, h := range f.Header {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

// ErrMalformed reports a frame that does not follow the protocol.
var ErrMalformed = errors.New("esltest: malformed frame")

// ReadFrame reads one frame from r. It accepts LF and CRLF line endings and
// returns io.EOF only when r ends cleanly between frames.
func ReadFrame(r *bufio.Reader) (*Frame, error) {
	tp := textproto.NewReader(r)
	f := &Frame{}
	for {
		line, err := tp.ReadLine()
		if err != nil {
			if errors.Is(err, io.EOF) && len(f.Header) == 0 {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("esltest: read header: %w", err)
		}
		if line == "" {
			if len(f.Header) == 0 {
				continue // tolerate stray blank lines between frames
			}
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%w: header line %q", ErrMalformed, line)
		}
		f.Header = append(f.Header, Field{Name: name, Value: strings.TrimPrefix(value, " ")})
	}
	if cl := f.Get("Content-Length"); cl != "" {
		n, err := strconv.Atoi(cl)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: Content-Length %q", ErrMalformed, cl)
		}
		f.Body = make([]byte, n)
		if _, err := io.ReadFull(r, f.Body); err != nil {
			return nil, fmt.Errorf("esltest: read body: %w", err)
		}
	}
	return f, nil
}

// EventHeaders parses the body of a text/event-plain frame into its ordered
// headers, URL-decoding the values, and returns the inner body (the result
// of a BACKGROUND_JOB, for instance).
func EventHeaders(body []byte) ([]Field, []byte, error) {
	r := bufio.NewReader(bytes.NewReader(body))
	inner, err := ReadFrame(r)
	if err != nil {
		return nil, nil, err
	}
	for i, h := range inner.Header {
		v, err := urlDecode(h.Value)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: header %s: %v", ErrMalformed, h.Name, err)
		}
		inner.Header[i].Value = v
	}
	return inner.Header, inner.Body, nil
}

func urlDecode(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("truncated escape in %q", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}
