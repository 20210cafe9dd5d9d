package callback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"callbridge"
	"callbridge/callback/flow"
	"callbridge/esl"
	"callbridge/esl/freeswitch"

	"github.com/google/uuid"
)

// start runs a worker for cb.
func (e *Engine) start(ctx context.Context, cb *callbridge.Callback, adopted bool) *run {
	r := &run{
		e: e, cb: cb, adopted: adopted,
		signal: make(chan struct{}, 1),
		placed: make(chan struct{}),
		log:    e.log.With("callback", cb.ID, "account", cb.AccountID),
	}
	r.claimed.Store(true)
	e.mu.Lock()
	e.runs[cb.ID] = r
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		r.loop(ctx)
		e.mu.Lock()
		// A callback queued again may already run under a newer worker,
		// which keeps its place.
		if e.runs[cb.ID] == r {
			delete(e.runs, cb.ID)
		}
		for _, l := range []*flow.Leg{&r.s.A, &r.s.B} {
			if l.UUID != "" && e.routes[l.UUID] == r {
				delete(e.routes, l.UUID)
			}
		}
		if len(e.runs) == 0 {
			close(e.idle)
			e.idle = make(chan struct{})
		}
		e.mu.Unlock()
		if r.release != nil {
			r.release()
		}
		r.endAttempts()
		r.releaseGrants(ctx)
	}()
	return r
}

func (e *Engine) route(uuid string, r *run) {
	e.mu.Lock()
	e.routes[uuid] = r
	e.mu.Unlock()
}

// unroute stops routing uuid's events to r.
func (e *Engine) unroute(uuid string, r *run) {
	e.mu.Lock()
	if e.routes[uuid] == r {
		delete(e.routes, uuid)
	}
	e.mu.Unlock()
}

// channelEvent is what a FreeSWITCH event of a leg's channel tells the
// machine.
func channelEvent(ev freeswitch.Event) flow.Event {
	at := ev.Time()
	if at.IsZero() {
		at = ev.Received
	}
	switch ev.Name {
	case freeswitch.ChannelProgress, freeswitch.ChannelProgressMedia:
		return flow.EventRinging{UUID: ev.UUID, At: at, Detail: string(ev.Name)}
	case freeswitch.ChannelAnswer:
		return flow.EventAnswered{UUID: ev.UUID, At: at}
	case freeswitch.ChannelPark:
		return flow.EventParked{UUID: ev.UUID}
	case freeswitch.ChannelHangup, freeswitch.ChannelHangupComplete:
		cause := ev.Get("Hangup-Cause")
		if cause == "" {
			cause = ev.Var("hangup_cause")
		}
		sip, err := strconv.Atoi(ev.Var("sip_term_status"))
		if err != nil || sip < 100 || sip > 699 {
			sip = 0
		}
		return flow.EventHangup{UUID: ev.UUID, At: at, Cause: cause, SIP: sip}
	}
	// CHANNEL_DESTROY of a leg to a bad profile comes alone: its cause
	// comes with the originate's -ERR.
	return flow.EventSeen{UUID: ev.UUID}
}

// run drives one callback: it feeds what happens to flow.Next and
// executes the actions flow.Next decides. All its fields are used only by
// its own goroutine, except the mailbox and client.
type run struct {
	e       *Engine
	cb      *callbridge.Callback
	log     *slog.Logger
	adopted bool
	claimed atomic.Bool // holds a lease to renew

	client  *esl.Client
	release func()
	placed  chan struct{} // closed once a pool slot is held or the run ended
	// held are the adopted legs whose attempts this run holds, to be
	// named as this controller's (callbridge.VarRouter) once attached.
	held    []string
	placedX bool

	mu     sync.Mutex
	mail   []flow.Event
	signal chan struct{}

	s flow.State
	// The timers of the machine's waits (nil: not running). The refused
	// legs' are re-armed by their own callbacks, under mu; retryGen tells
	// a callback whether its timer is still the current one.
	grace, bridgeWait, legsWait func() bool
	retry                       [2]func() bool // by leg, a then b
	retryGen                    [2]int
}

// setClient sets the node the worker uses; dispatchers read it under e.mu.
func (r *run) setClient(c *esl.Client) {
	r.e.mu.Lock()
	r.client = c
	r.e.mu.Unlock()
}

