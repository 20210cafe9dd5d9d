// Package esl is the FreeSWITCH event-socket (ESL) client of callbridge.
//
// A Client keeps two inbound ESL connections to one FreeSWITCH node: a
// command connection that subscribes to nothing and carries one command at a
// time, always as "bgapi <cmd>" with a Job-UUID chosen and registered before
// the command is written; and an event connection subscribed to the channel
// events, BACKGROUND_JOB, HEARTBEAT and CUSTOM, whose single reader only
// enqueues, so events reach every Subscription in arrival order (and so in
// order per call). BACKGROUND_JOB events complete jobs by Job-UUID, so API
// results never travel as api/response frames. Run keeps both connections
// up, fails every pending job with ErrClosed when either one drops,
// redials with exponential backoff and jitter, and resubscribes.
//
// github.com/fiorix/go-eventsocket speaks the command connection only:
// auth is done by the client, then the library writes each bgapi and reads
// its command/reply. The library exits the process (log.Fatal) on an
// unknown Content-Type and panics on short replies in a goroutine no
// caller can recover, so the client dials FreeSWITCH itself,
// authenticates, and puts a frame guard between the real socket and the
// library: the guard reads every frame, checks its header block,
// Content-Length (with a size cap), Content-Type and Reply-Text, and
// forwards only replies the library provably handles to a private
// loopback TCP connection (127.0.0.1:0, one accepted connection,
// authenticated with a random one-time password). A short reply becomes
// "-ERR esl: malformed reply"; replies nobody is waiting for, api/response
// frames (never requested) and events are dropped, so the library's
// unbuffered channels cannot wedge its reader.
//
// The event connection is read by callbridge's own parser, not by
// go-eventsocket, because the library's reader can be made neither
// lossless nor fast enough. Lossless: at EOF its ReadEvent selects at
// random between an event already buffered and the error, so events
// received just before a connection drops (a lost CHANNEL_HANGUP_COMPLETE
// is a lost CDR) can be lost. Fast: behind the guard every event was
// parsed twice by net/textproto, and the library then URL-decoded and
// recapitalised every header into a map, about 1,800 allocations for one
// 9 kB CHANNEL_HANGUP_COMPLETE. Instead the client writes "event plain
// ..." and reads its +OK reply itself, and its single reader turns each
// text/event-plain or text/event-json frame directly into an Event, in
// one pass and four allocations, keeping FreeSWITCH's header names and
// decoding values exactly as go-eventsocket did (url.QueryUnescape;
// FreeSWITCH encodes '+' as %2B). Every event fully received is delivered
// before the loss of the connection is reported; when the command
// connection fails first, the event connection is still read until its
// EOF (at most 500 ms). Frames with another Content-Type, malformed event
// bodies and oversize frames are dropped, counted in Stats and logged;
// nothing on the wire makes the client panic or exit.
// The byte-level work (frames, the guard's verdicts, header tables and the
// event-body parsers) is in esl/internal/wire; this package dials,
// authenticates, runs the guard and the connections, and makes freeswitch.Events.
//
// Commands, events and the parsers of their results are the vocabulary
// of package esl/freeswitch, which has no connection in it: every command
// the client writes is a freeswitch.Command made by one of its validating
// builders, which refuse anything that could end a command or change the
// meaning of a dial string. The write path here refuses CR, LF and NUL
// again.
//
// Pool spreads calls over several nodes, honouring each node's calls per
// second and concurrent-call limits.
//
// Client.GatewayStatuses and Client.GatewayStatus read the carrier
// gateways' state ("sofia xmlstatus gateway"); a client subscribed to
// freeswitch.GatewayStateSubclass (Config.Subclasses) receives the
// sofia::gateway_state events sent when a gateway's status changes.
//
// Package esl does not send "api" (blocking) commands, does not subscribe to
// logs, does not speak the outbound-socket mode, and does not decide
// anything about calls: it reports events and carries commands.
package esl
