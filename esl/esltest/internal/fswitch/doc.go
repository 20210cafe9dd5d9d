// Package fswitch is the switch behind the simulator's event socket: a
// simulated FreeSWITCH 1.10.12 core and the modules it reproduces. It
// holds the channels and drives each call through them (originate, the
// bridge application and uuid_bridge, inbound calls routed by a
// mod_xml_curl dialplan, hangups and their CDR variables), answers every
// api command (mod_commands, sofia xmlstatus, mod_hash, fsctl), keeps the
// sofia gateways' state and fires the events FreeSWITCH fires.
//
// One lock guards the switch and all its channels. Events leave through
// Config.Emit, called under that lock in Event-Sequence order; the socket
// server (package esltest) renders them for its connections. It knows
// nothing of connections, framing or subscriptions.
package fswitch