func (r *run) post(ev flow.Event) {
	r.mu.Lock()
	r.mail = append(r.mail, ev)
	r.mu.Unlock()
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

func (r *run) markPlaced() {
	if !r.placedX {
		r.placedX = true
		close(r.placed)
	}
}

// loop is the worker's life: events in, actions out, until the machine
// has nothing left to do.
func (r *run) loop(ctx context.Context) {
	defer r.markPlaced()
	defer r.stopTimers()
	r.s = flow.NewState(r.cb, flow.Config{
		Owner: r.e.cfg.Owner, PerLeg: r.e.cfg.CallAuthorizer != nil, Routed: r.e.cfg.Routes != nil,
		NodeGrace: r.e.cfg.NodeGrace, RefusedRetry: r.e.cfg.RefusedRetry,
		LegWait: r.e.cfg.LegWait, FailurePromptTime: r.e.cfg.FailurePromptTime,
		Prompts: r.e.cfg.Prompts, FailurePrompts: r.e.cfg.FailurePrompts, RecordDir: r.e.cfg.RecordDir,
	}, r.adopted, r.e.clock.Now())
	for _, l := range []*flow.Leg{&r.s.A, &r.s.B} {
		if l.UUID != "" {
			r.e.route(l.UUID, r) // an adopted call's legs
		}
	}
	if r.adopted && len(r.cb.Legs) == 0 && r.cb.Status == callbridge.CallbackCallingA {
		// Claimed but never dialled (its controller stopped before the
		// leg was recorded, which precedes the originate): A was never
		// called, so it is placed like a fresh claim, on any node.
		r.log.Info("adopted callback was never dialled; placing it", "node", r.cb.Node)
	}
	r.feed(ctx, flow.EventStart{})
	for !r.s.Finished() {
		select {
		case <-ctx.Done():
			return
		case <-r.signal:
		}
		r.mu.Lock()
		mail := r.mail
		r.mail = nil
		r.mu.Unlock()
		for _, ev := range mail {
			if _, ok := ev.(flow.EventLegsWaitOver); ok {
				r.log.Warn("callback legs did not report hangup in time", "a", r.s.A.UUID, "b", r.s.B.UUID)
			}
			r.feed(ctx, ev)
			if r.s.Finished() || ctx.Err() != nil {
				return
			}
		}
	}
}

// feed gives ev to the machine and executes its actions; their results
// are fed back before anything else happens to the callback.
func (r *run) feed(ctx context.Context, ev flow.Event) {
	queue := []flow.Event{ev}
	for len(queue) > 0 && !r.s.Finished() {
		ev, queue = queue[0], queue[1:]
		before := r.s
		var acts []flow.Action
		r.s, acts = flow.Next(r.s, ev, r.e.clock.Now())
		r.sync(&before)
		var results []flow.Event
		for _, a := range acts {
			res, ok := r.exec(ctx, a)
			if !ok {
				r.s, _ = flow.Next(r.s, flow.EventAbandon{}, r.e.clock.Now())
				return
			}
			if res != nil {
				results = append(results, res)
			}
		}
		queue = append(results, queue...)
	}
}

// sync brings the engine's view of the call in line with the machine's
// after a step: the legs' routes, the refused legs waiting, the sessions
// the nodes accepted, and the lease.
func (r *run) sync(before *flow.State) {
	now := r.e.clock.Now()
	for i, pair := range [][2]*flow.Leg{{&before.A, &r.s.A}, {&before.B, &r.s.B}} {
		was, is := pair[0], pair[1]
		if was.UUID != "" && was.UUID != is.UUID {
			r.e.unroute(was.UUID, r)
		}
		if is.UUID != "" && is.UUID != was.UUID {
			r.e.route(is.UUID, r)
		}
		if is.Session && !was.Session {
			r.e.pacer.onAccepted(now)
		}
		if is.Waiting != was.Waiting {
			if is.Waiting {
				r.e.waiting.Add(1)
			} else {
				r.e.waiting.Add(-1)
				r.stopRetry(i)
			}
		}
	}
	r.claimed.Store(!r.s.Ended())
}

// stopTimers stops the machine's waits and uncounts its waiting legs.
func (r *run) stopTimers() {
	for _, t := range []*func() bool{&r.grace, &r.bridgeWait, &r.legsWait} {
		r.stop(t)
	}
	r.stopRetry(0)
	r.stopRetry(1)
	for _, l := range []*flow.Leg{&r.s.A, &r.s.B} {
		if l.Waiting {
			l.Waiting = false
			r.e.waiting.Add(-1)
		}
	}
}

func (r *run) stop(t *func() bool) {
	if *t != nil {
		(*t)()
		*t = nil
	}
}

// stopRetry stops the timer of refused leg i.
func (r *run) stopRetry(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retryGen[i]++
	r.stop(&r.retry[i])
}

// connected reports whether the worker's node is connected.
func (r *run) connected() bool {
	r.e.mu.Lock()
	c := r.client
	r.e.mu.Unlock()
	return c != nil && c.State() == esl.StateConnected
}

// timer (re)starts t to post ev at at.
func (r *run) timer(t *func() bool, at time.Time, ev func() flow.Event) {
	r.stop(t)
	*t = r.e.clock.AfterFunc(at.Sub(r.e.clock.Now()), func() { r.post(ev()) })
}

// exec carries an action out and returns its result, if any; false when
// the call is abandoned (a step could not be saved, or ctx ended).
func (r *run) exec(ctx context.Context, a flow.Action) (flow.Event, bool) {
	switch a := a.(type) {
	case flow.ActionAcquire:
		return r.acquire(ctx)
	case flow.ActionAttach:
		return r.attach(ctx, a.Node)
	case flow.ActionAuthorize:
		return r.authorize(ctx, a)
	case flow.ActionRelease:
		r.releaseCall(ctx, a.Leg, a.UUID)
	case flow.ActionRoute:
		return r.routeLeg(a), true
	case flow.ActionOriginate:
		return r.originate(ctx, a)
	case flow.ActionSave:
		return nil, r.save(ctx, a.Update, a.BestEffort)
	case flow.ActionCheckCancel:
		c, err := r.e.store.CancelRequested(ctx, r.cb.ID)
		return flow.EventCancelChecked{Requested: err == nil && c}, true
	case flow.ActionRefused:
		r.refused(ctx, a)
	case flow.ActionOrphan:
		r.e.mu.Lock()
		r.e.orphans[a.Node] = append(r.e.orphans[a.Node], a.UUIDs...)
		r.e.mu.Unlock()
	case flow.ActionWake:
		r.e.Wake()
	case flow.ActionHoldAttempt:
		if r.e.cfg.Gateways != nil {
			r.e.cfg.Gateways.Hold(ctx, a.Gateway, r.e.clock.Now())
		}
		if r.e.cfg.Router != "" && a.UUID != "" {
			r.held = append(r.held, a.UUID)
		}
	case flow.ActionEndAttempt:
		if r.e.cfg.Gateways != nil {
			if a.Outcome == flow.AttemptUnknown {
				r.e.cfg.Gateways.Release(a.Gateway)
			} else {
				r.e.cfg.Gateways.End(a.Gateway, r.e.clock.Now(), a.Outcome == flow.AttemptFailed)
			}
		}
	case flow.ActionFailover:
		r.log.Info("carrier failover", "leg", a.Leg, "from", a.From, "to", a.To, "cause", a.Cause, "sip", a.SIP, "attempt", a.Try)
		if r.e.cfg.OnFailover != nil {
			r.e.cfg.OnFailover(a.From, a.To)
		}
	case flow.ActionWaitGrace, flow.ActionStopGrace, flow.ActionWaitBridge, flow.ActionWaitLegs:
		r.wait(a)
	default:
		return r.command(ctx, a)
	}
	return nil, ctx.Err() == nil
}

// wait starts or stops a timer of the machine.
func (r *run) wait(a flow.Action) {
	switch a := a.(type) {
	case flow.ActionWaitGrace:
		r.timer(&r.grace, a.At, func() flow.Event { return flow.EventGraceOver{Connected: r.connected()} })
	case flow.ActionStopGrace:
		r.stop(&r.grace)
	case flow.ActionWaitBridge:
		r.timer(&r.bridgeWait, a.At, func() flow.Event { return flow.EventBridgeWaitOver{} })
	case flow.ActionWaitLegs:
		r.timer(&r.legsWait, a.Until, func() flow.Event { return flow.EventLegsWaitOver{} })
	}
}

// command runs the commands an action sends the node.
func (r *run) command(ctx context.Context, a flow.Action) (flow.Event, bool) {
	switch a := a.(type) {
	case flow.ActionPrompt:
		cmd, err := freeswitch.UUIDBroadcast(a.UUID, a.Path, "aleg")
		if r.api(ctx, "prompt", cmd, err) == nil {
			return nil, r.save(ctx, callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventPrompt, Leg: callbridge.LegA, Detail: a.Name}}}, false)
		}
	case flow.ActionFailurePrompt:
		// FreeSWITCH hangs A up when the prompt has played; the
		// sched_hangup bounds a prompt that does not end (a tone).
		cmd, err := freeswitch.UUIDBroadcastThenHangup(a.UUID, a.Path, "NORMAL_CLEARING")
		played := false
		if r.api(ctx, "failure prompt", cmd, err) == nil {
			hc, err := freeswitch.SchedHangup(a.After, a.UUID, "NORMAL_CLEARING")
			played = r.api(ctx, "sched_hangup", hc, err) == nil
		}
		if !played {
			r.kill(ctx, a.UUID, a.KillCause)
		}
	case flow.ActionKill:
		if !r.kill(ctx, a.UUID, a.Cause) {
			return flow.EventKillFailed{UUID: a.UUID}, true
		}
	case flow.ActionSchedHangup:
		cmd, err := freeswitch.SchedHangup(a.After, a.UUID, "ALLOTTED_TIMEOUT")
		r.api(ctx, "sched_hangup", cmd, err)
	case flow.ActionBridge:
		return r.bridge(ctx, a), true
	case flow.ActionRecord:
		cmd, err := freeswitch.UUIDRecord(a.UUID, "start", a.Path)
		if r.api(ctx, "uuid_record", cmd, err) == nil {
			return nil, r.save(ctx, callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventRecording, Leg: callbridge.LegA, Detail: a.Path}}}, false)
		}
	case flow.ActionCheckLegs:
		var gone []string
		for _, id := range a.UUIDs {
			if exists, known := r.exists(ctx, id); known && !exists {
				gone = append(gone, id)
			}
		}
		return flow.EventLegsChecked{Gone: gone}, true
	case flow.ActionReconcile:
		return r.channels(ctx), true
	}
	return nil, ctx.Err() == nil
}

