package esltest

import (
	"regexp"
	"sort"
	"strings"
)

// This file simulates what callbridge's CDR records need of FreeSWITCH:
// the api_reporting_hook channel variable, run at the end of a call just
// before CHANNEL_HANGUP_COMPLETE, and mod_hash's "hash" and "hash_dump"
// API commands on an in-memory store that outlives event connections
// (not the server).

// setVarLocked runs the set application: FreeSWITCH expands its data once
// when the application runs (the caller did) and set expands the value
// once more.
func setVarLocked(ch *channel, data string) {
	k, v, ok := strings.Cut(data, "=")
	if !ok || k == "" {
		return
	}
	v = expandVars(ch, v, nil)
	if v == "" {
		ch.v.del(k)
		return
	}
	ch.v.set(k, v)
}

// bridgeHookRef is a reference of the CDR hook of a bridged leg as it
// reaches execute_on_originate (callbridge.CDRHookBridgeRef, with the
// calling channel's variables substituted): FreeSWITCH's dial-string
// parser and the two expansions of set turn it into "${name}". The
// simulator does not reproduce those escape layers; it recognises the
// reference.
var bridgeHookRef = regexp.MustCompile(`\$\\*'?\{callbridge_dollar\}\{([A-Za-z0-9_]+)\}`)

// executeOnOriginateLocked runs a leg's execute_on_originate when it is a
// set (the only application simulated there).
func executeOnOriginateLocked(ch *channel) {
	v := ch.v.get("execute_on_originate")
	data, ok := strings.CutPrefix(strings.Trim(v, "'"), "set ")
	if !ok {
		return
	}
	k, val, ok := strings.Cut(data, "=")
	if !ok {
		return
	}
	ch.v.set(k, bridgeHookRef.ReplaceAllString(val, "$${$1}"))
}

// reportingHookLocked runs the leg's api_reporting_hook, which FreeSWITCH
// expands once against the channel when it runs it. Only mod_hash's
// "hash" command is simulated there.
func (s *Server) reportingHookLocked(ch *channel) {
	hook := ch.v.get("api_reporting_hook")
	cmd, arg, ok := strings.Cut(hook, "::")
	if !ok {
		cmd, arg, _ = strings.Cut(hook, " ")
	}
	if cmd != "hash" {
		return
	}
	s.hashLocked(expandVars(ch, arg, nil))
}

// hashLocked runs "hash insert|delete|select/<realm>/<key>[/<value>]":
// the value is what follows the third '/' up to the next one, as
// mod_hash's argument splitting leaves it.
func (s *Server) hashLocked(arg string) string {
	f := strings.SplitN(arg, "/", 5)
	if len(f) < 3 {
		return "-ERR Usage: hash insert|insert_ifempty|select|delete|delete_ifmatch/realm/key[/value]\n"
	}
	if s.hash == nil {
		s.hash = map[string]string{}
	}
	key := f[1] + "_" + f[2]
	switch f[0] {
	case "insert":
		if len(f) < 4 {
			return "-ERR Usage: hash insert|insert_ifempty|select|delete|delete_ifmatch/realm/key[/value]\n"
		}
		s.hash[key] = f[3]
		return "+OK\n"
	case "delete":
		if _, ok := s.hash[key]; !ok {
			return "-ERR Not found\n"
		}
		delete(s.hash, key)
		return "+OK\n"
	case "select":
		return s.hash[key]
	}
	return "-ERR Usage: hash insert|insert_ifempty|select|delete|delete_ifmatch/realm/key[/value]\n"
}

// hashDumpLocked runs "hash_dump db [<realm>]": one "D/<realm>_<key>/<value>"
// line per entry whose key contains "<realm>_".
func (s *Server) hashDumpLocked(arg string) string {
	f := strings.Fields(arg)
	if len(f) == 0 || f[0] != "db" && f[0] != "all" {
		return "Usage: all|limit|db [<realm>]\n"
	}
	keys := make([]string, 0, len(s.hash))
	for k := range s.hash {
		if len(f) < 2 || strings.Contains(k, f[1]+"_") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString("D/" + k + "/" + s.hash[k] + "\n")
	}
	return b.String()
}
