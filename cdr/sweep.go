package cdr

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"callbridge"
	"callbridge/esl"
	"callbridge/esl/freeswitch"
)

// This file closes call legs whose CHANNEL_HANGUP_COMPLETE never arrived,
// so every leg gets a CDR even when events were lost (a dropped event
// connection, a subscription overflow, a controller killed with events in
// memory). The pipeline records legs from CHANNEL_CREATE and CHANNEL_ANSWER
// in live_channels and removes them with their CDR; what stays there too
// long is closed here with an estimated CDR:
//
//   - Reconciliation, after every (re)connection to a node and every lost
//     subscription: once every batch queued before it is written, the node's
//     channels are listed ("show channels"); legs we hold live that the node
//     no longer has, and that were last seen before the listing, are given
//     SweepGrace for a hangup from elsewhere (another controller, a batch in
//     flight) and then closed. Such a leg ended while we were not listening:
//     it is priced as if it lasted until it was found gone, but never longer
//     than its maximum duration.
//   - The sweep, every SweepInterval: legs past their maximum duration
//     (callbridge_max_ms, else DefaultMaxDuration) plus SweepGrace are
//     checked with uuid_exists. A leg the node still has is hung up
//     (ALLOTTED_TIMEOUT) and its own hangup makes the CDR; a leg it does not
//     have, or whose node is no longer configured, is closed priced at its
//     maximum duration.
//
// Both are bound by the account's missing-hangup policy
// (callbridge.BillingProfile.MissingHangup): under HangupEstimate a leg a
// reconciliation finds gone is charged until it was found gone (at most
// its maximum); under HangupMaxDuration every leg the sweep or a
// reconciliation closes is charged its maximum duration from its answer,
// and its CDR is flagged max_duration besides estimated, so the CDR and
// its invoice line name the policy that priced it.
//
//   - CHANNEL_DESTROY, the last event of every channel: a channel destroyed
//     while its leg is still in live_channels got no CHANNEL_HANGUP_COMPLETE
//     (which comes before it on the same connection). Such a leg is closed
//     at its destroy time. This is how a leg FreeSWITCH never created gets
//     its CDR: a callback leg is recorded in live_channels before it is
//     originated, and an originate refused before a session exists (an
//     unknown sofia profile: -ERR INVALID_PROFILE) produces only
//     CHANNEL_DESTROY. It is unanswered and costs nothing.
//
// Estimated CDRs are flagged CDREstimated, have the cause "UNKNOWN", and go
// through the spool and the store like any other: if the real hangup
// arrives first it wins, if it arrives later it is a duplicate.

// estimatedCause is the hangup cause of an estimated CDR.
const estimatedCause = "UNKNOWN"

// reconcileReq asks for one node's live legs to be reconciled; ready is
// closed by the writer when every batch queued before it is written.
type reconcileReq struct {
	node  string
	ready chan struct{}
}

// requestReconcile schedules a reconciliation of node without blocking
// the event reader.
func (p *Pipeline) requestReconcile(node string) {
	select {
	case p.reconcileC <- reconcileReq{node: node}:
	default:
		p.log.Warn("cdr reconciliation request dropped: too many pending", "node", node)
	}
}

// reconciler runs requested reconciliations one at a time until ctx ends.
func (p *Pipeline) reconciler(ctx context.Context) {
	for {
		select {
		case req := <-p.reconcileC:
			p.reconcile(ctx, req.node)
		case <-ctx.Done():
			return
		}
	}
}

// reconcile closes the legs of node that FreeSWITCH no longer has.
func (p *Pipeline) reconcile(ctx context.Context, node string) {
	c := p.clients[node]
	if c == nil {
		return
	}
	// Wait until everything received before the request is in the
	// database, so live_channels is as current as our events.
	req := &reconcileReq{node: node, ready: make(chan struct{})}
	if !p.add(ctx, record{barrier: req}) {
		return
	}
	select {
	case <-req.ready:
	case <-ctx.Done():
		return
	}
	// Legs that ended while we were not listening have their exact CDR in
	// the records the node kept: written first, they leave live_channels
	// before anything is estimated.
	if n, err := p.collectKept(ctx, c, 0); err != nil {
		p.log.Warn("cdr reconciliation: cannot collect the records the node kept", "node", node, "error", err)
	} else if n > 0 {
		p.log.Info("cdr reconciliation: collected the records the node kept", "node", node, "records", n)
	}
	listed := p.now().UTC()
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	chans, err := c.Channels(lctx)
	cancel()
	if err != nil {
		p.log.Warn("cdr reconciliation: cannot list channels", "node", node, "error", err)
		return
	}
	has := make(map[string]bool, len(chans))
	for _, ch := range chans {
		has[ch.UUID] = true
	}
	gone, err := p.goneLegs(ctx, node, has, listed)
	if err != nil {
		return
	}
	if len(gone) == 0 {
		p.reconciles.Add(1)
		return
	}
	if !sleep(ctx, p.cfg.SweepGrace) {
		return
	}
	// Keep only the legs still live after the grace period.
	still, err := p.goneLegs(ctx, node, has, listed)
	if err != nil {
		return
	}
	for _, l := range still {
		if gone[l.UUID] == nil {
			continue
		}
		p.log.Warn("cdr reconciliation: closing a leg the node no longer has", "node", node, "uuid", l.UUID, "account", l.AccountID, "callback", l.CallbackID, "binding", l.BindingID)
		if !p.addEstimated(ctx, l, listed) {
			return
		}
	}
	p.reconciles.Add(1)
}