// bridge connects A and B.
func (r *run) bridge(ctx context.Context, a flow.ActionBridge) flow.Event {
	cmd, err := freeswitch.UUIDBridge(a.A, a.B)
	err = r.api(ctx, "uuid_bridge", cmd, err)
	var re *esl.ReplyError
	switch {
	case err == nil:
		return flow.EventBridged{}
	case errors.As(err, &re):
		return flow.EventBridgeFailed{Refused: true}
	case errors.Is(err, esl.ErrClosed):
		return flow.EventBridgeFailed{Closed: true}
	}
	return flow.EventBridgeFailed{}
}

// channels lists the node's channels for a reconciliation.
func (r *run) channels(ctx context.Context) flow.Event {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	chans, err := r.client.Channels(cctx)
	if err != nil {
		r.log.Warn("reconcile: show channels", "error", err)
		return flow.EventChannelsFailed{}
	}
	m := make(map[string]string, len(chans))
	for _, ch := range chans {
		m[ch.UUID] = ch.CallState
	}
	// The real switch lists its channels from its core database,
	// written in batches: a leg that hung up just before (while no
	// controller listened) may still be listed. uuid_exists asks the
	// session table itself.
	for _, l := range []*flow.Leg{&r.s.A, &r.s.B} {
		if _, listed := m[l.UUID]; listed && l.Live() {
			if exists, known := r.exists(ctx, l.UUID); known && !exists {
				delete(m, l.UUID)
			}
		}
	}
	return flow.EventChannels{Channels: m}
}

