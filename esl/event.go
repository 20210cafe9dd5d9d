package esl

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/fiorix/go-eventsocket/eventsocket"
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

// DefaultEvents are the events the event connection subscribes to when
// Config.Events is empty.
var DefaultEvents = []EventName{
	ChannelCreate, ChannelProgress, ChannelProgressMedia, ChannelAnswer,
	ChannelBridge, ChannelUnbridge, ChannelHangup, ChannelHangupComplete,
	ChannelDestroy, BackgroundJob, Heartbeat, Custom,
}

// Event is one FreeSWITCH event as received on the event connection. Header
// values are URL-decoded (plain events) and stored under go-eventsocket's
// capitalisation; Get accepts FreeSWITCH's own spelling.
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

	header map[string]string
}

// Get returns the value of a header, "" when absent. Ask with FreeSWITCH's
// names ("Unique-ID", "Job-UUID", "variable_billmsec"); they are
// capitalised the way go-eventsocket stores them ("Unique-Id",
// "Job-Uuid", "Variable_billmsec") before the lookup.
func (e Event) Get(header string) string {
	if header == "" {
		return ""
	}
	return e.header[capitalize(header)]
}

// Has reports whether the event carries the header.
func (e Event) Has(header string) bool {
	if header == "" {
		return false
	}
	_, ok := e.header[capitalize(header)]
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

// Headers returns a copy of all headers under go-eventsocket's
// capitalisation.
func (e Event) Headers() map[string]string {
	m := make(map[string]string, len(e.header))
	for k, v := range e.header {
		m[k] = v
	}
	return m
}

// NewEvent builds an Event from FreeSWITCH header names and a body, for
// tests of code that consumes events.
func NewEvent(node string, headers map[string]string, body string) Event {
	h := make(map[string]string, len(headers))
	for k, v := range headers {
		if k != "" {
			h[capitalize(k)] = v
		}
	}
	return newEvent(node, h, body, time.Now().UTC())
}

func newEvent(node string, h map[string]string, body string, received time.Time) Event {
	e := Event{Node: node, Body: body, Received: received, header: h}
	e.Name = EventName(e.Get("Event-Name"))
	e.UUID = e.Get("Unique-ID")
	return e
}

// fromLibrary converts a go-eventsocket event. JSON events may carry
// numbers, booleans, arrays or objects as values; each is turned into a
// string by a type switch, never by the library's Event.Get, which panics
// on them.
func fromLibrary(node string, ev *eventsocket.Event, received time.Time) Event {
	h := make(map[string]string, len(ev.Header))
	for k, v := range ev.Header {
		h[k] = headerString(v)
	}
	return newEvent(node, h, ev.Body, received)
}

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

// capitalize reproduces go-eventsocket's header-key capitalisation
// (eventsocket.capitalize), which is unexported: "Job-UUID" becomes
// "Job-Uuid", "variable_billmsec" becomes "Variable_billmsec", keys
// starting with '_' are kept. Unlike the original it accepts "".
func capitalize(s string) string {
	if s == "" || s[0] == '_' {
		return s
	}
	ns := []byte(strings.ToLower(s))
	if len(s) > 9 && s[1:9] == "ariable_" {
		ns[0] = 'V'
		return string(ns)
	}
	up := true
	for i, c := range ns {
		if up {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			ns[i] = c
			up = false
		} else if c == '-' || c == '_' {
			up = true
		}
	}
	return string(ns)
}
