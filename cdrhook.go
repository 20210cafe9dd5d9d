package callbridge

import "strings"

// FreeSWITCH keeps a compact record of every leg callbridge creates or
// routes until a controller collects it, so a leg that ends while no
// controller listens still gets its exact CDR. The record is written by
// the channel's api_reporting_hook, which FreeSWITCH runs at the end of
// every call, just before CHANNEL_HANGUP_COMPLETE and after it has set
// billmsec and the hangup cause:
//
//	hash insert/callbridge_cdr/<uuid>/v2;<field>;<field>;...
//
// mod_hash keeps it in memory until the controller lists the realm
// ("hash_dump db callbridge_cdr"), stores the CDR and deletes the key
// ("hash delete/callbridge_cdr/<uuid>"). A FreeSWITCH restart loses the
// records with the calls: those legs, and only those, are estimated.
//
// Every field is a number, a cause name, a uuid or a value callbridge set
// itself: nothing a caller controls (caller id, SIP headers) is recorded,
// so no caller can break a record, its '/'-separated hash command or the
// dump's one-record-per-line format.
const (
	// CDRHookRealm is the mod_hash realm of the records.
	CDRHookRealm = "callbridge_cdr"
	// CDRHookVersion is the first field of a record. v2 added VarAttempt
	// as the last field; records of v1 (without it) are still read.
	CDRHookVersion = "v2"
	// VarDollar holds "$" on a channel. FreeSWITCH refuses a channel
	// variable containing "${" from anywhere but the set application,
	// and expands the hook only when it runs, so the hook's "${name}"
	// references are assembled from this variable by set itself.
	VarDollar = "callbridge_dollar"
	// VarBackslash holds "\" on a channel, for the hook of a bridged leg
	// (see CDRHookBridgeRef).
	VarBackslash = "callbridge_backslash"
	// VarCallee is the number a leg dials (outbound legs), so a record
	// can be priced without the events.
	VarCallee = "callbridge_callee"
)

// CDRRecordFields are the channel variables of a record, in order, after
// the version.
func CDRRecordFields() []string {
	return []string{
		"start_uepoch", "answer_uepoch", "end_uepoch", "mduration", "billmsec",
		"hangup_cause", "hangup_cause_q850", "direction",
		VarLeg, VarAccount, VarCallbackID, VarBindingID, VarMaxMS, VarX, VarCallee,
		"sip_gateway_name", "bridge_uuid", "signal_bond", VarAttempt,
	}
}

// CDRHook returns the api_reporting_hook command, each channel variable
// written by ref (one of the CDRHook*Ref functions, depending on how the
// hook reaches the channel).
func CDRHook(ref func(name string) string) string {
	var b strings.Builder
	b.WriteString("hash::insert/" + CDRHookRealm + "/" + ref("uuid") + "/" + CDRHookVersion)
	for _, f := range CDRRecordFields() {
		b.WriteString(";" + ref(f))
	}
	return b.String()
}

// CDRHookSetRef writes a variable for a hook set by a set application in
// a dialplan (XML or inline) on a channel where VarDollar is "$". The
// application's data is expanded twice (once when it runs, once by set):
// "${callbridge_dollar}{callbridge_dollar}{name}" becomes
// "${callbridge_dollar}{name}", then "${name}", stored unexpanded.
func CDRHookSetRef(name string) string {
	return "${" + VarDollar + "}{" + VarDollar + "}{" + name + "}"
}

// CDRHookBridgeRef writes a variable for the hook of a leg a bridge
// application creates: "{" + VarDollar + "=$,execute_on_originate='set
// api_reporting_hook=" + CDRHook(CDRHookBridgeRef) + "'}" in the dial
// string, on a calling channel where VarDollar is "$" and VarBackslash
// is "\". The calling channel's expansion turns each reference into
// "$\\\\\\\'{callbridge_dollar}{name}" (no "${", which FreeSWITCH would
// refuse in a dial-string variable); the dial-string parser and the
// expansion of execute_on_originate remove the escapes, and set stores
// "${name}". Checked against FreeSWITCH 1.10.12 (realswitch tests).
func CDRHookBridgeRef(name string) string {
	return "${" + VarDollar + "}" + strings.Repeat("${"+VarBackslash+"}", 7) + "'{" + VarDollar + "}{" + name + "}"
}
