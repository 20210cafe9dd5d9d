package call

import (
	"regexp"
	"strings"
)

// The CDR hook's side of a channel: callbridge's CDR records need the set
// application's second expansion and execute_on_originate's set on a
// bridged leg.

// SetVar runs the set application: FreeSWITCH expands its data once
// when the application runs (the caller did) and set expands the value
// once more.
func SetVar(ch *Channel, data string) {
	k, v, ok := strings.Cut(data, "=")
	if !ok || k == "" {
		return
	}
	v = ExpandVars(ch, v, nil)
	if v == "" {
		ch.Vars.Del(k)
		return
	}
	ch.Vars.Set(k, v)
}

// bridgeHookRef is a reference of the CDR hook of a bridged leg as it
// reaches execute_on_originate (callbridge.CDRHookBridgeRef, with the
// calling channel's variables substituted): FreeSWITCH's dial-string
// parser and the two expansions of set turn it into "${name}". The
// simulator does not reproduce those escape layers; it recognises the
// reference.
var bridgeHookRef = regexp.MustCompile(`\$\\*'?\{callbridge_dollar\}\{([A-Za-z0-9_]+)\}`)

// ExecuteOnOriginate runs a leg's execute_on_originate when it is a
// set (the only application simulated there).
func ExecuteOnOriginate(ch *Channel) {
	v := ch.Vars.Get("execute_on_originate")
	data, ok := strings.CutPrefix(strings.Trim(v, "'"), "set ")
	if !ok {
		return
	}
	k, val, ok := strings.Cut(data, "=")
	if !ok {
		return
	}
	ch.Vars.Set(k, bridgeHookRef.ReplaceAllString(val, "$${$1}"))
}