// acquire takes a pool slot, releasing the one held (a refused A is placed
// anew, maybe on another node), waiting for pacing; no node connected for
// NodeGrace fails the callback, and so does a DELETE meanwhile.
func (r *run) acquire(ctx context.Context) (flow.Event, bool) {
	if r.release != nil {
		r.release()
		r.release = nil
	}
	deadline := r.e.clock.Now().Add(r.e.cfg.NodeGrace)
	for {
		c, release, err := r.e.pool.Acquire(ctx)
		if err == nil {
			r.setClient(c)
			r.release = release
			r.markPlaced() // the claim loop may claim the next one now
			return flow.EventAcquired{Node: c.Name()}, r.save(ctx, callbridge.CallbackUpdate{Node: c.Name()}, false)
		}
		if ctx.Err() != nil {
			return nil, false
		}
		if callbridge.ErrorCode(err) == callbridge.EUNAVAILABLE && r.e.clock.Now().After(deadline) {
			return flow.EventNoNode{Detail: "no FreeSWITCH node connected"}, true
		}
		r.mu.Lock()
		cancelled := slices.ContainsFunc(r.mail, func(ev flow.Event) bool { _, ok := ev.(flow.EventCancel); return ok })
		r.mu.Unlock()
		if cancelled {
			return flow.EventCancel{}, true
		}
		if !r.e.sleep(ctx, 5*time.Millisecond) {
			return nil, false
		}
	}
}

