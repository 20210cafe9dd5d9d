package privacy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"callbridge"
	"callbridge/dialplan"
	"callbridge/esl"
	"callbridge/esl/freeswitch"
)

// Webhook event types of binding calls.
const (
	// EventBindingCallStarted: a call to X was routed by a binding and
	// its target is being called.
	EventBindingCallStarted = "binding.call.started"
	// EventBindingCallAnswered: the target answered.
	EventBindingCallAnswered = "binding.call.answered"
	// EventBindingCallEnded: the call is over (cause, durations, recording).
	EventBindingCallEnded = "binding.call.ended"
)

// BindingGetter returns one binding of an account (callbridge.BindingService
// implements it). ENOTFOUND.
type BindingGetter interface {
	Binding(ctx context.Context, accountID, id string) (*callbridge.Binding, error)
}

// CallsConfig configures Calls.
type CallsConfig struct {
	// Bindings gives the webhook URL and external id of a call's binding.
	Bindings BindingGetter
	// Webhooks is the durable outbox the call webhooks are written to.
	Webhooks callbridge.WebhookEnqueuer
	// RecordDir is dialplan.Options.RecordDir (empty means
	// dialplan.DefaultRecordDir): recordings are <RecordDir>/<binding
	// id>/<caller's leg uuid>.wav on the FreeSWITCH host.
	RecordDir string
	// EnqueueAttempts is how often a webhook is offered to the outbox
	// before it is given up and logged (default 5, with doubling pauses
	// from 100 ms).
	EnqueueAttempts int
	// Logger receives lost webhooks and reconciliation results.
	Logger *slog.Logger
	// Gateways, when set, counts every attempt leg a route plan's bridge
	// dialled (carrier.Gateways) against its gateway's caps from the
	// leg's first event until its hangup, so that binding calls hold
	// gateway slots as callback legs do.
	Gateways GatewayHolder
	// OnFailover, when set, is told of every binding call that went on
	// from gateway from to its next attempt (metrics.ObserveFailover).
	// It must not block.
	OnFailover func(from string)
	// Router is this controller's dialplan.Options.Router. Every
	// controller follows every node, so an attempt leg whose
	// callbridge.VarRouter names another controller holds no slot here
	// and its failover is not counted here: the router does both. Legs
	// without the variable (dialplans from before it) are held and
	// counted by every controller, as they always were.
	Router string
}

// GatewayHolder counts attempts the switch placed itself against their
// gateway's caps (carrier.Gateways implements it).
type GatewayHolder interface {
	// Hold counts an attempt through gateway, even over its caps, and
	// returns its slot, which Unhold is given exactly once.
	Hold(ctx context.Context, gateway string, now time.Time) int64
	// Unhold ends an attempt Hold counted.
	Unhold(gateway string, slot int64)
}

// Calls follows the calls that bindings route, from the ESL events
// of every node of a pool. It writes one webhook per call for each of
// start, answer and end to the outbox (key "binding:<id>", so a binding's
// events go out in order), and it knows which channels of each binding are
// up, so KillBindingCalls can cut them (it implements controller.Hangupper).
//
// Which events mark the webhooks (FreeSWITCH 1.10, an inbound call bridged
// by the dialplan of package dialplan): the caller's leg is created before
// the dialplan runs, so its CHANNEL_CREATE carries no binding; the bridged
// leg's CHANNEL_CREATE carries the exported callbridge variables and names
// the caller's leg in Other-Leg-Unique-ID. A call is identified by its
// caller's leg uuid. Started is sent on the first event of either leg that
// carries the binding; answered on the bridged leg's CHANNEL_ANSWER (the
// target picked up; the caller's leg is answered by the bridge right
// after), or on the caller's CHANNEL_BRIDGE if that answer was missed;
// ended on the caller's leg CHANNEL_HANGUP_COMPLETE, which carries the
// cause of the call (a failed bridge hangs the caller up with the target's
// cause), billmsec and mduration.
//
// Exactly once, as far as the outbox allows: each webhook is sent at most
// once per call by this process (state per call, and a memory of recently
// ended calls), and carries a deterministic event_id ("<call uuid>:<event
// type>") receivers can deduplicate on. The outbox has no unique key, so two
// controllers connected to the same node each enqueue their own copy, and a
// controller that dies between an event and its enqueue loses that webhook.
//
// It does not learn the binding of channels created while it was not
// connected: after a reconnection it forgets channels the node no longer
// has, but "show channels" does not list variables.
type Calls struct {
	pool *esl.Pool
	cfg  CallsConfig
	log  *slog.Logger

	mu sync.Mutex
	// live maps node → channel uuid → what is known of the leg.
	live map[string]map[string]*liveLeg
	// held maps node → attempt leg uuid → the gateway slot it holds
	// (CallsConfig.Gateways).
	held map[string]map[string]heldSlot
}

