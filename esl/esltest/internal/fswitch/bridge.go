package fswitch

import (
	"fmt"
	"strings"

	"callbridge/esl/esltest/internal/call"

	"github.com/google/uuid"
)

// bridgeLocked joins a (the originator) and b and emits CHANNEL_BRIDGE.
func (s *Switch) bridgeLocked(a, b *call.Channel) {
	now := s.clk.Now()
	a.Other, b.Other = b, a
	a.Role, b.Role = "originator", "originatee"
	a.OtherType, b.OtherType = "originatee", "originator"
	a.BridgedAt, b.BridgedAt = now, now
	for _, p := range [][2]*call.Channel{{a, b}, {b, a}} {
		x, y := p[0], p[1]
		x.Vars.Set("bridge_channel", y.Name)
		x.Vars.Set("bridge_uuid", y.UUID)
		x.Vars.Set("signal_bond", y.UUID)
		x.Vars.Set("last_sent_callee_id_name", y.Profile.CIDName)
		x.Vars.Set("last_sent_callee_id_number", y.Profile.CIDNumber)
	}
	s.emitLocked(a, "CHANNEL_BRIDGE", "switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1689,
		[]header{{"Bridge-A-Unique-ID", a.UUID}, {"Bridge-B-Unique-ID", b.UUID}}, nil)
	// A real CHANNEL_BRIDGE carries none of these (0 of 11 captured);
	// later events and the CDR do.
	a.Vars.Set("last_bridge_to", b.UUID)
	b.Vars.Set("last_bridge_to", a.UUID)
	a.Vars.Set("last_bridge_role", "originator")
	b.Vars.Set("last_bridge_role", "originatee")
	a.Vars.Set("bridge_to", b.UUID)
	if b.Running != "CS_EXCHANGE_MEDIA" {
		s.stateLocked(b, "CS_EXCHANGE_MEDIA")
	}
	s.emitLocked(a, "CALL_UPDATE", "mod_sofia.c", "sofia_receive_message", 2100,
		[]header{{"Direction", "SEND"}, {"Sent-Callee-ID-Name", b.Profile.CalleeName}, {"Sent-Callee-ID-Number", b.Profile.Destination}, {"Bridged-To", b.UUID}}, nil)
	s.emitLocked(b, "CALL_UPDATE", "mod_sofia.c", "sofia_receive_message", 2100,
		[]header{{"Direction", "SEND"}, {"Sent-Callee-ID-Name", a.Profile.CIDName}, {"Sent-Callee-ID-Number", a.Profile.CIDNumber}, {"Bridged-To", a.UUID}}, nil)
}

// uuidBridge implements "uuid_bridge <a> <b>".
func (s *Switch) uuidBridge(aID, bID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	// FreeSWITCH gives one answer for every refusal.
	const invalid = "-ERR Invalid uuid\n"
	a, b := s.chans[aID], s.chans[bID]
	if a == nil || a.Shadow || a.Killed || b == nil || b.Shadow || b.Killed || a == b {
		return invalid
	}
	if !a.BridgedAt.IsZero() || !b.BridgedAt.IsZero() {
		return invalid
	}
	if a.Answered.IsZero() && a.ProgressMedia.IsZero() && b.Answered.IsZero() && b.ProgressMedia.IsZero() {
		return invalid
	}
	ts := fmt.Sprintf("%d:%s:uuid_br:%s", s.clk.Now().Unix(), uuid.NewString(), b.UUID)
	a.Profile.TransferSource = ts
	b.Profile.TransferSource = ts
	a.Vars.Set("transfer_source", ts)
	b.Vars.Set("transfer_source", ts)
	s.bridgeLocked(a, b)
	return "+OK " + bID + "\n"
}

// runBridgeApp executes "bridge <dialstring>" on leg a: it originates the B
// leg, bridges on its answer, and returns when the bridge is over or failed.
// It reports whether the bridge was established and the failure cause.
func (s *Switch) runBridgeApp(a *call.Channel, data string) (bool, string) {
	data = strings.TrimSpace(data)
	global, rest := "", data
	if strings.HasPrefix(rest, "{") {
		if end := call.BlockEnd(rest); end > 0 {
			global, rest = rest[:end+1], rest[end+1:]
		}
	}
	// Each originate lists the legs it tried afresh (switch_ivr_originate.c
	// clears originate_causes first).
	s.mu.Lock()
	a.Vars.Del("originate_causes")
	s.mu.Unlock()
	alts := call.SplitOutsideQuotes(rest, '|')
	if len(alts) == 1 {
		return s.runBridgeOne(a, data)
	}
	// FreeSWITCH's sequential bridge: each dial string in turn, with the
	// shared variables, until one is bridged or one fails with a cause
	// fail_on_single_reject stops at (switch_ivr_originate.c: the cause's
	// name found in the value, case-insensitively; "!" negates; "true"
	// stops at any). Without it every failure goes on to the next.
	var shared call.Vars
	if global != "" {
		call.ParseVarBlock(global[1:len(global)-1], &shared)
	}
	reject := shared.Get("fail_on_single_reject")
	var cause string
	for _, alt := range alts {
		var ok bool
		ok, cause = s.runBridgeOne(a, global+alt)
		if ok {
			return true, cause
		}
		s.mu.Lock()
		gone := a.Killed
		s.mu.Unlock()
		if gone || cause == "ORIGINATOR_CANCEL" || cause == "SYSTEM_SHUTDOWN" || call.StopsSequence(reject, cause) {
			return false, cause
		}
	}
	return false, cause
}

