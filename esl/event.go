package esl

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"
)

// EventName is the Event-Name of a FreeSWITCH event.
type EventName string

// Event names the client subscribes to by default, plus the others a
// controller meets in practice.
const (
	ChannelCreate         EventName = "CHANNEL_CREATE"
	ChannelOutgoing       EventName = "CHANNEL_OUTGOING"
	ChannelOriginate      EventName = "CHANNEL_ORIGINATE"
	ChannelProgress       EventName = "CHANNEL_PROGRESS"
	ChannelProgressMedia  EventName = "CHANNEL_PROGRESS_MEDIA"
	ChannelAnswer         EventName = "CHANNEL_ANSWER"
	ChannelBridge         EventName = "CHANNEL_BRIDGE"
	ChannelUnbridge       EventName = "CHANNEL_UNBRIDGE"
	ChannelHangup         EventName = "CHANNEL_HANGUP"
	ChannelHangupComplete EventName = "CHANNEL_HANGUP_COMPLETE"
	ChannelDestroy        EventName = "CHANNEL_DESTROY"
	ChannelExecute        EventName = "CHANNEL_EXECUTE"
	ChannelPark           EventName = "CHANNEL_PARK"
	BackgroundJob         EventName = "BACKGROUND_JOB"
	Heartbeat             EventName = "HEARTBEAT"
	Custom                EventName = "CUSTOM"
	Shutdown              EventName = "SHUTDOWN"

	// SocketConnected is not sent by FreeSWITCH: the client delivers it to
	// every subscription each time the event connection is (re)established
	// and subscribed. Events may have been missed before it, so a consumer
	// should reconcile its live calls (Client.Channels) when it sees one.
	SocketConnected EventName = "ESL_SOCKET_CONNECTED"
)

// DefaultEvents returns the events the event connection subscribes to
// when Config.Events is empty.
func DefaultEvents() []EventName {
	return []EventName{
		ChannelCreate, ChannelProgress, ChannelProgressMedia, ChannelAnswer,
		ChannelPark, ChannelBridge, ChannelUnbridge, ChannelHangup, ChannelHangupComplete,
		ChannelDestroy, BackgroundJob, Heartbeat, Custom,
	}
}

// Event is one FreeSWITCH event as received on the event connection.
// Header names are kept exactly as FreeSWITCH sent them and values are
// URL-decoded (plain events). Get, Has and Var look names up without
// regard to ASCII case, so FreeSWITCH's spelling ("Unique-ID",
// "variable_billmsec") and go-eventsocket's recapitalised one
// ("Unique-Id", "Variable_billmsec") both work. An Event is immutable and
// safe to share between goroutines.
type Event struct {
	// Node is the Config.Name of the client that received the event.
	Node string
	// Name is the Event-Name header.
	Name EventName
	// UUID is the Unique-ID header: the channel the event is about, if any.
	UUID string
	// Body is the event body, for instance a BACKGROUND_JOB result.
	Body string
	// Received is when the client read the event, in UTC.
	Received time.Time

	h *headerTable
}

// Get returns the value of a header, "" when absent. The name is
// compared without regard to ASCII case; when FreeSWITCH sent a name more
// than once, the first value wins (as it did with go-eventsocket).
func (e Event) Get(header string) string {
	v, _ := e.h.lookup(header)
	return v
}

// Has reports whether the event carries the header.
func (e Event) Has(header string) bool {
	_, ok := e.h.lookup(header)
	return ok
}

// Var returns the channel variable name ("variable_<name>" header).
func (e Event) Var(name string) string { return e.Get("variable_" + name) }

// Int64 parses a header as a decimal integer.
func (e Event) Int64(header string) (int64, bool) {
	v := e.Get(header)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// Time returns when FreeSWITCH fired the event (Event-Date-Timestamp, in
// microseconds since the epoch), in UTC; the zero Time when absent.
func (e Event) Time() time.Time {
	us, ok := e.Int64("Event-Date-Timestamp")
	if !ok {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// Headers returns a copy of all headers under the names FreeSWITCH sent
// (the first spelling of a name sent more than once).
func (e Event) Headers() map[string]string {
	if e.h == nil {
		return map[string]string{}
	}
	m := make(map[string]string, len(e.h.fields))
	for i := range e.h.fields {
		f := &e.h.fields[i]
		m[e.h.name(f)] = e.h.value(f)
	}
	return m
}

// NewEvent builds an Event from FreeSWITCH header names and a body, for
// tests of code that consumes events.
func NewEvent(node string, headers map[string]string, body string) Event {
	list := make([]header, 0, len(headers))
	for k, v := range headers {
		if k != "" {
			list = append(list, header{name: k, value: v})
		}
	}
	// Sorted, so that which of two names differing only in case wins
	// does not depend on map order.
	slices.SortFunc(list, func(a, b header) int { return strings.Compare(a.name, b.name) })
	return newEvent(node, newHeaderTable(list), body, time.Now().UTC())
}

func newEvent(node string, h *headerTable, body string, received time.Time) Event {
	e := Event{Node: node, Body: body, Received: received, h: h}
	e.Name = EventName(e.Get("Event-Name"))
	e.UUID = e.Get("Unique-ID")
	return e
}

// header is a header name and value, the input of newHeaderTable.
type header struct{ name, value string }

// field locates one header in headerTable.text: the name is
// text[name:nameEnd], the value text[value:valueEnd]. hash is the
// foldHash of the name. Offsets rather than strings keep the table free
// of pointers, so the garbage collector does not scan it.
type field struct {
	name, nameEnd, value, valueEnd uint32
	hash                           uint32
}

// headerTable holds an event's headers in arrival order, without names
// that repeat an earlier one up to ASCII case, and an open-addressing
// index over them keyed by the case-folded name: a lookup costs one hash
// of the asked name and, almost always, one comparison. It replaces a
// map, which would cost two strings per header and many allocations per
// event.
type headerTable struct {
	text   string
	fields []field
	// index has a power-of-two length of at least twice len(fields);
	// each slot is 0 (empty) or 1 + an index into fields.
	index []uint32
}

func (t *headerTable) name(f *field) string  { return t.text[f.name:f.nameEnd] }
func (t *headerTable) value(f *field) string { return t.text[f.value:f.valueEnd] }

// newHeaderTable builds a table from names and values.
func newHeaderTable(list []header) *headerTable {
	n := 0
	for _, h := range list {
		n += len(h.name) + len(h.value)
	}
	var b strings.Builder
	b.Grow(n)
	fields := make([]field, len(list))
	for i, h := range list {
		f := &fields[i]
		f.name = uint32(b.Len())
		b.WriteString(h.name)
		f.nameEnd = uint32(b.Len())
		f.value = f.nameEnd
		b.WriteString(h.value)
		f.valueEnd = uint32(b.Len())
		f.hash = foldHash(h.name)
	}
	return indexHeaders(b.String(), fields)
}

// indexHeaders builds the table over fields of text, whose hashes are
// set. It reuses fields' array, dropping repeated names (the first one
// wins).
func indexHeaders(text string, fields []field) *headerTable {
	size := 8
	for size < 2*len(fields) {
		size *= 2
	}
	t := &headerTable{text: text, index: make([]uint32, size)}
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

func (t *headerTable) lookup(name string) (string, bool) {
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

// headerString turns a decoded JSON value into a header value by a type
// switch: FreeSWITCH sends strings, but a number, boolean, array or
// object must not be fatal.
func headerString(v any) string {
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
			parts[i] = headerString(p)
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