// attach finds an adopted call's node and waits, up to NodeGrace, for
// its connection.
func (r *run) attach(ctx context.Context, node string) (flow.Event, bool) {
	c := r.e.pool.Lookup(node)
	if c == nil {
		return flow.EventNoNode{Detail: "node " + node + " is not configured"}, true
	}
	r.setClient(c)
	deadline := r.e.clock.Now().Add(r.e.cfg.NodeGrace)
	for c.State() != esl.StateConnected {
		if r.e.clock.Now().After(deadline) {
			return flow.EventNoNode{Detail: "node " + node + " unreachable after restart"}, true
		}
		if !r.e.sleep(ctx, 20*time.Millisecond) {
			return nil, false
		}
	}
	r.nameHeld(ctx)
	return flow.EventAcquired{Node: node}, true
}

// nameHeld names this controller in the callbridge.VarRouter of the
// adopted legs whose attempts it now holds: it ends them (Gateways.End,
// which feeds its breaker), so their CDRs must tell every controller's
// pipeline that this one counts them in the gateway metrics and that the
// others feed their breakers from the CDR. A leg gone meanwhile keeps the
// old name: its attempt reaches this controller's breaker twice (End and
// its CDR) and is counted by the controller that placed it, if it runs.
func (r *run) nameHeld(ctx context.Context) {
	for _, id := range r.held {
		cmd, err := freeswitch.UUIDSetVar(id, callbridge.VarRouter, r.e.cfg.Router)
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = r.client.API(cctx, cmd)
			cancel()
		}
		if err != nil {
			r.log.Debug("adopted leg not renamed", "uuid", id, "error", err)
		}
	}
	r.held = nil
}

// authorize asks the CallAuthorizer for the legs' grants. Both: A for Max
// plus B's ring time and B for Max, halving Max while the balance cannot
// pay for both legs (or pays A for no longer than B may ring), down to
// MinMaxDuration, tried last so that a balance that pays for it is never
// refused because halving jumped past it.
func (r *run) authorize(ctx context.Context, a flow.ActionAuthorize) (flow.Event, bool) {
	ua, ub := a.UUIDA, a.UUIDB
	if ua == "" {
		ua = uuid.NewString()
	}
	if ub == "" {
		ub = uuid.NewString()
	}
	if !a.Both {
		g, err := r.authorizeCall(ctx, ub, r.cb.B, a.Max)
		if err != nil {
			reason, detail := authFailure(callbridge.LegB, err)
			return flow.EventNotAuthorized{Reason: reason, Detail: detail}, true
		}
		return flow.EventAuthorized{B: &g.EventGrant}, true
	}
	for want := a.Max; ; want = max(want/2, callbridge.MinMaxDuration) {
		ga, err := r.authorizeCall(ctx, ua, r.cb.A, want+a.RingB)
		if err != nil {
			reason, detail := authFailure(callbridge.LegA, err)
			return flow.EventNotAuthorized{Reason: reason, Detail: detail}, true
		}
		gb, err := r.authorizeCall(ctx, ub, r.cb.B, want)
		if err == nil && ga.Reserved && ga.Grant <= a.RingB {
			// A could not even wait for B to answer: not worth a call.
			if gb.Reserved {
				r.releaseCall(ctx, callbridge.LegB, ub)
			}
			err = callbridge.Errorf(callbridge.ENOFUNDS, "insufficient_funds: the balance pays A for %s, not for B's ring time", ga.Grant)
		}
		if err == nil {
			if ga.Reserved || gb.Reserved {
				if !r.save(ctx, callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventAuthorized,
					Detail: fmt.Sprintf("prepaid: leg a %s (%d reserved), leg b %s (%d reserved)", ga.Grant, ga.amount, gb.Grant, gb.amount)}}}, false) {
					return nil, false
				}
			}
			return flow.EventAuthorized{A: &ga.EventGrant, B: &gb.EventGrant}, true
		}
		if ga.Reserved {
			r.releaseCall(ctx, callbridge.LegA, ua)
		}
		if callbridge.ErrorCode(err) != callbridge.ENOFUNDS || want <= callbridge.MinMaxDuration {
			reason, detail := authFailure(callbridge.LegB, err)
			return flow.EventNotAuthorized{Reason: reason, Detail: detail}, true
		}
	}
}

