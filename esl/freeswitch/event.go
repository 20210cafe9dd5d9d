package freeswitch

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"callbridge/esl/internal/wire"
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
	// should reconcile its live calls (esl.Client.Channels) when it sees one.
	SocketConnected EventName = "ESL_SOCKET_CONNECTED"
)

// Validate refuses an event name that cannot be written in a subscription
// ("event plain <names>"): 1 to 64 of [A-Z0-9_], like a hangup cause.
func (n EventName) Validate() error { return checkCause("event name", string(n)) }

// DefaultEvents returns the events the event connection subscribes to
// when esl.Config.Events is empty.
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
	// Node is the esl.Config.Name of the client that received the event.
	Node string
	// Name is the Event-Name header.
	Name EventName
	// UUID is the Unique-ID header: the channel the event is about, if any.
	UUID string
	// Body is the event body, for instance a BACKGROUND_JOB result.
	Body string
	// Received is when the client read the event, in UTC.
	Received time.Time

	h *wire.Headers
}

// Get returns the value of a header, "" when absent. The name is
// compared without regard to ASCII case; when FreeSWITCH sent a name more
// than once, the first value wins (as it did with go-eventsocket).
func (e Event) Get(header string) string {
	v, _ := e.h.Lookup(header)
	return v
}

// Has reports whether the event carries the header.
func (e Event) Has(header string) bool {
	_, ok := e.h.Lookup(header)
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
	return e.h.Map()
}

// NewEvent builds an Event from FreeSWITCH header names and a body, for
// tests of code that consumes events.
func NewEvent(node string, headers map[string]string, body string) Event {
	list := make([]wire.Header, 0, len(headers))
	for k, v := range headers {
		if k != "" {
			list = append(list, wire.Header{Name: k, Value: v})
		}
	}
	// Sorted, so that which of two names differing only in case wins
	// does not depend on map order.
	slices.SortFunc(list, func(a, b wire.Header) int { return strings.Compare(a.Name, b.Name) })
	return ReceivedEvent(node, wire.NewHeaders(list), body, time.Now().UTC())
}

// ReceivedEvent is how the esl client makes an Event from the headers its
// parser read (esl/internal/wire), without copying them. Other packages
// cannot name wire's types: they build Events with NewEvent.
func ReceivedEvent(node string, h *wire.Headers, body string, received time.Time) Event {
	e := Event{Node: node, Body: body, Received: received, h: h}
	e.Name = EventName(e.Get("Event-Name"))
	e.UUID = e.Get("Unique-ID")
	return e
}