// goneLegs returns the legs of node held live, last seen before listed,
// that are not in has. The map form lets callers intersect two calls.
func (p *Pipeline) goneLegs(ctx context.Context, node string, has map[string]bool, listed time.Time) (map[string]*callbridge.LiveChannel, error) {
	live, err := p.cfg.Store.LiveChannels(ctx, node)
	if err != nil {
		p.log.Warn("cdr reconciliation: cannot read live channels", "node", node, "error", err)
		return nil, err
	}
	out := map[string]*callbridge.LiveChannel{}
	for _, l := range live {
		if !has[l.UUID] && l.SeenAt.Before(listed) {
			out[l.UUID] = l
		}
	}
	return out, nil
}

// sweeper runs the sweep every SweepInterval until ctx ends.
func (p *Pipeline) sweeper(ctx context.Context) {
	t := time.NewTicker(p.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			p.Sweep(ctx)
		case <-ctx.Done():
			return
		}
	}
}

// Sweep closes legs past their maximum duration that their node no longer
// has (or whose node is not configured), and hangs up those it still has.
// It returns how many legs it closed.
func (p *Pipeline) Sweep(ctx context.Context) int {
	for _, c := range p.clients {
		if c.State() != esl.StateConnected {
			continue
		}
		if _, err := p.collectKept(ctx, c, keptGrace); err != nil {
			p.log.Warn("cdr sweep: cannot collect the records the node kept", "node", c.Name(), "error", err)
		}
	}
	now := p.now().UTC()
	over, err := p.cfg.Store.OverdueChannels(ctx, now, p.cfg.DefaultMaxDuration, p.cfg.SweepGrace, 1000)
	if err != nil {
		p.log.Warn("cdr sweep: cannot read live channels", "error", err)
		return 0
	}
	closed := 0
	for _, l := range over {
		if c := p.clients[l.Node]; c != nil {
			if c.State() != esl.StateConnected {
				continue // reconciled when it reconnects
			}
			exists, err := p.channelExists(ctx, c, l.UUID)
			if err != nil {
				p.log.Warn("cdr sweep: uuid_exists failed", "node", l.Node, "uuid", l.UUID, "error", err)
				continue
			}
			if exists {
				p.hangupOverdue(ctx, c, l)
				continue
			}
		}
		p.log.Warn("cdr sweep: closing a leg past its maximum duration", "node", l.Node, "uuid", l.UUID, "account", l.AccountID, "callback", l.CallbackID, "binding", l.BindingID)
		if !p.addEstimated(ctx, l, time.Time{}) {
			break
		}
		closed++
	}
	return closed
}

func (p *Pipeline) channelExists(ctx context.Context, c *esl.Client, id string) (bool, error) {
	cmd, err := freeswitch.UUIDExists(id)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := c.API(ctx, cmd)
	if err != nil {
		return false, err
	}
	return res == "true", nil
}

func (p *Pipeline) hangupOverdue(ctx context.Context, c *esl.Client, l *callbridge.LiveChannel) {
	cmd, err := freeswitch.UUIDKill(l.UUID, "ALLOTTED_TIMEOUT")
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.API(ctx, cmd); err != nil {
		p.log.Warn("cdr sweep: cannot hang up an overdue leg", "node", l.Node, "uuid", l.UUID, "error", err)
		return
	}
	p.log.Warn("cdr sweep: hung up a leg past its maximum duration", "node", l.Node, "uuid", l.UUID)
}

