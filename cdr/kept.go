package cdr

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"callbridge"
	"callbridge/esl"
	"callbridge/esl/freeswitch"
)

// This file collects the CDR records FreeSWITCH keeps itself (see
// callbridge.CDRHook): every leg callbridge creates or routes stores
// "<uuid> -> v1;start;answer;end;mduration;billmsec;cause;q850;..." in
// mod_hash when it ends, whether or not a controller listens. So:
//
//   - After every (re)connection to a node, before the reconciliation
//     estimates anything, the node's records are listed ("hash_dump db
//     callbridge_cdr"), turned into exact CDRs (completed with what
//     live_channels knows of the leg), written, and then deleted from the
//     node. A leg that ended while no controller listened gets its real
//     billmsec and cause; only a leg the node itself lost (FreeSWITCH
//     restarted: mod_hash is memory) is estimated.
//   - Once the CDR of a CHANNEL_HANGUP_COMPLETE is committed, its record
//     is deleted from the node (one "hash delete" per leg, off the event
//     path). Records whose deletion failed are collected by the sweep.
//
// A record and an event of the same leg make the same CDR; the store keeps
// the first (ON CONFLICT DO NOTHING on the uuid), so collecting is
// idempotent and a crash between writing and deleting only repeats it.

// keptGrace is how old a record must be before the sweep collects it,
// leaving the leg's own CHANNEL_HANGUP_COMPLETE time to arrive.
const keptGrace = time.Minute

// keptDelete asks for a node's record of a leg to be deleted.
type keptDelete struct {
	node, uuid string
}