// heldSlot is a gateway slot an attempt leg holds.
type heldSlot struct {
	gateway string
	slot    int64
	seen    time.Time
}

// liveLeg is a channel of a binding call believed up.
type liveLeg struct {
	binding string
	call    string // the caller's leg uuid
	seen    time.Time
}

// bindingCall is the state of one call, owned by its node's reader.
type bindingCall struct {
	id        string // the caller's leg uuid
	bindingID string
	accountID string
	binding   *callbridge.Binding // nil until looked up
	started   bool
	answered  bool
	from      string
	x         string
	direction string
	seen      time.Time
	// attempts are the legs a route plan's sequential bridge dialled for
	// the call, in the order seen.
	attempts []callAttempt
}

// callAttempt is one leg a route plan's bridge dialled for a call.
type callAttempt struct {
	n        int
	uuid     string
	gateway  string
	cause    string
	answered bool
}

// attempt returns the call's attempt of leg uuid, added as number n
// through gateway (added reports that).
func (c *bindingCall) attempt(uuid string, n int, gateway string) (a *callAttempt, added bool) {
	for i := range c.attempts {
		if c.attempts[i].uuid == uuid {
			return &c.attempts[i], false
		}
	}
	c.attempts = append(c.attempts, callAttempt{n: n, uuid: uuid, gateway: gateway})
	return &c.attempts[len(c.attempts)-1], true
}

// previous returns the gateway of the call's attempt before number n,
// or "" when it was not seen.
func (c *bindingCall) previous(n int) string {
	for _, a := range c.attempts {
		if a.n == n-1 {
			return a.gateway
		}
	}
	return ""
}

// NewCalls returns a Calls over the pool's nodes; Run starts
// it.
func NewCalls(pool *esl.Pool, cfg CallsConfig) *Calls {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RecordDir == "" {
		cfg.RecordDir = dialplan.DefaultRecordDir
	}
	if cfg.EnqueueAttempts <= 0 {
		cfg.EnqueueAttempts = 5
	}
	return &Calls{pool: pool, cfg: cfg, log: cfg.Logger, live: map[string]map[string]*liveLeg{}, held: map[string]map[string]heldSlot{}}
}

// Run reads every node's events until ctx is done.
func (bc *Calls) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, c := range bc.pool.Clients() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bc.read(ctx, c)
		}()
	}
	wg.Wait()
	return nil
}