// addEstimated queues the estimated CDR of l, charged by its account's
// missing-hangup policy. goneAt, when not zero, is when the leg was found
// gone: under HangupEstimate it ends then, or at its maximum if sooner.
// It returns false, leaving l live for the next sweep, when the policy
// cannot be read or ctx ends.
func (p *Pipeline) addEstimated(ctx context.Context, l *callbridge.LiveChannel, goneAt time.Time) bool {
	policy := callbridge.HangupEstimate
	if p.cfg.Policies != nil && l.AccountID != "" {
		var err error
		if policy, err = p.cfg.Policies.MissingHangupPolicy(ctx, l.AccountID); err != nil {
			p.log.Warn("cdr sweep: cannot read the missing-hangup policy; the leg stays live until the next sweep",
				"uuid", l.UUID, "account", l.AccountID, "error", err)
			return false
		}
	}
	c := estimate(l, p.maxDuration(l), goneAt)
	if policy == callbridge.HangupMaxDuration {
		c = estimate(l, p.maxDuration(l), time.Time{})
		c.Flags |= callbridge.CDRMaxDuration
	}
	if !p.add(ctx, record{CDR: c}) {
		return false
	}
	p.estimated.Add(1)
	return true
}

func (p *Pipeline) maxDuration(l *callbridge.LiveChannel) time.Duration {
	if l.MaxMS > 0 {
		return time.Duration(l.MaxMS) * time.Millisecond
	}
	return p.cfg.DefaultMaxDuration
}

// estimate closes l: an answered leg is billed its maximum duration
// from its answer (or until goneAt, if sooner); an unanswered one ends at
// the same point and costs nothing.
func estimate(l *callbridge.LiveChannel, maxDur time.Duration, goneAt time.Time) *callbridge.CDR {
	from := l.StartAt
	if !l.AnswerAt.IsZero() {
		from = l.AnswerAt
	}
	end := from.Add(maxDur)
	if !goneAt.IsZero() && goneAt.Before(end) {
		end = goneAt
	}
	if end.Before(from) {
		end = from
	}
	c := &callbridge.CDR{
		UUID: l.UUID, OtherUUID: l.OtherUUID, Leg: l.Leg, AccountID: l.AccountID, CallbackID: l.CallbackID,
		BindingID: l.BindingID, Direction: l.Direction, Caller: l.Caller, Callee: l.Callee,
		Presented: l.Presented, Gateway: l.Gateway, Node: l.Node,
		StartAt: l.StartAt.UTC(), AnswerAt: l.AnswerAt.UTC(), EndAt: end.UTC(),
		DurationMS: max(end.Sub(l.StartAt).Milliseconds(), 0), HangupCause: estimatedCause,
		Flags: callbridge.CDREstimated, MaxMS: maxDur.Milliseconds(),
	}
	if l.AnswerAt.IsZero() {
		c.AnswerAt = time.Time{}
	} else {
		c.BillMS = end.Sub(l.AnswerAt).Milliseconds()
	}
	c.Disposition = callbridge.Disposition(c.HangupCause, c.Answered())
	return c
}

// destroyEvent is a CHANNEL_DESTROY, as spooled.
type destroyEvent struct {
	UUID string    `json:"uuid"`
	Node string    `json:"node"`
	At   time.Time `json:"at"`
	// Cause is the channel's hangup cause, "" when the event has none (a
	// channel that never started).
	Cause string `json:"cause,omitempty"`
	// Refused is set when FreeSWITCH refused to originate the leg (its
	// job answered -ERR): the channel never existed.
	Refused bool `json:"refused,omitempty"`
}

// refusalHold is how long a refused originate waits before its leg is
// closed, for the leg's own hangup events (a session that existed) to be
// written first.
const refusalHold = time.Second

// parseRefusal reads a BACKGROUND_JOB event: the leg of an originate
// whose job answered "-ERR <CAUSE>", or nil. When FreeSWITCH refuses a
// session (max-sessions, sessions-per-second, min-idle-cpu, a gateway that
// is down) the job's -ERR is all it sends: no channel event.
func parseRefusal(ev freeswitch.Event) *destroyEvent {
	if ev.Get("Job-Command") != "originate" {
		return nil
	}
	cause, ok := strings.CutPrefix(strings.TrimSpace(ev.Body), "-ERR ")
	if !ok || !isCauseName(cause) {
		return nil
	}
	arg := ev.Get("Job-Command-Arg")
	i := strings.Index(arg, "origination_uuid=")
	if i < 0 {
		return nil
	}
	id := arg[i+len("origination_uuid="):]
	if len(id) < 36 || !callbridge.IsUUID(strings.ToLower(id[:36])) {
		return nil
	}
	at := ev.Time()
	if at.IsZero() {
		at = ev.Received
	}
	return &destroyEvent{UUID: strings.ToLower(id[:36]), Node: nodeName(ev), At: at.UTC(), Cause: cause, Refused: true}
}

