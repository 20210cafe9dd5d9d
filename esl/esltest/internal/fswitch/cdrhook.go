package fswitch

import (
	"sort"
	"strings"

	"callbridge/esl/esltest/internal/call"
)

// This file simulates what callbridge's CDR records need of FreeSWITCH:
// the api_reporting_hook channel variable, run at the end of a call just
// before CHANNEL_HANGUP_COMPLETE, and mod_hash's "hash" and "hash_dump"
// API commands on an in-memory store that outlives event connections
// (not the server).

// reportingHookLocked runs the leg's api_reporting_hook, which FreeSWITCH
// expands once against the channel when it runs it. Only mod_hash's
// "hash" command is simulated there.
func (s *Switch) reportingHookLocked(ch *call.Channel) {
	hook := ch.Vars.Get("api_reporting_hook")
	cmd, arg, ok := strings.Cut(hook, "::")
	if !ok {
		cmd, arg, _ = strings.Cut(hook, " ")
	}
	if cmd != "hash" {
		return
	}
	s.hashLocked(call.ExpandVars(ch, arg, nil))
}

// hashLocked runs "hash insert|delete|select/<realm>/<key>[/<value>]":
// the value is what follows the third '/' up to the next one, as
// mod_hash's argument splitting leaves it.
func (s *Switch) hashLocked(arg string) string {
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
func (s *Switch) hashDumpLocked(arg string) string {
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