// grant is a leg's authorisation and the money it reserved.
type grant struct {
	flow.EventGrant
	amount int64 // reserved
}

// authorizeCall asks the CallAuthorizer for one leg, placed as id, for at
// most limit.
func (r *run) authorizeCall(ctx context.Context, id string, number callbridge.Number, limit time.Duration) (*grant, error) {
	g, err := r.e.cfg.CallAuthorizer(limit).AuthorizeCall(ctx, r.cb.AccountID, id, number)
	if err != nil {
		return nil, err
	}
	return &grant{EventGrant: flow.EventGrant{UUID: id, Grant: max(time.Duration(g.MaxMS)*time.Millisecond, time.Millisecond), Reserved: g.Prepaid},
		amount: g.Reserved}, nil
}

func authFailure(leg string, err error) (callbridge.FailReason, string) {
	reason := callbridge.ReasonInternal
	if callbridge.ErrorCode(err) == callbridge.ENOFUNDS {
		reason = callbridge.ReasonInsufficientFunds
	}
	return reason, "leg " + leg + " not authorised: " + callbridge.ErrorMessage(err)
}

// releaseCall drops the reservation held under id.
func (r *run) releaseCall(ctx context.Context, leg, id string) bool {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.e.cfg.CallAuthorizer(0).ReleaseCall(rctx, id); err != nil {
		r.log.Warn("release reservation", "leg", leg, "uuid", id, "error", err)
		return false
	}
	return true
}

// releaseGrants drops the reservations of legs that will produce no
// billable CDR: never placed, or down without being answered (their CDR,
// if any, costs nothing). Answered legs keep theirs until their CDR
// settles it; legs lost with their node keep theirs until it lapses.
func (r *run) releaseGrants(ctx context.Context) {
	if r.e.cfg.CallAuthorizer == nil {
		return
	}
	for _, l := range []*flow.Leg{&r.s.A, &r.s.B} {
		if !l.Reserved || l.Progress != flow.LegUnplaced && (!l.Down || l.Progress == flow.LegAnswered || l.Lost) {
			continue
		}
		r.releaseCall(ctx, l.Name, l.UUID)
	}
}

