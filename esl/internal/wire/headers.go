package wire

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Header is a header name and value, the input of NewHeaders.
type Header struct{ Name, Value string }

// field locates one header in Headers.text: the name is
// text[name:nameEnd], the value text[value:valueEnd]. hash is the
// foldHash of the name. Offsets rather than strings keep the table free
// of pointers, so the garbage collector does not scan it.
type field struct {
	name, nameEnd, value, valueEnd uint32
	hash                           uint32
}

// Headers holds an event's headers in arrival order, without names
// that repeat an earlier one up to ASCII case, and an open-addressing
// index over them keyed by the case-folded name: a lookup costs one hash
// of the asked name and, almost always, one comparison. It replaces a
// map, which would cost two strings per header and many allocations per
// event.
type Headers struct {
	text   string
	fields []field
	// index has a power-of-two length of at least twice len(fields);
	// each slot is 0 (empty) or 1 + an index into fields.
	index []uint32
}

func (t *Headers) name(f *field) string  { return t.text[f.name:f.nameEnd] }
func (t *Headers) value(f *field) string { return t.text[f.value:f.valueEnd] }

// NewHeaders builds a table from names and values.
func NewHeaders(list []Header) *Headers {
	n := 0
	for _, h := range list {
		n += len(h.Name) + len(h.Value)
	}
	var b strings.Builder
	b.Grow(n)
	fields := make([]field, len(list))
	for i, h := range list {
		f := &fields[i]
		f.name = uint32(b.Len())
		b.WriteString(h.Name)
		f.nameEnd = uint32(b.Len())
		f.value = f.nameEnd
		b.WriteString(h.Value)
		f.valueEnd = uint32(b.Len())
		f.hash = foldHash(h.Name)
	}
	return indexHeaders(b.String(), fields)
}

// indexHeaders builds the table over fields of text, whose hashes are
// set. It reuses fields' array, dropping repeated names (the first one
// wins).
func indexHeaders(text string, fields []field) *Headers {
	size := 8
	for size < 2*len(fields) {
		size *= 2
	}
	t := &Headers{text: text, index: make([]uint32, size)}
	mask := uint32(size - 1)
	kept := fields[:0]
	for _, f := range fields {
		slot := f.hash & mask
		dup := false
		for ; t.index[slot] != 0; slot = (slot + 1) & mask {
			if o := &kept[t.index[slot]-1]; o.hash == f.hash && foldEqual(t.name(o), text[f.name:f.nameEnd]) {
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		kept = append(kept, f)
		t.index[slot] = uint32(len(kept))
	}
	t.fields = kept
	return t
}

// Lookup returns the value of the header name (compared without regard
// to ASCII case) and whether there is one; a nil table has none.
func (t *Headers) Lookup(name string) (string, bool) {
	if t == nil || name == "" {
		return "", false
	}
	hash := foldHash(name)
	mask := uint32(len(t.index) - 1)
	for slot := hash & mask; t.index[slot] != 0; slot = (slot + 1) & mask {
		if f := &t.fields[t.index[slot]-1]; f.hash == hash && foldEqual(t.name(f), name) {
			return t.value(f), true
		}
	}
	return "", false
}

// Map returns a copy of the headers under the names they were sent
// with (the first spelling of a name sent more than once).
func (t *Headers) Map() map[string]string {
	m := make(map[string]string, len(t.fields))
	for i := range t.fields {
		f := &t.fields[i]
		m[t.name(f)] = t.value(f)
	}
	return m
}

// FNV-1a, over ASCII-lowercased bytes.
const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

func foldHash(s string) uint32 {
	h := uint32(fnvOffset)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(lower(s[i]))) * fnvPrime
	}
	return h
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// foldEqual reports whether a and b are equal up to ASCII case.
func foldEqual(a, b string) bool {
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

// HeaderString turns a decoded JSON value into a header value by a type
// switch: FreeSWITCH sends strings, but a number, boolean, array or
// object must not be fatal.
func HeaderString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case []string:
		return strings.Join(v, ", ")
	case []any:
		parts := make([]string, len(v))
		for i, p := range v {
			parts[i] = HeaderString(p)
		}
		return strings.Join(parts, ", ")
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case json.Number:
		return v.String()
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(b)
	}
}
