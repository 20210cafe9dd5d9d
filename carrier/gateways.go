// Package carrier keeps the live state of the carrier gateways outbound
// legs leave through: what each FreeSWITCH node says of every gateway
// (sofia's UP or DOWN, polled and followed over ESL: Watch), each
// gateway's caps on concurrent calls and calls per second counted across
// controllers (through a Slots store: PostgreSQL), and each gateway's
// circuit breaker. Gateways is the HealthSource route resolution reads,
// and the place every attempt is claimed (Begin) and ended (End).
//
// It decides nothing about routes (package routing does) and places no
// call; it reports to metrics through hooks and imports no metrics
// library.
package carrier

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"callbridge/routing"
)

// Slots counts the calls through each gateway for every controller
// (postgres.GatewaySlots). Claims through one gateway must be serialised
// by the store, so that two controllers never both take its last slot.
type Slots interface {
	// Claim takes a slot through gateway for holder, leased for lease,
	// when the gateway is under l (any load with force), answering its
	// id, routing.ReasonOK, ReasonAtCapacity or ReasonCPSLimit, and the
	// gateway's load after the claim.
	Claim(ctx context.Context, gateway, holder string, l routing.Limits, lease time.Duration, force bool) (int64, routing.Reason, routing.Load, error)
	// Renew extends the leases of ids that have not ended and returns
	// those it extended.
	Renew(ctx context.Context, ids []int64, lease time.Duration) ([]int64, error)
	// Release ends the slots ids.
	Release(ctx context.Context, ids []int64) error
	// Loads returns every gateway's load.
	Loads(ctx context.Context) ([]routing.Load, error)
}

// Config configures Gateways.
type Config struct {
	// Breaker configures every gateway's circuit breaker
	// (CALLBRIDGE_BREAKER_FAILURES, CALLBRIDGE_BREAKER_COOLDOWN).
	Breaker routing.BreakerConfig
	// Limits are the gateways' caps by name (CALLBRIDGE_GATEWAY_LIMITS);
	// a gateway without an entry is not capped.
	Limits map[string]routing.Limits
	// Slots counts capped gateways' calls across controllers; nil counts
	// this process's calls only. While it fails, each process holds the
	// caps for its own calls, and the failure is logged.
	Slots Slots
	// Owner names this controller in the slots it holds (with a random
	// suffix per start, so that a restarted controller never renews its
	// previous life's slots).
	Owner string
	// Lease is how long a slot counts without being renewed: how long
	// a dead controller's calls keep counting. Run renews every Lease/6.
	// 30 s when zero.
	Lease time.Duration
	// PollInterval is how often Watch asks each node for its gateways'
	// state (CALLBRIDGE_GATEWAY_POLL_INTERVAL); 10 s when zero.
	PollInterval time.Duration
	// OnRefused, when set, is told of every attempt Begin refused and
	// why. It must not block.
	OnRefused func(gateway string, r routing.Reason)
	// Logger logs slot failures and state changes; nil discards.
	Logger *slog.Logger
}

// Gateways is the live view of the carrier gateways for this process,
// shared with the other controllers through Slots. It implements
// routing.HealthSource. It is safe for concurrent use.
type Gateways struct {
	cfg    Config
	holder string
	log    *slog.Logger
	local  routing.Gateways
	wake   chan struct{}

	mu      sync.Mutex
	names   map[string]bool                          // every gateway heard of
	nodes   map[string]map[string]routing.SofiaState // node -> gateway -> state
	loads   map[string]load                          // gateway -> last shared count
	held    map[string][]int64                       // gateway -> slots held
	release []int64                                  // slots to release
	failing bool                                     // the last Slots call failed
}

// load is a gateway's shared count as last read, at when.
type load struct {
	routing.Load
	at time.Time
}

// New returns Gateways configured by cfg.
func New(cfg Config) *Gateways {
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var suffix [6]byte
	rand.Read(suffix[:])
	owner := cfg.Owner
	if owner == "" {
		owner = "callbridge"
	}
	g := &Gateways{
		cfg: cfg, holder: owner + "/" + hex.EncodeToString(suffix[:]), log: log, wake: make(chan struct{}, 1),
		names: map[string]bool{}, nodes: map[string]map[string]routing.SofiaState{},
		loads: map[string]load{}, held: map[string][]int64{},
	}
	g.local.Breaker = cfg.Breaker
	for name, l := range cfg.Limits {
		g.local.SetLimits(name, l)
		g.names[name] = true
	}
	return g
}

