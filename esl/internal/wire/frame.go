// Package wire reads FreeSWITCH's event-socket protocol at the byte
// level, trusting nothing it is sent: it splits a stream into frames
// (with a size cap), decides which frames go-eventsocket may safely be
// given, and turns text/event-plain and text/event-json bodies into header
// tables in one pass. It opens no connection and knows nothing of
// commands, jobs or calls; package esl does.
package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits of the Frame reader. A header line longer than the reader's
// buffer, more header lines than maxHeaderLines, or a Content-Length with
// more digits than maxLengthDigits desynchronise the stream: the
// connection is closed and redialled.
const (
	readBufferSize  = 64 << 10
	maxHeaderLines  = 64
	maxLengthDigits = 10
	// discardFactor bounds how far beyond Config.MaxFrameBytes a Frame may
	// go and still be skipped (rather than closing the connection).
	discardFactor = 16
)

// MalformedReply replaces a Reply-Text go-eventsocket would panic on.
const MalformedReply = "-ERR esl: malformed reply"

// ErrDesync is the cause of closing a connection whose byte stream can no
// longer be split into frames.
var ErrDesync = errors.New("esl: malformed Frame header")

// Frame is one ESL frame: a header block and Content-Length bytes of
// body. Only the outer headers the client acts on are kept.
type Frame struct {
	ContentType string // Content-Type
	ReplyText   string // Reply-Text
	JobUUID     string // Job-UUID
	Body        []byte
	// Oversize is set when the body exceeded the cap and was skipped.
	Oversize bool
	// Length is the Content-Length.
	Length int
}

// Reader splits a byte stream into frames without trusting it.
type Reader struct {
	br  *bufio.Reader
	max int
	// Reuse makes Next return the same frame, with a body in buf, each
	// time: the event connection's reader is done with a Frame before it
	// reads the next, and so allocates nothing per frame.
	Reuse bool
	f     Frame
	buf   []byte
}

func NewReader(r io.Reader, max int) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, readBufferSize), max: max}
}

// maxReusedBody bounds the body buffer a reusing Reader keeps.
const maxReusedBody = 1 << 20

// Next reads one frame. Any error means the stream is unusable. With
// Reuse set, the frame and its body are valid until the next call.
func (r *Reader) Next() (*Frame, error) {
	f := &Frame{}
	if r.Reuse {
		f = &r.f
		*f = Frame{}
	}
	// ReadSlice's line is only valid until the next read: the
	// Content-Length is parsed at once.
	length, lengths, lengthOK := 0, 0, false
	for n := 0; ; n++ {
		line, err := r.br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, fmt.Errorf("%w: header line too long", ErrDesync)
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
			return nil, fmt.Errorf("%w: too many header lines", ErrDesync)
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, fmt.Errorf("%w: continuation line", ErrDesync)
		}
		k, v, ok := bytes.Cut(line, []byte{':'})
		if !ok || !isToken(k) {
			return nil, fmt.Errorf("%w: not a header line", ErrDesync)
		}
		v = bytes.TrimSpace(v)
		// The first of a repeated header wins, as with textproto's Get.
		switch {
		case foldEqualBytes(k, "Content-Length"):
			length, lengthOK = parseLength(v)
			lengths++
		case foldEqualBytes(k, "Content-Type"):
			if f.ContentType == "" {
				f.ContentType = contentTypeString(v)
			}
		case foldEqualBytes(k, "Reply-Text"):
			if f.ReplyText == "" {
				f.ReplyText = string(v)
			}
		case foldEqualBytes(k, "Job-UUID"):
			if f.JobUUID == "" {
				f.JobUUID = string(v)
			}
		}
	}
	if lengths == 0 {
		return f, nil
	}
	if lengths != 1 || !lengthOK {
		return nil, fmt.Errorf("%w: bad Content-Length", ErrDesync)
	}
	n := length
	f.Length = n
	if n > r.max {
		if n > r.max*discardFactor {
			return nil, fmt.Errorf("%w: Content-Length %d far above the limit", ErrDesync, n)
		}
		if _, err := io.CopyN(io.Discard, r.br, int64(n)); err != nil {
			return nil, io.ErrUnexpectedEOF
		}
		f.Oversize = true
		return f, nil
	}
	switch {
	case r.Reuse && n <= maxReusedBody:
		if cap(r.buf) < n {
			r.buf = make([]byte, n, min(max(n, 2*cap(r.buf)), maxReusedBody))
		}
		f.Body = r.buf[:n]
	default:
		f.Body = make([]byte, n)
	}
	if _, err := io.ReadFull(r.br, f.Body); err != nil {
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
