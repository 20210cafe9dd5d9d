package wire

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Verdict is what the guard does with a frame.
type Verdict int

const (
	Forward Verdict = iota // pass it on unchanged in meaning
	Rewrite                // pass on a safe replacement
	Drop                   // do not pass it on
)

// inspect decides whether go-eventsocket can be given f, and returns the
// bytes to give it. It knows nothing of connection roles; the guard
// applies those (see guard.handle). Events never reach the library: the
// event connection is read by Parser.
func Inspect(f *Frame) (Verdict, []byte, string) {
	if f.Oversize {
		return Drop, nil, fmt.Sprintf("body of %d bytes exceeds the limit", f.Length)
	}
	ct := f.ContentType
	switch ct {
	case "auth/request":
		return Forward, serialize(ct, nil, nil), ""
	case "command/reply":
		rt := f.ReplyText
		extra := [][2]string{}
		if f.JobUUID != "" {
			extra = append(extra, [2]string{"Job-UUID", f.JobUUID})
		}
		if !safeReply(rt) {
			extra = append(extra, [2]string{"Reply-Text", MalformedReply})
			return Rewrite, serialize(ct, extra, nil), "short or missing Reply-Text"
		}
		extra = append(extra, [2]string{"Reply-Text", rt})
		return Forward, serialize(ct, extra, nil), ""
	case "api/response":
		if !safeReply(string(f.Body)) {
			return Rewrite, serialize(ct, nil, []byte(MalformedReply)), "short api/response body"
		}
		return Forward, serialize(ct, nil, f.Body), ""
	case "text/disconnect-notice":
		return Forward, serialize(ct, nil, f.Body), ""
	case "text/event-plain", "text/event-json":
		return Drop, nil, "events are not given to go-eventsocket"
	case "":
		return Drop, nil, "no Content-Type"
	default:
		return Drop, nil, "unsupported Content-Type " + strconv.QuoteToASCII(Truncate(ct, 64))
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

// serialize writes a Frame in the form go-eventsocket expects. Header
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

func Truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// LFOnly removes every CR from b, in place.
func LFOnly(b []byte) []byte {
	out := b[:0]
	for _, c := range b {
		if c != '\r' {
			out = append(out, c)
		}
	}
	return out
}
