// Package freeswitch is the vocabulary callbridge speaks to FreeSWITCH,
// without a connection in it: the API commands the esl client carries,
// the events it delivers, and the parsers of the results and variables
// that come back.
//
// Every command is a Command made by a validating builder (UUIDKill,
// UUIDBridge, Originate.Command...). Numbers must be valid
// callbridge.Numbers, uuids canonical, variable names [a-z0-9_]+, and
// every other value is checked against a strict allow-list, so characters
// that end a command or change the meaning of a dial string (CR, LF,
// braces, brackets, comma, pipe, caret, ampersand, quote, space,
// backslash, dollar, NUL, non-ASCII) are refused, with a *ValidationError,
// before the command exists. No other package can make a Command: the
// only way hostile input could reach the switch is through a builder, and
// the builders and their tests live here. (The esl client refuses CR, LF
// and NUL once more as it writes.)
//
// Event is one FreeSWITCH event with its headers as FreeSWITCH sent them;
// EventName and its constants name the ones callbridge meets. NewEvent
// builds events for tests of their consumers.
//
// ParseGatewayStatus reads "sofia xmlstatus gateway" (a carrier gateway's
// UP or DOWN by its OPTIONS ping, registration state, ping time, call
// counters), ParseGatewayState the sofia::gateway_state events sent when
// it changes, ParseOriginateCauses a bridge's originate_causes variable,
// and ParseChannels "show channels as json".
//
// Package freeswitch performs no I/O. Its error strings keep the "esl: "
// prefix they had when this vocabulary was part of package esl, so logs
// and stored call records read as before.
package freeswitch