// KillBindingCalls implements controller.Hangupper: it sends uuid_kill for every
// channel of the binding it knows to be up, on its node, and returns how
// many calls it cut. A channel already gone is not an error. EUNAVAILABLE
// when a node holding one of them cannot be reached (the others are still
// cut).
func (bc *Calls) KillBindingCalls(ctx context.Context, bindingID string) (int, error) {
	type target struct{ node, uuid, call string }
	var targets []target
	bc.mu.Lock()
	for node, legs := range bc.live {
		for uuid, l := range legs {
			if l.binding == bindingID {
				targets = append(targets, target{node, uuid, l.call})
			}
		}
	}
	bc.mu.Unlock()
	cut := map[string]bool{}
	var failed []string
	for _, t := range targets {
		c := bc.pool.Lookup(t.node)
		cmd, err := freeswitch.UUIDKill(t.uuid, "NORMAL_CLEARING")
		if err != nil {
			continue // uuids come from events as FreeSWITCH sent them; a bad one cannot be killed
		}
		if c == nil {
			failed = append(failed, t.node)
			continue
		}
		_, err = c.API(ctx, cmd)
		var re *esl.ReplyError
		switch {
		case err == nil:
			cut[t.call] = true
		case errors.As(err, &re):
			// "-ERR No such channel!": it ended meanwhile.
			bc.forget(t.node, t.uuid)
		default:
			if ctx.Err() != nil {
				return len(cut), ctx.Err()
			}
			failed = append(failed, t.node)
		}
	}
	if len(failed) > 0 {
		return len(cut), callbridge.Errorf(callbridge.EUNAVAILABLE, "cut %d calls; FreeSWITCH node %s could not be reached", len(cut), failed[0])
	}
	return len(cut), nil
}

// LiveCalls returns the number of channels of a binding believed up.
func (bc *Calls) LiveCalls(bindingID string) int {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	n := 0
	for _, legs := range bc.live {
		for _, l := range legs {
			if l.binding == bindingID {
				n++
			}
		}
	}
	return n
}

// read consumes one node's events until ctx is done, resubscribing after
// an overflow.
func (bc *Calls) read(ctx context.Context, c *esl.Client) {
	calls := map[string]*bindingCall{}
	ended := newRecent(4096)
	// The slots of legs still held when the reader stops are released
	// by carrier.Gateways.Run as it stops (or their leases end).
	for ctx.Err() == nil {
		sub := c.Subscribe(0)
		for {
			ev, err := sub.Next(ctx)
			if err != nil {
				sub.Close()
				if errors.Is(err, esl.ErrOverflow) {
					bc.log.Error("binding calls: event subscription overflowed; webhooks of calls in progress may be lost", "node", c.Name())
					bc.reconcile(ctx, c, calls)
				}
				if errors.Is(err, esl.ErrClosed) && ctx.Err() == nil {
					<-ctx.Done()
				}
				break
			}
			if ev.Name == freeswitch.SocketConnected {
				bc.reconcile(ctx, c, calls)
				continue
			}
			bc.handle(ctx, ev, calls, ended)
		}
	}
}

// reconcile forgets the legs and calls of node c that FreeSWITCH no
// longer has (they ended while events were not reaching us). Calls
// forgotten this way get no "ended" webhook; that is logged.
func (bc *Calls) reconcile(ctx context.Context, c *esl.Client, calls map[string]*bindingCall) {
	listed := time.Now()
	chans, err := c.Channels(ctx)
	if err != nil {
		if ctx.Err() == nil {
			bc.log.Warn("binding calls: listing channels after reconnect", "node", c.Name(), "error", err)
		}
		return
	}
	has := make(map[string]bool, len(chans))
	for _, ch := range chans {
		has[ch.UUID] = true
	}
	bc.mu.Lock()
	for uuid, l := range bc.live[c.Name()] {
		if !has[uuid] && l.seen.Before(listed) {
			delete(bc.live[c.Name()], uuid)
		}
	}
	var gone []heldSlot
	for uuid, h := range bc.held[c.Name()] {
		if !has[uuid] && h.seen.Before(listed) {
			delete(bc.held[c.Name()], uuid)
			gone = append(gone, h)
		}
	}
	bc.mu.Unlock()
	// Attempt legs that hung up while events were not reaching us give
	// their gateway slots back now.
	for _, h := range gone {
		bc.cfg.Gateways.Unhold(h.gateway, h.slot)
	}
	// calls belongs to the reader, which is the caller.
	for id, call := range calls {
		if !has[id] && call.seen.Before(listed) {
			bc.log.Warn("binding calls: call ended while disconnected; no ended webhook", "node", c.Name(), "uuid", id, "binding", call.bindingID)
			delete(calls, id)
		}
	}
}