// collectKept writes the CDRs of the records node keeps that ended more
// than minAge ago, waits until they are in the database, and deletes the
// records. It returns how many it wrote.
func (p *Pipeline) collectKept(ctx context.Context, c *esl.Client, minAge time.Duration) (int, error) {
	cmd, err := freeswitch.HashDump(callbridge.CDRHookRealm)
	if err != nil {
		return 0, err
	}
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	dump, err := c.API(lctx, cmd)
	cancel()
	if err != nil {
		return 0, err
	}
	cutoff := p.now().Add(-minAge)
	var ids []string
	for _, line := range strings.Split(dump, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "D/"+callbridge.CDRHookRealm+"_") {
			continue
		}
		cdr, err := parseKept(c.Name(), line)
		if err != nil {
			p.log.Error("ALERT: unreadable cdr record dead-lettered", "node", c.Name(), "error", err)
			d := &callbridge.CDRDeadLetter{Node: c.Name(), Reason: err.Error(), Attempts: 1, Payload: keptPayload(line)}
			if cdr != nil {
				d.UUID = cdr.UUID
			}
			if !p.add(ctx, record{Dead: d}) {
				return 0, ctx.Err()
			}
			if cdr != nil {
				ids = append(ids, cdr.UUID)
			}
			continue
		}
		if minAge > 0 && cdr.EndAt.After(cutoff) {
			continue
		}
		if !p.add(ctx, record{Kept: cdr}) {
			return 0, ctx.Err()
		}
		ids = append(ids, cdr.UUID)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	req := &reconcileReq{node: c.Name(), ready: make(chan struct{})}
	if !p.add(ctx, record{barrier: req}) {
		return 0, ctx.Err()
	}
	select {
	case <-req.ready:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	for _, id := range ids {
		if err := p.deleteKept(ctx, c, id); err != nil {
			p.log.Warn("cdr record not deleted; collected again later", "node", c.Name(), "uuid", id, "error", err)
		}
	}
	p.kept.Add(int64(len(ids)))
	return len(ids), nil
}

func (p *Pipeline) deleteKept(ctx context.Context, c *esl.Client, id string) error {
	cmd, err := freeswitch.HashDelete(callbridge.CDRHookRealm, id)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = c.API(dctx, cmd)
	var re *esl.ReplyError
	if errors.As(err, &re) {
		return nil // "-ERR Not found": nothing kept (an unanswered originated leg)
	}
	return err
}

// keptDeleter deletes the records of legs whose CDR came from their
// events, once it is committed, until ctx ends.
func (p *Pipeline) keptDeleter(ctx context.Context) {
	for {
		select {
		case d := <-p.keptDel:
			c := p.clients[d.node]
			if c == nil || c.State() != esl.StateConnected {
				continue // collected after the reconnection
			}
			if err := p.deleteKept(ctx, c, d.uuid); err != nil && ctx.Err() == nil {
				p.log.Debug("cdr record not deleted; the sweep collects it", "node", d.node, "uuid", d.uuid, "error", err)
			}
		case <-ctx.Done():
			return
		}
	}
}

// forgetKept queues the deletion of the records of the event CDRs among
// recs, which are committed. A full queue drops deletions: the sweep
// collects those records as duplicates.
func (p *Pipeline) forgetKept(recs []record) {
	for _, r := range recs {
		if r.CDR == nil || r.CDR.Flags.Has(callbridge.CDREstimated) || p.clients[r.CDR.Node] == nil {
			continue
		}
		select {
		case p.keptDel <- keptDelete{node: r.CDR.Node, uuid: r.CDR.UUID}:
		default:
		}
	}
}

// completeKept fills the parties of kept records from the legs' live
// channels (the record holds only what callbridge set on the channel and
// numbers FreeSWITCH computed).
func (p *Pipeline) completeKept(ctx context.Context, kept []*callbridge.CDR) error {
	ids := make([]string, len(kept))
	for i, c := range kept {
		ids[i] = c.UUID
	}
	live, err := p.cfg.Store.LiveChannelsByUUID(ctx, ids)
	if err != nil {
		return err
	}
	byUUID := make(map[string]*callbridge.LiveChannel, len(live))
	for _, l := range live {
		byUUID[l.UUID] = l
	}
	for _, c := range kept {
		l := byUUID[c.UUID]
		if l == nil {
			continue
		}
		fill := func(dst *string, v string) {
			if *dst == "" {
				*dst = v
			}
		}
		fill(&c.OtherUUID, l.OtherUUID)
		fill(&c.AccountID, l.AccountID)
		fill(&c.CallbackID, l.CallbackID)
		fill(&c.BindingID, l.BindingID)
		fill(&c.Direction, l.Direction)
		fill(&c.Caller, l.Caller)
		fill(&c.Callee, l.Callee)
		fill(&c.Presented, l.Presented)
		fill(&c.Gateway, l.Gateway)
		if c.Leg == callbridge.LegPlain {
			c.Leg = l.Leg
		}
		if c.MaxMS == 0 {
			c.MaxMS = l.MaxMS
		}
	}
	return nil
}

// parseKept reads one "D/callbridge_cdr_<uuid>/<record>" line of hash_dump
// into an unpriced CDR. Every field is checked: a record is refused
// (error) when its uuid, version, times or field count are wrong; an
// unexpected attribution field is left empty.
func parseKept(node, line string) (*callbridge.CDR, error) {
	rest := strings.TrimPrefix(line, "D/"+callbridge.CDRHookRealm+"_")
	id, value, ok := strings.Cut(rest, "/")
	id = strings.ToLower(id)
	if !ok || !callbridge.IsUUID(id) {
		return nil, errors.New("cdr: cdr record without a valid uuid")
	}
	c := &callbridge.CDR{UUID: id, Node: sanitize(node)}
	names := callbridge.CDRRecordFields()
	f := strings.Split(value, ";")
	switch {
	case len(f) == len(names)+1 && f[0] == callbridge.CDRHookVersion:
	case len(f) == len(names) && f[0] == "v1":
		// Written before v2 added the attempt, its last field.
		names = names[:len(names)-1]
	default:
		return c, errors.New("cdr: cdr record of an unknown format")
	}
	v := make(map[string]string, len(names))
	for i, n := range names {
		v[n] = f[i+1]
	}
	start, answer, end := firstTime(v["start_uepoch"]), firstTime(v["answer_uepoch"]), firstTime(v["end_uepoch"])
	if start.IsZero() || end.IsZero() || end.Before(start) || !answer.IsZero() && (answer.Before(start) || answer.After(end)) {
		return c, errors.New("cdr: cdr record with invalid times")
	}
	c.StartAt, c.AnswerAt, c.EndAt = start, answer, end
	ms := func(s string, d time.Duration) int64 {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
			return n
		}
		return max(d.Milliseconds(), 0)
	}
	c.DurationMS = ms(v["mduration"], end.Sub(start))
	if c.Answered() {
		c.BillMS = ms(v["billmsec"], end.Sub(answer))
	}
	c.HangupCause = "NONE"
	if isCauseName(v["hangup_cause"]) {
		c.HangupCause = v["hangup_cause"]
	}
	if q, err := strconv.Atoi(v["hangup_cause_q850"]); err == nil && q >= 0 && q < 1000 {
		c.Q850 = q
	}
	c.Disposition = callbridge.Disposition(c.HangupCause, c.Answered())
	switch d := v["direction"]; d {
	case "inbound", "outbound":
		c.Direction = d
	}
	c.Leg = callbridge.LegPlain
	switch l := v[callbridge.VarLeg]; l {
	case callbridge.LegCallbackA, callbridge.LegCallbackB, callbridge.LegInbound, callbridge.LegOutbound:
		c.Leg = l
	}
	c.AccountID = uuidOrEmpty(v[callbridge.VarAccount])
	c.CallbackID = uuidOrEmpty(v[callbridge.VarCallbackID])
	c.BindingID = uuidOrEmpty(v[callbridge.VarBindingID])
	if m, err := strconv.ParseInt(v[callbridge.VarMaxMS], 10, 64); err == nil && m > 0 {
		c.MaxMS = m
	}
	number := func(s string) string {
		if callbridge.Number(s).Validate() == nil {
			return s
		}
		return ""
	}
	x := number(v[callbridge.VarX])
	c.Callee = number(v[callbridge.VarCallee])
	switch c.Leg {
	case callbridge.LegInbound:
		c.Callee = firstNonEmpty(c.Callee, x)
	case callbridge.LegOutbound:
		c.Presented = x
	}
	if callbridge.ValidateGateway(v["sip_gateway_name"]) == nil {
		c.Gateway = v["sip_gateway_name"]
	}
	c.OtherUUID = firstNonEmpty(uuidOrEmpty(v["bridge_uuid"]), uuidOrEmpty(v["signal_bond"]))
	c.Attempt = attemptVar(v[callbridge.VarAttempt])
	return c, nil
}

// isCauseName reports whether s looks like a FreeSWITCH hangup cause.
func isCauseName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= 'A' && s[i] <= 'Z' || s[i] >= '0' && s[i] <= '9' || s[i] == '_') {
			return false
		}
	}
	return true
}

// keptPayload is a dead letter's payload for an unreadable record line.
func keptPayload(line string) []byte {
	b, _ := json.Marshal(map[string]string{"record": line})
	return b
}
