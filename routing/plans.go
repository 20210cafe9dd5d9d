package routing

import (
	"sync"
	"time"

	"callbridge"
)

// Plans is a process's set of compiled route plans, found by id or as the
// plan that routes an account's calls, each with a Table that prices its
// gateways ahead of the calls. Whoever loads plans (postgres.PlanSync)
// keeps it current: Put a plan's new version, Remove a deleted plan,
// Replace everything after a full reload. Refresh rebuilds the tables
// that went stale; the engine calls it from a loop of its own, so a call
// never waits for a table to be built (it is resolved from the plan
// meanwhile, with the same answer).
//
// The zero value is an empty set that is not Ready. It is safe for
// concurrent use.
type Plans struct {
	mu       sync.RWMutex
	ready    bool
	seq      uint64
	byID     map[string]planEntry
	accounts map[string]string // account id → plan id
	def      string            // the default plan's id
}

// planEntry is a plan, its table (nil until built) and the write that put
// it there. A nil plan is a deleted one, as in rating.Registry.
type planEntry struct {
	plan  *Plan
	table *Table
	seq   uint64
}

// Ready reports whether the set was filled once by Replace.
func (ps *Plans) Ready() bool {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	return ps.ready
}

// Mark returns the set's write counter, to pass to Replace.
func (ps *Plans) Mark() uint64 {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	return ps.seq
}

// Plan returns the plan with the given id, or nil.
func (ps *Plans) Plan(id string) *Plan {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	return ps.byID[id].plan
}

// For returns the plan that routes the account's calls: its own, else the
// default plan; nil when there is neither. An empty accountID asks for
// the default plan.
func (ps *Plans) For(accountID string) *Plan {
	t, p := ps.resolver(accountID)
	if t != nil {
		return t.plan
	}
	return p
}

// resolver returns the account's plan and its table, if built.
func (ps *Plans) resolver(accountID string) (*Table, *Plan) {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	id, ok := ps.accounts[accountID]
	if !ok || accountID == "" {
		id = ps.def
	}
	e := ps.byID[id]
	return e.table, e.plan
}

// Resolve routes a call of the account to n at at with the account's plan
// (see For), through its table when built: Plan.Resolve's answer either
// way. It returns the plan used, nil when the account has none (dst is
// then reset, unmatched).
func (ps *Plans) Resolve(dst *Resolution, accountID string, n callbridge.Number, at time.Time, src Sources) *Plan {
	t, p := ps.resolver(accountID)
	switch {
	case t != nil:
		t.Resolve(dst, n, at, src)
		return t.plan
	case p != nil:
		p.Resolve(dst, n, at, src)
		return p
	}
	cands := dst.Candidates[:0]
	*dst = Resolution{Candidates: cands}
	return nil
}

// Put adds p or replaces the plan with p's id. It reports false, and keeps
// what it has, when it holds a newer version or the plan was removed.
func (ps *Plans) Put(p *Plan) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	old, ok := ps.byID[p.info.ID]
	if ok && (old.plan == nil || old.plan.info.Version > p.info.Version) {
		return false
	}
	if ps.byID == nil {
		ps.byID = map[string]planEntry{}
	}
	ps.seq++
	if old.plan != nil {
		ps.unindex(old.plan)
	}
	ps.byID[p.info.ID] = planEntry{plan: p, seq: ps.seq}
	ps.index(p)
	return true
}

// Remove drops the plan with the given id for good.
func (ps *Plans) Remove(id string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.byID == nil {
		ps.byID = map[string]planEntry{}
	}
	if old := ps.byID[id]; old.plan != nil {
		ps.unindex(old.plan)
	}
	ps.seq++
	ps.byID[id] = planEntry{seq: ps.seq}
}

// Replace makes plans the set's content, as a full reload read after mark
// found them, and makes the set Ready. What was Put or Removed after mark
// is kept instead of the snapshot's version. Tables of plans whose
// version did not change are kept.
func (ps *Plans) Replace(plans []*Plan, mark uint64) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	byID := make(map[string]planEntry, len(plans))
	for id, e := range ps.byID {
		if e.plan == nil || e.seq > mark {
			byID[id] = e
		}
	}
	ps.seq++
	for _, p := range plans {
		if e, ok := byID[p.info.ID]; ok && (e.plan == nil || e.plan.info.Version > p.info.Version) {
			continue
		}
		e := planEntry{plan: p, seq: ps.seq}
		if old := ps.byID[p.info.ID]; old.table != nil && old.plan == p {
			e.table = old.table
		}
		byID[p.info.ID] = e
	}
	ps.byID, ps.accounts, ps.def = byID, map[string]string{}, ""
	for _, e := range byID {
		if e.plan != nil {
			ps.index(e.plan)
		}
	}
	ps.ready = true
}

func (ps *Plans) index(p *Plan) {
	switch {
	case p.info.AccountID != "":
		if ps.accounts == nil {
			ps.accounts = map[string]string{}
		}
		ps.accounts[p.info.AccountID] = p.info.ID
	case p.info.Default:
		ps.def = p.info.ID
	}
}

func (ps *Plans) unindex(p *Plan) {
	if p.info.AccountID != "" && ps.accounts[p.info.AccountID] == p.info.ID {
		delete(ps.accounts, p.info.AccountID)
	}
	if ps.def == p.info.ID {
		ps.def = ""
	}
}

// RefreshMargin is how long before a table's Until Refresh rebuilds it.
const RefreshMargin = time.Minute

// Refresh builds the table of every plan that has none, or whose table
// is stale at now: prices was written since it was built, or its Until
// is less than RefreshMargin away. It builds them one at a time outside
// the lock (a 100,000-prefix plan over five 100,000-prefix decks takes
// seconds) and returns how many it built. A plan replaced meanwhile keeps
// its new version, without a table until the next Refresh.
func (ps *Plans) Refresh(prices PriceSource, now time.Time) int {
	type job struct {
		id   string
		plan *Plan
	}
	var jobs []job
	ps.mu.RLock()
	for id, e := range ps.byID {
		if e.plan != nil && (e.table == nil || e.table.stale(prices, now)) {
			jobs = append(jobs, job{id, e.plan})
		}
	}
	ps.mu.RUnlock()
	built := 0
	for _, j := range jobs {
		t := NewTable(j.plan, prices, now)
		ps.mu.Lock()
		if e := ps.byID[j.id]; e.plan == j.plan {
			e.table = t
			ps.byID[j.id] = e
			built++
		}
		ps.mu.Unlock()
	}
	return built
}

// stale reports whether the table should be rebuilt at now.
func (t *Table) stale(prices PriceSource, now time.Time) bool {
	if !t.until.IsZero() && !now.Add(RefreshMargin).Before(t.until) {
		return true
	}
	if now.Before(t.from) {
		return true
	}
	switch {
	case t.marked:
		return !t.unchanged(prices)
	case prices == nil && t.prices == nil:
		return false
	}
	return true // no way to tell that the decks did not change
}