// handle applies one event.
func (bc *Calls) handle(ctx context.Context, ev freeswitch.Event, calls map[string]*bindingCall, ended *recent) {
	bindingID := ev.Var(callbridge.VarBindingID)
	if ev.UUID == "" || bindingID == "" || !callbridge.IsUUID(bindingID) || !callbridge.IsUUID(ev.UUID) {
		return
	}
	leg := ev.Var(callbridge.VarLeg)
	callID := ev.UUID
	if leg == "outbound" {
		callID = ev.Get("Other-Leg-Unique-ID")
		if !callbridge.IsUUID(callID) {
			callID = ev.UUID
		}
	} else if leg != "inbound" {
		return
	}
	terminal := ev.Name == freeswitch.ChannelHangup || ev.Name == freeswitch.ChannelHangupComplete || ev.Name == freeswitch.ChannelDestroy
	gateway := ""
	if leg == "outbound" && attemptNumber(ev.Var(callbridge.VarAttempt)) > 0 && callbridge.ValidateGateway(ev.Var(callbridge.VarGateway)) == nil {
		gateway = ev.Var(callbridge.VarGateway)
	}
	// Another controller routed this call: it holds the slots and counts
	// the failovers.
	mine := ev.Var(callbridge.VarRouter) == "" || ev.Var(callbridge.VarRouter) == bc.cfg.Router
	if gateway != "" && bc.cfg.Gateways != nil && mine {
		bc.holdSlot(ctx, ev, gateway, terminal)
	}
	if terminal {
		bc.forget(ev.Node, ev.UUID)
	} else {
		switch ev.Name {
		case freeswitch.ChannelCreate, freeswitch.ChannelProgress, freeswitch.ChannelProgressMedia, freeswitch.ChannelAnswer, freeswitch.ChannelBridge:
			bc.remember(ev.Node, ev.UUID, bindingID, callID)
			if callID != ev.UUID {
				bc.remember(ev.Node, callID, bindingID, callID)
			}
		}
	}
	if ended.has(callID) {
		return
	}
	hangup := leg == "inbound" && ev.Name == freeswitch.ChannelHangupComplete
	call := calls[callID]
	if call == nil {
		if terminal && !hangup {
			return // the tail of a leg whose call we never saw start
		}
		call = &bindingCall{id: callID, bindingID: bindingID, accountID: ev.Var(callbridge.VarAccount)}
		calls[callID] = call
	}
	call.seen = time.Now()
	if n := attemptNumber(ev.Var(callbridge.VarAttempt)); leg == "outbound" && n > 0 {
		a, added := call.attempt(ev.UUID, n, gateway)
		if from := call.previous(n); added && n > 1 && from != "" && bc.cfg.OnFailover != nil && mine {
			bc.cfg.OnFailover(from)
		}
		switch ev.Name {
		case freeswitch.ChannelAnswer:
			a.answered = true
		case freeswitch.ChannelHangupComplete:
			a.cause = ev.Get("Hangup-Cause")
		}
	}
	if call.x == "" {
		call.x = ev.Var(callbridge.VarX)
		call.direction = ev.Var(callbridge.VarDirection)
	}
	if call.from == "" {
		if leg == "inbound" {
			call.from = ev.Get("Caller-Caller-ID-Number")
		} else {
			call.from = ev.Get("Other-Leg-Caller-ID-Number")
		}
	}
	if !call.started {
		call.started = true
		bc.send(ctx, call, EventBindingCallStarted, ev, nil)
	}
	switch {
	case !call.answered && (leg == "outbound" && ev.Name == freeswitch.ChannelAnswer || leg == "inbound" && ev.Name == freeswitch.ChannelBridge):
		call.answered = true
		bc.send(ctx, call, EventBindingCallAnswered, ev, nil)
	case hangup:
		delete(calls, callID)
		ended.add(callID)
		bc.send(ctx, call, EventBindingCallEnded, ev, bc.endFields(call, ev))
	}
}