// Holder returns the name this process's slots carry.
func (g *Gateways) Holder() string { return g.holder }

// Health implements routing.HealthSource: the switch's state of the
// gateway (combined over the nodes: SetNode), its breaker, and its calls
// across controllers as last counted (by this process's last claim
// through it or Run's last refresh, less the calls this process ended
// since), with its caps.
func (g *Gateways) Health(gateway string, now time.Time) routing.Health {
	h := g.local.Health(gateway, now)
	if g.cfg.Slots == nil {
		return h
	}
	g.mu.Lock()
	l, ok := g.loads[gateway]
	g.mu.Unlock()
	if ok {
		h.Active = max(h.Active, l.Active)
		if max := g.cfg.Limits[gateway].MaxCPS; max > 0 && l.Started >= max && now.Sub(l.at) < time.Second {
			h.CPSFull = true
		}
	}
	return h
}

// Begin claims an attempt through gateway at now, as it is dialled. It
// answers routing.ReasonOK or ReasonProbe when the attempt may go, and
// counts it then: the caller must End it. Otherwise it answers why not
// (the switch reports the gateway down, its breaker is open or probing,
// it is at a cap across controllers) and counts nothing.
//
// For a capped gateway Begin claims a slot in Slots: one round trip to
// the database. When that fails, the caps hold for this process's calls
// alone until it works again.
func (g *Gateways) Begin(ctx context.Context, gateway string, now time.Time) routing.Reason {
	g.note(gateway)
	if r := g.local.Health(gateway, now).Reason(); !r.Kept() {
		return g.refused(gateway, r)
	}
	var slot int64
	if l := g.cfg.Limits[gateway]; g.cfg.Slots != nil && (l.MaxActive > 0 || l.MaxCPS > 0) {
		id, r, ld, err := g.cfg.Slots.Claim(ctx, gateway, g.holder, l, g.cfg.Lease, false)
		g.slotsFailed(err)
		if err == nil {
			g.mu.Lock()
			g.loads[gateway] = load{ld, now}
			g.mu.Unlock()
			if !r.Kept() {
				return g.refused(gateway, r)
			}
			slot = id
		}
	}
	r := g.local.Begin(gateway, now)
	g.mu.Lock()
	defer g.mu.Unlock()
	if !r.Kept() {
		if slot != 0 {
			g.releaseLocked(gateway, slot)
		}
		if f := g.cfg.OnRefused; f != nil {
			f(gateway, r)
		}
		return r
	}
	if slot != 0 {
		g.held[gateway] = append(g.held[gateway], slot)
	}
	return r
}

func (g *Gateways) refused(gateway string, r routing.Reason) routing.Reason {
	if f := g.cfg.OnRefused; f != nil {
		f(gateway, r)
	}
	return r
}

// End ends an attempt Begin counted, at now: failed is true when the
// carrier could not carry the call (routing.Policy.Classify said
// Failover), which counts towards opening the gateway's breaker;
// anything else closes it. It does not block: the slot is released in
// the database by Run, at once.
func (g *Gateways) End(gateway string, now time.Time, failed bool) {
	g.local.End(gateway, now, failed)
	g.endSlot(gateway)
}

// Release ends an attempt Begin counted whose end says nothing of the
// carrier (the node refused the session, or the leg was lost with its
// node): like End, but the gateway's breaker is not told.
func (g *Gateways) Release(gateway string) {
	g.local.Unhold(gateway)
	g.endSlot(gateway)
}

// endSlot takes an ended attempt off gateway's shared count and queues
// the oldest slot this process holds through it for release.
func (g *Gateways) endSlot(gateway string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if l, ok := g.loads[gateway]; ok && l.Active > 0 {
		l.Active--
		g.loads[gateway] = l
	}
	held := g.held[gateway]
	if len(held) == 0 {
		return
	}
	g.releaseLocked(gateway, held[0])
}

// Record feeds gateway's breaker with how an attempt this process did
// not Begin ended, as its CDR says: a binding call's attempt, which
// FreeSWITCH dials from the dialplan, or a callback leg another
// controller placed (routing.Gateways.Record). Fed with every attempt of
// the cluster that way, every controller's breaker opens and closes on
// the same outcomes. Its calls and slots do not change.
func (g *Gateways) Record(gateway string, now time.Time, failed bool) {
	g.note(gateway)
	g.local.Record(gateway, now, failed)
}

