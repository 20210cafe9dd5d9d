// Package esltest is a simulated FreeSWITCH 1.10 node for tests, demos and
// load runs, in the manner of net/http/httptest: a Server listens on TCP and
// speaks the inbound event-socket (ESL) protocol exactly as a real
// FreeSWITCH 1.10.12 does (framing, replies, event header names and order,
// URL-encoded text/event-plain and text/event-json), as captured in the
// shared fixtures. It simulates channels, not media: no RTP, no SIP.
//
// It will not: render text/event-xml, stream logs ("log" is an unknown
// command here), run outbound-socket sessions, resolve "originate" targets
// other than "&park()", "&bridge(...)", "&playback(...)", "&echo()" and an
// inline dialplan of set applications ending in one of those
// ("set:a=b,park inline"), or dial "|" and "," multi-endpoint strings in
// an originate. The bridge application does dial "|" strings, in turn,
// stopping where fail_on_single_reject says (a sequential bridge through
// several gateways); Server.Gateways are the sofia gateways it reports and
// refuses calls to while DOWN.
//
// # Protocol
//
// On connect the server sends auth/request; "auth <password>" is answered
// "+OK accepted", or "-ERR invalid", a disconnect notice and a close.
// Supported commands: api, bgapi (with an optional "Job-UUID:" header line),
// event plain|json <names...|ALL|CUSTOM subclasses>, nixevent, noevents,
// filter, filter delete, myevents, linger and nolinger (refused as on an
// inbound socket), sendmsg (hangup; execute of set, export, playback),
// exit. Anything else is "-ERR command not found".
//
// Command blocks are read exactly as mod_event_socket 1.10.12's read_packet
// reads them (ReadCommand), quirks included: a block ends at a blank line
// (LF, CR LF, or a mix), but it is cut into lines at its first CR when it
// holds one, else at its first LF. A block whose first line ends in a bare
// LF and whose last lines end in CR LF ("bgapi x\nJob-UUID: id\r\n\r\n",
// what go-eventsocket's Send makes of a Job-UUID line) is therefore one
// command line, "x\nJob-UUID: id": the Job-UUID is ignored and FreeSWITCH's
// own is used, and the rest reaches the command as text, as on a real
// switch. Commands are recognised by prefix, without case, in
// parse_command's order; "event" ignores unknown event names and refuses
// a command without a known one.
//
// API commands: originate, uuid_bridge, uuid_kill, uuid_broadcast
// ("<uuid> [playback[!<cause>]::]<path> [leg]": with a cause, the channel
// is hung up after the playback, which is instant here), uuid_setvar, uuid_getvar, uuid_exists, uuid_record, sched_hangup
// ("[+]<secs> <uuid> [cause]"), show channels [as json], status, version,
// hupall [cause [var value]], fsctl ready_check|pause|resume (paused, it
// answers "false" and refuses originates with DESTINATION_OUT_OF_ORDER, as
// the real switch does; see Server.SetPaused), hash
// insert|delete|select/<realm>/<key>[/<val>] and hash_dump db [<realm>]
// (mod_hash's store, kept while the server runs), sofia xmlstatus gateway
// [<name>] (Server.Gateways, in FreeSWITCH 1.10.12's shape; a gateway set
// DOWN with SetGatewayStatus fires sofia::gateway_state and refuses legs
// with GATEWAY_DOWN), and the simulator-only
// "sim_inbound <caller> <destination>" ("+OK <uuid>"). bgapi results arrive
// as BACKGROUND_JOB events on every connection subscribed to them.
//
// Dial strings: "{var=val,...}" and "[var=val,...]" prefixes, then
// sofia/gateway/<gw>/<number>, sofia/<profile>/<number>[@host] (profiles
// "internal" and "external"; any other gives only CHANNEL_DESTROY and
// "-ERR INVALID_PROFILE"), loopback/<number>, or error/<cause>.
// origination_uuid, origination_caller_id_number/name and originate_timeout
// (default 60 s) are honoured; every variable is kept on the leg and shows up
// as variable_<name>. Server.MaxSessions refuses originates like
// max-sessions (-ERR DESTINATION_OUT_OF_ORDER, no channel event).
//
// CDR records: a leg's api_reporting_hook runs just before its
// CHANNEL_HANGUP_COMPLETE, expanded against the leg ("hash" commands only),
// as callbridge.CDRHook needs. set expands its value a second time, as
// FreeSWITCH's does. Differences: execute_on_originate runs only a set,
// and the escape layers FreeSWITCH applies to a bridged leg's hook
// (dial-string parsing, expansion) are not reproduced: the simulator
// recognises the hook's references instead (internal/call/cdrhook.go).
//
// # Far-end behaviour
//
// Each dialled number behaves according to the Script rule with the longest
// matching prefix, else by its last three digits:
//
//	...486  busy: USER_BUSY (486 Busy Here), no ringing
//	...480  rings until the originate or bridge timeout: NO_ANSWER
//	...404  UNALLOCATED_NUMBER
//	...603  CALL_REJECTED
//	...183  early media for 1 s (originate returns +OK already then), then
//	        answers and hangs up itself after 3 s of talk
//	other   rings 1 s, answers, and hangs up itself after 3 s of talk
//	        (NORMAL_CLEARING, sip_hangup_disposition recv_bye)
//
// A script is JSON:
//
//	{"rules":[{"prefix":"1555","ring_ms":1000,"early_media_ms":0,
//	           "outcome":"answer","talk_ms":3000}]}
//
// outcome is one of answer, busy, no_answer, unallocated, rejected, fail
// (NORMAL_TEMPORARY_FAILURE); talk_ms 0 keeps the far end up until it is
// hung up. Load one with LoadScript or ParseScript.
//
// # Inbound calls
//
// Server.Inbound (or "api sim_inbound") creates an inbound leg in context
// "public" and POSTs the mod_xml_curl dialplan request (the same form
// fields, in the same order, as FreeSWITCH) to DialplanURL, with basic auth
// if configured and a timeout. The first extension whose conditions match
// ($1... captures and ${var} expansion supported) is executed: set, export,
// answer, pre_answer, ring_ready, playback, sleep, record_session,
// sched_hangup, sched_cancel (by task group; the channel's uuid by
// default), hangup and bridge. When a channel answers, its variables named
// execute_on_answer* run (sched_hangup and sched_cancel only) in the order
// they were set, as FreeSWITCH 1.10 runs them. A failed bridge hangs the
// caller up with the B-leg cause unless continue_on_fail allows it; after
// a bridge the dialplan continues unless hangup_after_bridge is true; the
// end of the dialplan hangs up with NORMAL_CLEARING. No route, a non-200 answer, an
// unparsable document or `<result status="not found"/>` hang up with
// NO_ROUTE_DESTINATION. Other applications are logged and skipped.
//
// # Time
//
// The simulated clock runs Speed× real time: with Speed 100 a 1 s ring takes
// 10 ms, while every reported time and duration (Event-Date-Timestamp,
// variable_billmsec...) stays in simulated time. Jump moves it forward.
//
// # Slow clients
//
// Frames for each connection are queued; a connection that lets QueueSize
// frames pile up is dropped, as FreeSWITCH drops a listener that stops
// reading, so the simulator never blocks on a client.
//
// # Layout
//
// This package is the event socket: listeners, connections, auth,
// command blocks and framing, subscriptions and filters, and the test
// controls on Server. Behind it, internal/fswitch is the switch: the
// channels and their calls, the api commands, the gateways, under a lock
// of its own; the server drives it and renders the events it fires.
// internal/call is the data both share (channels, events, dial strings,
// dialplan documents, scripts) and internal/clock the simulated time.
package esltest