// refuser closes refused legs refusalHold after their refusal (the job's
// -ERR, or a CHANNEL_DESTROY in state CS_NONE, which has no cause and
// gives way to the job's), until ctx ends.
func (p *Pipeline) refuser(ctx context.Context) {
	type pending struct {
		d   *destroyEvent
		due time.Time
	}
	var queue []pending
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var wake <-chan time.Time
		if len(queue) > 0 {
			timer.Reset(time.Until(queue[0].due))
			wake = timer.C
		}
		select {
		case d := <-p.refusals:
			queue = append(queue, pending{d, time.Now().Add(refusalHold)})
		case <-wake:
			for len(queue) > 0 && !time.Now().Before(queue[0].due) {
				d := queue[0].d
				queue = queue[1:]
				if d.Cause == "" && slices.ContainsFunc(queue, func(q pending) bool { return q.d.UUID == d.UUID }) {
					continue // the job's -ERR, queued after the destroy, has the cause
				}
				if !p.add(ctx, record{Destroyed: d}) {
					return
				}
				p.refused.Add(1)
			}
		case <-ctx.Done():
			return
		}
	}
}

// parseDestroy reads a CHANNEL_DESTROY event.
func parseDestroy(ev freeswitch.Event) (*destroyEvent, error) {
	id := strings.ToLower(ev.Get("Unique-ID"))
	if !callbridge.IsUUID(id) {
		return nil, errors.New("cdr: destroy event without a valid Unique-ID")
	}
	at := ev.Time()
	if at.IsZero() {
		at = ev.Received
	}
	// A channel destroyed in state CS_NONE never existed: FreeSWITCH
	// refused it at originate (an unknown sofia profile).
	return &destroyEvent{UUID: id, Node: nodeName(ev), At: at.UTC(),
		Cause:   sanitize(firstNonEmpty(ev.Get("Hangup-Cause"), ev.Var("hangup_cause"))),
		Refused: ev.Get("Channel-State") == "CS_NONE"}, nil
}

// closeDestroyed returns the priced CDRs of the destroyed channels still
// in live_channels whose CDR is not among cdrs (the batch being written).
// Batches are written in event order, so a CHANNEL_HANGUP_COMPLETE that
// came before the CHANNEL_DESTROY has already removed its leg.
//
// A refusal closes only a leg the node never created. An originate job
// can answer -ERR for a channel that goes on: when uuid_bridge takes an
// answered leg before FreeSWITCH's originate of it has returned, the
// originate gives up with ORIGINATOR_CANCEL and the leg talks on, bridged.
// A leg with channel events (answered in live_channels, or with an update
// in this very batch, live holding the batch's updates) was created; its
// own hangup, or the reconciliation, makes its CDR.
func (p *Pipeline) closeDestroyed(ctx context.Context, destroyed []*destroyEvent, cdrs []*callbridge.CDR, live []*callbridge.LiveChannel) ([]*callbridge.CDR, error) {
	if len(destroyed) == 0 {
		return nil, nil
	}
	have := make(map[string]bool, len(cdrs))
	for _, c := range cdrs {
		have[c.UUID] = true
	}
	created := make(map[string]bool, len(live))
	for _, l := range live {
		created[l.UUID] = true
	}
	byUUID := make(map[string]*destroyEvent, len(destroyed))
	ids := make([]string, 0, len(destroyed))
	for _, d := range destroyed {
		if !have[d.UUID] && byUUID[d.UUID] == nil {
			byUUID[d.UUID] = d
			ids = append(ids, d.UUID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := p.cfg.Store.LiveChannelsByUUID(ctx, ids)
	if err != nil {
		return nil, err
	}
	var out []*callbridge.CDR
	for _, l := range rows {
		d := byUUID[l.UUID]
		if d.Refused && (created[l.UUID] || !l.AnswerAt.IsZero()) {
			p.log.Warn("cdr: an originate failed for a leg the node created; its own hangup makes its CDR",
				"node", l.Node, "uuid", l.UUID, "cause", d.Cause, "callback", l.CallbackID)
			continue
		}
		c := fromDestroy(l, d, p.maxDuration(l))
		if err := p.cfg.Pricer.Price(ctx, c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// fromDestroy closes l at its destroy time d.At (or at its maximum
// duration, if sooner). An unanswered leg with a known cause is exact; an
// answered one, or one without a cause, is flagged estimated.
func fromDestroy(l *callbridge.LiveChannel, d *destroyEvent, maxDur time.Duration) *callbridge.CDR {
	c := estimate(l, maxDur, d.At)
	if d.Refused {
		// Refused at originate: the channel never existed, so it lasted
		// nothing, from its refusal.
		c.StartAt, c.AnswerAt, c.EndAt, c.DurationMS, c.BillMS = d.At, time.Time{}, d.At, 0, 0
	}
	if d.Cause != "" {
		c.HangupCause = d.Cause
		if !c.Answered() {
			c.Flags &^= callbridge.CDREstimated
		}
	}
	c.Disposition = callbridge.Disposition(c.HangupCause, c.Answered())
	return c
}