// Hold counts an attempt through gateway that the switch placed without
// Begin (a binding call's leg, which FreeSWITCH dials from the dialplan)
// from now, as it is seen: for a capped gateway it claims a slot in Slots
// with force, so that it counts even over the caps (the call is already
// placed) and Begin of every controller sees it. It returns the slot
// (0 when none was claimed: an uncapped gateway, no Slots, or Slots
// failing, when the call counts for this process alone), which the caller
// hands to Unhold exactly once, when the leg hangs up. The breaker is
// left alone: Record feeds it from the leg's CDR.
func (g *Gateways) Hold(ctx context.Context, gateway string, now time.Time) int64 {
	g.note(gateway)
	var slot int64
	if l := g.cfg.Limits[gateway]; g.cfg.Slots != nil && (l.MaxActive > 0 || l.MaxCPS > 0) {
		id, _, ld, err := g.cfg.Slots.Claim(ctx, gateway, g.holder, l, g.cfg.Lease, true)
		g.slotsFailed(err)
		if err == nil {
			slot = id
			g.mu.Lock()
			g.loads[gateway] = load{ld, now}
			g.mu.Unlock()
		}
	}
	g.local.Hold(gateway, now)
	if slot != 0 {
		g.mu.Lock()
		g.held[gateway] = append(g.held[gateway], slot)
		g.mu.Unlock()
	}
	return slot
}

// Unhold ends an attempt Hold counted, with the slot Hold returned. It
// does not block: Run releases the slot in the database at once.
func (g *Gateways) Unhold(gateway string, slot int64) {
	g.local.Unhold(gateway)
	g.mu.Lock()
	defer g.mu.Unlock()
	if l, ok := g.loads[gateway]; ok && l.Active > 0 {
		l.Active--
		g.loads[gateway] = l
	}
	if slot == 0 {
		return
	}
	// A gateway's slots are alike: End releases the oldest, which may be
	// this one; then this releases the oldest instead.
	held := g.held[gateway]
	if !slices.Contains(held, slot) {
		if len(held) == 0 {
			return
		}
		slot = held[0]
	}
	g.releaseLocked(gateway, slot)
}

// releaseLocked drops slot from gateway's held slots and queues it for
// release. g.mu must be held.
func (g *Gateways) releaseLocked(gateway string, slot int64) {
	held := g.held[gateway]
	if i := slices.Index(held, slot); i >= 0 {
		g.held[gateway] = slices.Delete(held, i, i+1)
	}
	g.release = append(g.release, slot)
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// slotsFailed logs a change between a working and a failing Slots.
func (g *Gateways) slotsFailed(err error) {
	g.mu.Lock()
	was := g.failing
	g.failing = err != nil
	g.mu.Unlock()
	switch {
	case err != nil && !was:
		g.log.Error("carrier: gateway caps count this controller's calls only: the shared count failed", "error", err)
	case err == nil && was:
		g.log.Info("carrier: gateway caps are shared again")
	}
}

// note remembers a gateway's name for Snapshot.
func (g *Gateways) note(gateway string) {
	g.mu.Lock()
	g.names[gateway] = true
	g.mu.Unlock()
}

// Run keeps the slots this process holds alive until ctx ends: it
// releases ended ones at once (retrying those that failed), renews the
// leases of the others every Lease/6 and reads every gateway's shared
// load then. On its end it releases what it still holds. Without Slots it
// returns when ctx ends.
func (g *Gateways) Run(ctx context.Context) error {
	if g.cfg.Slots == nil {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(g.cfg.Lease / 6)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			g.mu.Lock()
			for gw, ids := range g.held {
				g.release = append(g.release, ids...)
				delete(g.held, gw)
			}
			g.mu.Unlock()
			end, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			g.flush(end)
			cancel()
			return nil
		case <-g.wake:
			g.flush(ctx)
		case <-t.C:
			g.flush(ctx)
			g.renew(ctx)
		}
	}
}

// flush releases the queued slots; on failure they stay queued.
func (g *Gateways) flush(ctx context.Context) {
	g.mu.Lock()
	ids := g.release
	g.release = nil
	g.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	err := g.cfg.Slots.Release(ctx, ids)
	g.slotsFailed(err)
	if err != nil {
		g.mu.Lock()
		g.release = append(ids, g.release...)
		g.mu.Unlock()
	}
}

