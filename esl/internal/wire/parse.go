package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
)

// Reasons an event Frame is dropped; each is logged and counted in
// Stats.FramesDropped.
var (
	ErrPlainNoBlankLine = errors.New("esl: plain event has no end of headers")
	ErrPlainHeaderLine  = errors.New("esl: plain event has a malformed header line")
	ErrPlainValue       = errors.New("esl: plain event has a control byte in a header value")
	ErrPlainLength      = errors.New("esl: plain event has a bad inner Content-Length")
	ErrJSONObject       = errors.New("esl: json event body is not a JSON object")
	ErrJSONEmptyKey     = errors.New("esl: json event has an empty key")
	ErrJSONBody         = errors.New("esl: json event _body is not a string")
)

// Parser turns the bodies of text/event-plain and text/event-json frames
// into header tables and bodies (of which package esl makes Events). It keeps scratch buffers between calls, so each one serves a
// single goroutine (the event connection's reader).
//
// A plain body is a header block ("Name: value" lines ending at a blank
// line, values URL-encoded by FreeSWITCH's switch_url_encode) and, when
// the block has a Content-Length header, that many bytes of body. The
// Parser reads it in one pass, keeping names as sent. The event's text is
// one string: the body as received followed by the decoded form of the
// values that needed decoding; headers are offsets into it. So an event
// costs four allocations, none of them scanned by the garbage collector
// but the small table header. It accepts a subset of what net/textproto
// accepts (no continuation lines, no spaces in names, no control bytes in
// values), which is all FreeSWITCH sends, and gives the values
// go-eventsocket gave: url.QueryUnescape's, or the value as sent when it
// holds an escape QueryUnescape refuses.
type Parser struct {
	out    []byte
	fields []field
}

// maxPlainBody keeps every offset of a plain event within a uint32.
const maxPlainBody = 1 << 30

// Plain parses a text/event-plain body into its headers and body.
func (p *Parser) Plain(body []byte) (*Headers, string, error) {
	if len(body) > maxPlainBody {
		return nil, "", ErrPlainLength
	}
	p.out = append(p.out[:0], body...)
	p.fields = p.fields[:0]
	length, hasLength := []byte(nil), false
	i := 0
	for {
		n := bytes.IndexByte(body[i:], '\n')
		if n < 0 {
			return nil, "", ErrPlainNoBlankLine
		}
		start := i
		line := body[i : i+n]
		i += n + 1
		if n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			break
		}
		colon := -1
		hash := uint32(fnvOffset)
		for j, c := range line {
			if c == ':' {
				colon = j
				break
			}
			if !isTokenByte(c) {
				return nil, "", ErrPlainHeaderLine
			}
			hash = (hash ^ uint32(lower(c))) * fnvPrime
		}
		if colon <= 0 {
			return nil, "", ErrPlainHeaderLine
		}
		// The value's offsets in body, trimmed of blanks.
		vs, ve := start+colon+1, start+len(line)
		for vs < ve && (body[vs] == ' ' || body[vs] == '\t') {
			vs++
		}
		for ve > vs && (body[ve-1] == ' ' || body[ve-1] == '\t') {
			ve--
		}
		value := body[vs:ve]
		decode := false
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return nil, "", ErrPlainValue
			}
			decode = decode || c == '%' || c == '+'
		}
		f := field{name: uint32(start), nameEnd: uint32(start + colon), value: uint32(vs), valueEnd: uint32(ve), hash: hash}
		if decode {
			f.value = uint32(len(p.out))
			p.out = appendUnescaped(p.out, value)
			f.valueEnd = uint32(len(p.out))
		}
		p.fields = append(p.fields, f)
		if !hasLength && foldEqualBytes(line[:colon], "Content-Length") {
			length, hasLength = value, true
		}
	}
	bodyStart, bodyEnd := i, i
	if len(length) > 0 {
		n, ok := parseLength(length)
		if !ok || n > len(body)-i {
			return nil, "", ErrPlainLength
		}
		bodyEnd = i + n
	}
	text := string(p.out)
	fields := make([]field, len(p.fields))
	copy(fields, p.fields)
	return indexHeaders(text, fields), text[bodyStart:bodyEnd], nil
}

// JSON parses a text/event-json body: a JSON object whose values
// FreeSWITCH sends as strings (others are turned into strings by
// HeaderString) and whose "_body" key, when a string, is the body.
func (p *Parser) JSON(body []byte) (*Headers, string, error) {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, "", ErrJSONObject
	}
	list := make([]Header, 0, len(m))
	text := ""
	for k, v := range m {
		if k == "" {
			return nil, "", ErrJSONEmptyKey
		}
		if k == "_body" && v != nil {
			s, ok := v.(string)
			if !ok {
				return nil, "", ErrJSONBody
			}
			text = s
			continue
		}
		list = append(list, Header{Name: k, Value: HeaderString(v)})
	}
	// JSON objects are unordered; sorting makes which of two names
	// differing only in case wins independent of map order.
	slices.SortFunc(list, func(a, b Header) int { return strings.Compare(a.Name, b.Name) })
	return NewHeaders(list), text, nil
}

// appendUnescaped appends v decoded as url.QueryUnescape decodes it
// ("%XX" is a byte, "+" a space), or v unchanged if it holds an escape
// QueryUnescape refuses. FreeSWITCH encodes '+' as %2B (it is in
// SWITCH_URL_UNSAFE), so the "+" rule only matters for input that did not
// come from FreeSWITCH; it is kept so values are exactly go-eventsocket's.
func appendUnescaped(dst, v []byte) []byte {
	for j := 0; j < len(v); j++ {
		if v[j] == '%' {
			if j+2 >= len(v) || !isHex(v[j+1]) || !isHex(v[j+2]) {
				return append(dst, v...)
			}
			j += 2
		}
	}
	for j := 0; j < len(v); j++ {
		switch c := v[j]; c {
		case '%':
			dst = append(dst, unhex(v[j+1])<<4|unhex(v[j+2]))
			j += 2
		case '+':
			dst = append(dst, ' ')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

// parseLength parses a Content-Length value: decimal digits only.
func parseLength(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > maxLengthDigits {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// isTokenByte reports whether c may appear in a header name (an RFC 7230
// token character).
func isTokenByte(c byte) bool {
	// A 128-bit set of the allowed bytes; c >= 128 shifts out of both
	// halves.
	const lo = 0 |
		(1<<10-1)<<'0' |
		1<<'!' | 1<<'#' | 1<<'$' | 1<<'%' | 1<<'&' | 1<<'\'' | 1<<'*' | 1<<'+' | 1<<'-' | 1<<'.'
	const hi = 0 |
		(1<<26-1)<<('a'-64) |
		(1<<26-1)<<('A'-64) |
		1<<('^'-64) | 1<<('_'-64) | 1<<('`'-64) | 1<<('|'-64) | 1<<('~'-64)
	if c < 64 {
		return lo&(uint64(1)<<c) != 0
	}
	return hi&(uint64(1)<<(c-64)) != 0
}

// foldEqualBytes is foldEqual for a byte slice and a string.
func foldEqualBytes(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if a[i] != b[i] && lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}
