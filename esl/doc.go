// Package esl is the FreeSWITCH event-socket (ESL) client of callbridge.
//
// A Client keeps two inbound ESL connections to one FreeSWITCH node: a
// command connection that subscribes to nothing and carries one command at a
// time, always as "bgapi <cmd>" with a Job-UUID chosen and registered before
// the command is written; and an event connection subscribed to the channel
// events, BACKGROUND_JOB, HEARTBEAT and CUSTOM, whose single reader only
// enqueues. BACKGROUND_JOB events complete jobs by Job-UUID, so API results
// never travel as api/response frames. Run keeps both connections up, fails
// every pending job with ErrClosed when either one drops, redials with
// exponential backoff and jitter, and resubscribes.
//
// The wire conversation is spoken by github.com/fiorix/go-eventsocket, which
// exits the process (log.Fatal) on an unknown Content-Type and panics on
// short replies in a goroutine no caller can recover. The client therefore
// dials FreeSWITCH itself, authenticates, and puts a frame guard between the
// real socket and the library: the guard reads every frame, checks its
// header block, Content-Length (with a size cap), Content-Type (auth/request,
// command/reply, api/response, text/event-plain, text/event-json,
// text/disconnect-notice), Reply-Text and body lengths, that plain bodies
// parse as MIME headers and JSON bodies as JSON objects with string _body,
// and forwards only frames the library provably handles to a private
// loopback TCP connection (127.0.0.1:0, one accepted connection,
// authenticated with a random one-time password). Frames it cannot make safe
// are dropped or rewritten (a short reply becomes "-ERR esl: malformed
// reply"), counted in Stats and logged. Replies nobody is waiting for and
// api/response frames (never requested) are dropped, so the library's
// unbuffered channels cannot wedge its reader.
//
// Every command is built by a validating builder (Originate, UUIDKill,
// UUIDBridge...). Numbers must be valid callbridge.Numbers, uuids canonical,
// variable names [a-z0-9_]+, and every other value is checked against a
// strict allow-list, so characters that end a command or change the meaning
// of a dial string (CR, LF, braces, brackets, comma, pipe, caret, ampersand,
// quote, space, backslash, dollar, NUL, non-ASCII) are refused before
// anything is written. The write path refuses CR, LF and NUL again.
//
// Pool spreads calls over several nodes, honouring each node's calls per
// second and concurrent-call limits.
//
// Package esl does not send "api" (blocking) commands, does not subscribe to
// logs, does not speak the outbound-socket mode, and does not decide
// anything about calls: it reports events and carries commands.
package esl