// renew extends the held slots' leases and reads the shared loads.
func (g *Gateways) renew(ctx context.Context) {
	g.mu.Lock()
	var ids []int64
	for _, h := range g.held {
		ids = append(ids, h...)
	}
	g.mu.Unlock()
	kept, err := g.cfg.Slots.Renew(ctx, ids, g.cfg.Lease)
	g.slotsFailed(err)
	if err == nil && len(kept) < len(ids) {
		// A slot whose lease ended before we renewed it (the database was
		// out of reach longer than a lease) no longer counts: its call
		// goes on uncounted. Forget it rather than renew it forever.
		g.mu.Lock()
		lost := 0
		for gw, h := range g.held {
			n := len(h)
			h = slices.DeleteFunc(h, func(id int64) bool { return !slices.Contains(kept, id) && slices.Contains(ids, id) })
			lost += n - len(h)
			g.held[gw] = h
		}
		g.mu.Unlock()
		if lost > 0 {
			g.log.Warn("carrier: gateway slots lost: their leases ended before they were renewed", "slots", lost)
		}
	}
	loads, err := g.cfg.Slots.Loads(ctx)
	g.slotsFailed(err)
	if err != nil {
		return
	}
	now := time.Now()
	g.mu.Lock()
	clear(g.loads)
	for _, l := range loads {
		g.loads[l.Gateway] = load{l, now}
	}
	g.mu.Unlock()
}

// SetNode records what node reports of every gateway it has (a full
// "sofia xmlstatus gateway"): it replaces the node's previous report.
func (g *Gateways) SetNode(node string, states map[string]routing.SofiaState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.nodes[node]
	g.nodes[node] = maps.Clone(states)
	for gw := range old {
		g.combineLocked(gw)
	}
	for gw := range states {
		g.names[gw] = true
		g.combineLocked(gw)
	}
}

// SetNodeGateway records what node reports of one gateway (a
// sofia::gateway_state event).
func (g *Gateways) SetNodeGateway(node, gateway string, s routing.SofiaState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.nodes[node] == nil {
		g.nodes[node] = map[string]routing.SofiaState{}
	}
	g.nodes[node][gateway] = s
	g.names[gateway] = true
	g.combineLocked(gateway)
}

// ForgetNode drops what node reported: it is not connected, so it takes
// no calls and its view no longer counts.
func (g *Gateways) ForgetNode(node string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.nodes[node]
	delete(g.nodes, node)
	for gw := range old {
		g.combineLocked(gw)
	}
}

// combineLocked sets gateway's switch state from the nodes' reports: UP
// when any node has it UP (the pool may place the call there, and a node
// that refuses it with GATEWAY_DOWN fails over to the next gateway),
// DOWN when every node that has it reports it DOWN, unknown when no
// connected node has it (tried: the switch decides). g.mu must be held.
func (g *Gateways) combineLocked(gateway string) {
	s := routing.SofiaUnknown
	for _, states := range g.nodes {
		switch states[gateway] {
		case routing.SofiaUp:
			s = routing.SofiaUp
		case routing.SofiaDown:
			if s == routing.SofiaUnknown {
				s = routing.SofiaDown
			}
		}
	}
	g.local.SetSofia(gateway, s)
}

// Status is one gateway's state for metrics and operators.
type Status struct {
	// Gateway is its name.
	Gateway string
	// Health is its health now (Gateways.Health).
	routing.Health
	// MaxCPS is its calls-per-second cap; 0 for none.
	MaxCPS int
	// Nodes is what each connected node reports of it, by node name.
	Nodes map[string]routing.SofiaState
}

// Snapshot returns every gateway heard of (configured with limits,
// reported by a node, or claimed through), by name.
func (g *Gateways) Snapshot(now time.Time) []Status {
	g.mu.Lock()
	names := make([]string, 0, len(g.names))
	for n := range g.names {
		names = append(names, n)
	}
	nodes := map[string]map[string]routing.SofiaState{}
	for node, states := range g.nodes {
		for gw, s := range states {
			if nodes[gw] == nil {
				nodes[gw] = map[string]routing.SofiaState{}
			}
			nodes[gw][node] = s
		}
	}
	g.mu.Unlock()
	slices.Sort(names)
	out := make([]Status, 0, len(names))
	for _, n := range names {
		out = append(out, Status{Gateway: n, Health: g.Health(n, now), MaxCPS: g.cfg.Limits[n].MaxCPS, Nodes: nodes[n]})
	}
	return out
}