// originate records a leg, under a uuid of ours chosen now if need be,
// before the command is sent so a restart can find the leg, then places
// it.
func (r *run) originate(ctx context.Context, a flow.ActionOriginate) (flow.Event, bool) {
	id := a.UUID
	if id == "" {
		id = uuid.NewString()
	}
	gateway := r.e.cfg.Gateway
	if a.Gateway != "" {
		gateway = a.Gateway
		if g := r.e.cfg.Gateways; g != nil {
			if why := g.Begin(ctx, gateway, r.e.clock.Now()); !why.Kept() {
				return flow.EventGatewayRefused{Leg: a.Leg, Gateway: gateway, Reason: why.String()}, ctx.Err() == nil
			}
		}
	}
	r.e.route(id, r)
	o := freeswitch.Originate{
		UUID:              id,
		Endpoint:          freeswitch.Gateway(gateway, a.Number),
		CallerIDNumber:    a.CallerID,
		Timeout:           a.Timeout,
		HangupAfterAnswer: a.Cap,
		Vars: []freeswitch.Var{
			{Name: callbridge.VarCallbackID, Value: r.cb.ID},
			{Name: callbridge.VarLeg, Value: a.Leg},
			{Name: callbridge.VarAccount, Value: r.cb.AccountID},
			{Name: callbridge.VarMaxMS, Value: fmt.Sprint(a.Limit.Milliseconds())},
		},
	}
	created := callbridge.CallbackEvent{Type: callbridge.EventLegCreated, Leg: a.Leg, Detail: id}
	if a.Gateway != "" {
		o.Vars = append(o.Vars, freeswitch.Var{Name: callbridge.VarGateway, Value: gateway}, freeswitch.Var{Name: callbridge.VarAttempt, Value: strconv.Itoa(a.Try)})
		created.Gateway, created.GatewayAttempt = gateway, a.Try
		if r := r.e.cfg.Router; r != "" {
			o.Vars = append(o.Vars, freeswitch.Var{Name: callbridge.VarRouter, Value: r})
		}
	}
	events := []callbridge.CallbackEvent{created}
	if a.Cap > 0 {
		// FreeSWITCH times a prepaid leg's grant from the answer itself:
		// the controller may learn of the answer (and bridge) seconds
		// later under load, and a cap counted from then overruns it.
		events = append(events, callbridge.CallbackEvent{Type: callbridge.EventMaxDuration, Leg: a.Leg,
			Detail: "prepaid cap " + a.Cap.String() + " from answer"})
	}
	if !r.save(ctx, callbridge.CallbackUpdate{
		Status: a.Status, Detail: "calling B",
		Leg: &callbridge.LegUpdate{Leg: a.Leg, Attempt: r.cb.Attempt, UUID: id, Node: r.client.Name(), Number: a.Number, CallerID: a.CallerID,
			Gateway: a.Gateway, Replaces: a.Again},
		Events: events,
	}, false) {
		return nil, false
	}
	// The job's result comes as BACKGROUND_JOB through dispatch, in
	// order with the channel's events.
	_, err := r.client.Originate(ctx, o)
	if err != nil {
		var re *esl.ReplyError
		switch {
		case errors.As(err, &re):
			return flow.EventOriginateFailed{Leg: a.Leg, UUID: id, Cause: re.Cause(), Detail: err.Error()}, true
		case errors.Is(err, esl.ErrClosed):
			return flow.EventOriginateUnknown{Leg: a.Leg, UUID: id, Detail: err.Error()}, true
		}
		return flow.EventOriginateFailed{Leg: a.Leg, UUID: id, Detail: err.Error(), Lost: true}, true
	}
	return flow.EventPlaced{Leg: a.Leg, UUID: id}, true
}

// refused counts a leg the node refused before it rang, records it, and,
// unless the refusal is final, posts flow.EventRetryDue once the backoff
// has passed and the pacer lets the leg be placed again (or its deadline
// passed). Each refusal is in the history; it is not an attempt of the
// account's retry policy.
func (r *run) refused(ctx context.Context, a flow.ActionRefused) {
	now := r.e.clock.Now()
	r.e.refused.Add(1)
	r.e.pacer.onRefused(now)
	detail := fmt.Sprintf("node %s refused leg %s (%s) before it rang, %d time(s)", r.client.Name(), a.Leg, a.Cause, a.Refusals)
	if a.Final {
		detail += "; not placed again: past the deadline " + a.Deadline.UTC().Format(time.RFC3339)
	} else {
		wait := max(r.e.pacer.wait(now), a.Backoff)
		detail += fmt.Sprintf("; placing it again in %s", wait.Round(time.Millisecond))
		i := 0
		if a.Leg == callbridge.LegB {
			i = 1
		}
		r.mu.Lock()
		r.retryGen[i]++
		gen := r.retryGen[i]
		r.stop(&r.retry[i])
		var due func()
		due = func() {
			now := r.e.clock.Now()
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.retryGen[i] != gen {
				return // stopped meanwhile
			}
			if now.After(a.Deadline) || r.e.pacer.take(now, 1) > 0 {
				r.retry[i] = nil
				r.mail = append(r.mail, flow.EventRetryDue{Leg: a.Leg})
				select {
				case r.signal <- struct{}{}:
				default:
				}
				return
			}
			r.retry[i] = r.e.clock.AfterFunc(r.e.pacer.wait(now), due)
		}
		r.retry[i] = r.e.clock.AfterFunc(wait, due)
		r.mu.Unlock()
	}
	r.save(ctx, callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventRefused, Leg: a.Leg, Detail: detail}}}, true)
}