// endFields are the fields of the ended webhook.
func (bc *Calls) endFields(call *bindingCall, ev freeswitch.Event) map[string]any {
	billms, _ := ev.Int64("variable_billmsec")
	totalms, _ := ev.Int64("variable_mduration")
	f := map[string]any{
		"cause":       ev.Get("Hangup-Cause"),
		"answered":    call.answered || billms > 0,
		"duration_ms": billms,
		"total_ms":    totalms,
	}
	if d := ev.Var("sip_hangup_disposition"); d != "" {
		f["disposition"] = d
	}
	if len(call.attempts) > 0 {
		f["attempts"] = attemptFields(call, ev)
	}
	// The dialplan records with RECORD_ANSWER_REQ: a file exists only for
	// answered calls of recording bindings.
	if ev.Var("RECORD_ANSWER_REQ") == "true" && billms > 0 {
		rec := map[string]any{"file": bc.cfg.RecordDir + "/" + call.bindingID + "/" + call.id + ".wav"}
		if ms, ok := ev.Int64("variable_record_ms"); ok {
			rec["duration_ms"] = ms
		}
		f["recording"] = rec
	}
	return f
}

// send writes one webhook of call to the outbox, looking the binding up
// first if needed.
func (bc *Calls) send(ctx context.Context, call *bindingCall, typ string, ev freeswitch.Event, extra map[string]any) {
	at := ev.Time()
	if at.IsZero() {
		at = ev.Received
	}
	// Every controller following the node hears the call: the event id
	// makes the outbox keep one webhook of it.
	eventID := call.id + ":" + typ
	payload := map[string]any{
		"type":       typ,
		"event_id":   eventID,
		"binding_id": call.bindingID,
		"call_id":    call.id,
		"node":       ev.Node,
		"x":          call.x,
		"direction":  call.direction,
		"at":         at.UTC().Format(time.RFC3339Nano),
	}
	if call.from != "" {
		payload["from"] = call.from
	}
	for k, v := range extra {
		payload[k] = v
	}
	err := bc.retry(ctx, func() error {
		if call.binding == nil {
			b, err := bc.cfg.Bindings.Binding(ctx, call.accountID, call.bindingID)
			if err != nil {
				if callbridge.ErrorCode(err) == callbridge.ENOTFOUND {
					return errPermanent{err}
				}
				return err
			}
			call.binding = b
		}
		payload["external_id"] = call.binding.ExternalID
		return bc.cfg.Webhooks.EnqueueWebhook(ctx, call.binding.AccountID, call.binding.WebhookURL, typ, "binding:"+call.bindingID, eventID, payload)
	})
	if err != nil {
		bc.log.Error("binding calls: webhook lost", "type", typ, "binding", call.bindingID, "call", call.id, "error", err)
	}
}

// errPermanent marks an error retrying cannot fix.
type errPermanent struct{ error }

func (e errPermanent) Unwrap() error { return e.error }