// runBridgeOne bridges a to one dial string.
func (s *Switch) runBridgeOne(a *call.Channel, data string) (bool, string) {
	ep, err := call.ParseEndpoint(strings.TrimSpace(data))
	s.mu.Lock()
	if err != nil {
		s.mu.Unlock()
		return false, "INVALID_URL"
	}
	// Variables exported from A reach the B leg.
	for _, k := range strings.Split(a.Vars.Get("export_vars"), ",") {
		if k = strings.TrimSpace(k); k != "" && a.Vars.Get(k) != "" {
			ep.Vars.SetIfAbsent(k, a.Vars.Get(k))
		}
	}
	if t := a.Vars.Get("call_timeout"); t != "" {
		ep.Vars.SetIfAbsent("originate_timeout", t)
	}
	b, out := s.newOutboundLocked(ep, a)
	if b == nil {
		s.mu.Unlock()
		return false, strings.TrimSuffix(strings.TrimPrefix(out, "-ERR "), "\n")
	}
	a.Other, a.Role = b, "originator"
	// cancelled cancels B when A hangs up while B is being placed.
	cancelled := func() (bool, string) {
		s.mu.Lock()
		s.requestHangupLocked(b, "ORIGINATOR_CANCEL", "send_cancel")
		call.PushOriginateCause(a, b.UUID, "ORIGINATOR_CANCEL")
		s.mu.Unlock()
		return false, "ORIGINATOR_CANCEL"
	}
	result := make(chan string, 1)
	s.goLocked(func() { s.runOutbound(b, ep, nil, func(out string) { result <- out }) })
	s.mu.Unlock()

	var res string
	select {
	case res = <-result:
	case <-a.KillCh:
		return cancelled()
	case <-s.ctx.Done():
		return false, "SYSTEM_SHUTDOWN"
	}
	if !strings.HasPrefix(res, "+OK") {
		cause := strings.TrimSpace(strings.TrimPrefix(res, "-ERR"))
		s.mu.Lock()
		a.Other, a.Role = nil, ""
		call.PushOriginateCause(a, b.UUID, cause)
		s.mu.Unlock()
		return false, cause
	}
	// Wait for B's answer (originate returns already on early media).
	select {
	case <-b.AnswerCh:
	case <-b.Done:
		s.mu.Lock()
		a.Other, a.Role = nil, ""
		cause := b.HangupCause
		call.PushOriginateCause(a, b.UUID, cause)
		s.mu.Unlock()
		return false, cause
	case <-a.KillCh:
		return cancelled()
	case <-s.ctx.Done():
		return false, "SYSTEM_SHUTDOWN"
	}
	s.mu.Lock()
	if a.Killed || b.Killed {
		s.mu.Unlock()
		select {
		case <-a.KillCh:
		case <-b.Done:
		case <-s.ctx.Done():
		}
		return false, "NORMAL_CLEARING"
	}
	call.PushOriginateCause(a, b.UUID, "NONE")
	a.Profile.CalleeName, a.Profile.CalleeNumber = b.Profile.CalleeName, b.Profile.Destination
	if a.Progress.IsZero() && a.Direction == "inbound" {
		a.Progress = s.clk.Now()
		s.emitLocked(a, "CHANNEL_PROGRESS", "switch_channel.c", "switch_channel_perform_mark_ring_ready_value", 3505, nil, nil)
	}
	if a.Answered.IsZero() {
		a.Answered = s.clk.Now()
		a.AnswerState = "answered"
		s.emitLocked(a, "CHANNEL_ANSWER", "switch_channel.c", "switch_channel_perform_mark_answered", 3846, nil, nil)
		s.callStateLocked(a, "ACTIVE")
		s.executeOnAnswerLocked(a)
	}
	s.bridgeLocked(a, b)
	s.mu.Unlock()
	// Bridged: wait for either side to end it.
	select {
	case <-a.KillCh:
	case <-b.Done:
	case <-s.ctx.Done():
	}
	return true, ""
}