// save persists u for this callback, retrying briefly; it reports false
// when the call must be abandoned to whoever takes it over (a lost lease,
// or a database that stays away), unless bestEffort.
func (r *run) save(ctx context.Context, u callbridge.CallbackUpdate, bestEffort bool) bool {
	u.ID, u.Owner = r.cb.ID, r.e.cfg.Owner
	var err error
	for i := 0; i < 5; i++ {
		err = r.e.store.UpdateCallback(ctx, &u)
		if err == nil {
			if u.Status != "" {
				r.e.onStatus(u.Status, u.Reason)
				switch {
				case u.Status.Terminal():
					r.log.Info("callback ended", "status", u.Status, "reason", u.Reason, "detail", u.Detail)
				case u.Status == callbridge.CallbackQueued:
					r.log.Info("callback queued again", "detail", u.Detail, "attempt", r.cb.Attempt)
				}
			}
			return true
		}
		if callbridge.ErrorCode(err) == callbridge.ECONFLICT || ctx.Err() != nil {
			break
		}
		r.e.sleep(ctx, time.Duration(50<<i)*time.Millisecond)
	}
	if bestEffort {
		return true
	}
	r.log.Warn("callback abandoned: cannot persist", "error", err)
	return false
}

// kill hangs a channel up; false when the node did not (no such channel
// yet: the originate is still being set up).
func (r *run) kill(ctx context.Context, id, cause string) bool {
	cmd, err := freeswitch.UUIDKill(id, cause)
	if err != nil {
		return false
	}
	if _, err := r.client.API(ctx, cmd); err != nil {
		var re *esl.ReplyError
		if !errors.As(err, &re) {
			r.log.Warn("uuid_kill", "uuid", id, "error", err)
		}
		return false
	}
	return true
}

// api runs a command, recording a failure in the history.
func (r *run) api(ctx context.Context, what string, cmd freeswitch.Command, err error) error {
	if err == nil {
		_, err = r.client.API(ctx, cmd)
	}
	if err != nil {
		r.save(ctx, callbridge.CallbackUpdate{Events: []callbridge.CallbackEvent{{Type: callbridge.EventCommandError, Detail: what + ": " + err.Error()}}}, true)
	}
	return err
}

// exists asks the node whether channel id exists; known is false when
// the node could not tell.
func (r *run) exists(ctx context.Context, id string) (exists, known bool) {
	cmd, err := freeswitch.UUIDExists(id)
	if err != nil {
		return false, false
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := r.client.API(cctx, cmd)
	if err != nil {
		return false, false
	}
	return res == "true", true
}

// routeLeg resolves a leg's carrier route now, as it is about to be
// placed (or its adopted call taken over): the plan's time band, its
// gateways' buy prices and health are this moment's.
func (r *run) routeLeg(a flow.ActionRoute) flow.Event {
	rt, ok := r.e.cfg.Routes(r.cb.AccountID, a.Number, r.e.clock.Now())
	if !ok {
		return flow.EventRouted{Leg: a.Leg}
	}
	r.log.Debug("leg routed", "leg", a.Leg, "plan", rt.Plan, "gateways", rt.Gateways, "none", rt.NoneCause)
	return flow.EventRouted{Leg: a.Leg, Route: flowRoute(rt)}
}

// endAttempts ends the gateway attempts the machine left open (a leg
// lost with its node, or a worker stopped): the tracker's counts must
// not keep them.
func (r *run) endAttempts() {
	if r.e.cfg.Gateways == nil {
		return
	}
	for _, l := range []*flow.Leg{&r.s.A, &r.s.B} {
		if l.Route.Open {
			l.Route.Open = false
			r.e.cfg.Gateways.Release(l.Route.Gateway())
		}
	}
}