// retry runs fn until it succeeds, fails permanently, ctx ends or the
// attempts run out.
func (bc *Calls) retry(ctx context.Context, fn func() error) error {
	pause := 100 * time.Millisecond
	var err error
	for i := 0; i < bc.cfg.EnqueueAttempts; i++ {
		if err = fn(); err == nil {
			return nil
		}
		var p errPermanent
		if errors.As(err, &p) || callbridge.ErrorCode(err) == callbridge.EINVALID {
			return err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
		pause *= 2
	}
	return fmt.Errorf("after %d attempts: %w", bc.cfg.EnqueueAttempts, err)
}

// holdSlot counts attempt leg ev.UUID through gateway against its caps
// from its first event that is not its end, and gives the slot back on
// the first event of its end (HANGUP, HANGUP_COMPLETE or DESTROY):
// exactly once per leg, as later events of its end find it released.
// A leg first seen ending is not counted.
func (bc *Calls) holdSlot(ctx context.Context, ev freeswitch.Event, gateway string, terminal bool) {
	bc.mu.Lock()
	legs := bc.held[ev.Node]
	if legs == nil {
		legs = map[string]heldSlot{}
		bc.held[ev.Node] = legs
	}
	h, held := legs[ev.UUID]
	switch {
	case terminal && held:
		delete(legs, ev.UUID)
		bc.mu.Unlock()
		bc.cfg.Gateways.Unhold(h.gateway, h.slot)
		return
	case terminal || held:
		if held {
			h.seen = time.Now()
			legs[ev.UUID] = h
		}
		bc.mu.Unlock()
		return
	}
	bc.mu.Unlock()
	at := ev.Time()
	if at.IsZero() {
		at = ev.Received
	}
	// Only this node's reader adds legs of the node: no other Hold of
	// this leg can run meanwhile.
	slot := bc.cfg.Gateways.Hold(ctx, gateway, at)
	bc.mu.Lock()
	legs[ev.UUID] = heldSlot{gateway: gateway, slot: slot, seen: time.Now()}
	bc.mu.Unlock()
}

// HeldSlots returns the number of attempt legs holding a gateway slot.
func (bc *Calls) HeldSlots() int {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	n := 0
	for _, legs := range bc.held {
		n += len(legs)
	}
	return n
}

func (bc *Calls) remember(node, uuid, binding, call string) {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	legs := bc.live[node]
	if legs == nil {
		legs = map[string]*liveLeg{}
		bc.live[node] = legs
	}
	legs[uuid] = &liveLeg{binding: binding, call: call, seen: time.Now()}
}

func (bc *Calls) forget(node, uuid string) {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	delete(bc.live[node], uuid)
}

// recent is a bounded set of the last n ids added.
type recent struct {
	set  map[string]bool
	ring []string
	next int
}

func newRecent(n int) *recent {
	return &recent{set: make(map[string]bool, n), ring: make([]string, n)}
}

func (r *recent) has(id string) bool { return r.set[id] }

func (r *recent) add(id string) {
	if old := r.ring[r.next]; old != "" {
		delete(r.set, old)
	}
	r.ring[r.next] = id
	r.set[id] = true
	r.next = (r.next + 1) % len(r.ring)
}

// attemptNumber reads callbridge.VarAttempt: 1 to 100, else 0.
func attemptNumber(s string) int {
	if n, err := strconv.Atoi(s); err == nil && n >= 1 && n <= 100 {
		return n
	}
	return 0
}

// attemptFields lists a call's attempts for its ended webhook, by attempt
// number: each with how it ended and whether it was answered (the one
// that connected). A leg whose hangup came after the caller's takes its
// cause from the caller's originate_causes (NONE there: the leg that was
// bridged, which ended with the call's own cause). Carrier gateways are
// the operator's business and are not named.
func attemptFields(call *bindingCall, ev freeswitch.Event) []map[string]any {
	tried := map[string]string{}
	for _, t := range freeswitch.ParseOriginateCauses(ev.Var("originate_causes")) {
		tried[t.UUID] = t.Cause
	}
	list := slices.Clone(call.attempts)
	slices.SortStableFunc(list, func(a, b callAttempt) int { return a.n - b.n })
	out := make([]map[string]any, 0, len(list))
	for _, a := range list {
		cause := a.cause
		if c := tried[a.uuid]; cause == "" && c != "" && c != "NONE" {
			cause = c
		}
		if cause == "" && (a.answered || tried[a.uuid] == "NONE") {
			cause = ev.Get("Hangup-Cause")
		}
		out = append(out, map[string]any{"attempt": a.n, "cause": cause, "answered": a.answered})
	}
	return out
}
