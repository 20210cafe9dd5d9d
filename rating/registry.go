package rating

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// Registry is a process's set of compiled rate decks: every deck of every
// account and carrier gateway, found by id or as the deck in force for an
// owner at a time. Quotes, CDR pricing and prepaid authorisation all read
// it, so a deck is compiled once per version and a lookup is a map access,
// never I/O. Whoever loads decks (package postgres) keeps it current:
// Put a deck's new version, Remove a deleted deck, Replace everything
// after a full reload. A new version replaces the old one in a single
// step, so a reader sees one version or the other, never a mix.
//
// The zero value is an empty registry that is not Ready. It is safe for
// concurrent use.
type Registry struct {
	mu    sync.RWMutex
	ready bool
	seq   uint64
	byID  map[string]regEntry
	// owners maps an owner (account id or gateway) to its decks in
	// ascending EffectiveFrom order.
	accounts map[string][]*Deck
	gateways map[string][]*Deck
}

// regEntry is a deck and the write that put it there. A nil deck is a
// deleted one: deck ids are never reused, so a deletion is final and a
// late Put of a version read before it must not bring the deck back.
type regEntry struct {
	deck *Deck
	seq  uint64
}

// Ready reports whether the registry was filled once by Replace. Before
// that a missing deck may only mean "not loaded yet".
func (r *Registry) Ready() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.ready
}

// Len returns the number of decks held, refused ones (RefusedDeck) not
// counted.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, e := range r.byID {
		if e.deck != nil && e.deck.refused == "" {
			n++
		}
	}
	return n
}

// Refused returns the terms of the decks held refused (RefusedDeck),
// ordered by id: decks in the database that price nothing.
func (r *Registry) Refused() []DeckInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []DeckInfo
	for _, e := range r.byID {
		if e.deck != nil && e.deck.refused != "" {
			out = append(out, e.deck.info)
		}
	}
	slices.SortFunc(out, func(a, b DeckInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Deck returns the deck with the given id, or nil (also when it is
// refused).
func (r *Registry) Deck(id string) *Deck {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return usable(r.byID[id].deck)
}

// Held returns the deck with the given id as held, refused
// (RefusedDeck) or not, or nil: for a loader that reuses what it holds.
func (r *Registry) Held(id string) *Deck {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byID[id].deck
}

// usable returns d, or nil for a refused deck.
func usable(d *Deck) *Deck {
	if d != nil && d.refused != "" {
		return nil
	}
	return d
}

// AccountDeck returns the account's deck in force at at: its deck with
// the latest EffectiveFrom not after at. It returns nil when there is
// none, or when that deck is refused (RefusedDeck): an older deck does
// not price in its place.
func (r *Registry) AccountDeck(accountID string, at time.Time) *Deck {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return inForce(r.accounts[accountID], at)
}

// AccountDeckHeld is AccountDeck, but it returns the deck in force even
// when it is refused, so that a caller can say why nothing prices.
func (r *Registry) AccountDeckHeld(accountID string, at time.Time) *Deck {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return heldInForce(r.accounts[accountID], at)
}

// GatewayDeck returns the carrier deck of a gateway in force at at, like
// AccountDeck.
func (r *Registry) GatewayDeck(gateway string, at time.Time) *Deck {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return inForce(r.gateways[gateway], at)
}

func inForce(decks []*Deck, at time.Time) *Deck { return usable(heldInForce(decks, at)) }

func heldInForce(decks []*Deck, at time.Time) *Deck {
	for i := len(decks) - 1; i >= 0; i-- {
		if !at.Before(decks[i].info.EffectiveFrom) {
			return decks[i]
		}
	}
	return nil
}

// Mark returns the registry's write counter, to pass to Replace: writes
// after the mark survive a Replace with a snapshot read after it.
func (r *Registry) Mark() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.seq
}

// Put adds d or replaces the deck with d's id. It reports false, and
// keeps what it has, when it holds a newer version of the deck or the
// deck was removed: a load that raced with a later change must not undo
// it.
func (r *Registry) Put(d *Deck) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.byID[d.info.ID]
	if ok && (old.deck == nil || old.deck.info.Version > d.info.Version) {
		return false
	}
	if r.byID == nil {
		r.byID = map[string]regEntry{}
	}
	r.seq++
	r.byID[d.info.ID] = regEntry{deck: d, seq: r.seq}
	if old.deck != nil {
		r.unindex(old.deck)
	}
	r.index(d)
	return true
}

// Remove drops the deck with the given id for good.
func (r *Registry) Remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID == nil {
		r.byID = map[string]regEntry{}
	}
	if old := r.byID[id]; old.deck != nil {
		r.unindex(old.deck)
	}
	r.seq++
	r.byID[id] = regEntry{seq: r.seq}
}

// Replace makes decks the registry's content, as a full reload read after
// mark (from Mark) found them, and makes the registry Ready. What was Put
// or Removed after mark is kept instead of the snapshot's version, and a
// removed deck stays removed.
func (r *Registry) Replace(decks []*Deck, mark uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	byID := make(map[string]regEntry, len(decks))
	for id, e := range r.byID {
		if e.deck == nil || e.seq > mark {
			byID[id] = e
		}
	}
	r.seq++
	for _, d := range decks {
		if e, ok := byID[d.info.ID]; ok && (e.deck == nil || e.deck.info.Version > d.info.Version) {
			continue
		}
		byID[d.info.ID] = regEntry{deck: d, seq: r.seq}
	}
	r.byID = byID
	r.accounts, r.gateways = map[string][]*Deck{}, map[string][]*Deck{}
	for _, e := range byID {
		if e.deck != nil {
			r.index(e.deck)
		}
	}
	r.ready = true
}

// owners returns the index d belongs in and its key there.
func (r *Registry) owners(d *Deck) (map[string][]*Deck, string) {
	if d.info.Gateway != "" {
		if r.gateways == nil {
			r.gateways = map[string][]*Deck{}
		}
		return r.gateways, d.info.Gateway
	}
	if r.accounts == nil {
		r.accounts = map[string][]*Deck{}
	}
	return r.accounts, d.info.AccountID
}

// index adds d to its owner's decks.
func (r *Registry) index(d *Deck) {
	m, key := r.owners(d)
	list := append(m[key], d)
	slices.SortStableFunc(list, func(a, b *Deck) int { return a.info.EffectiveFrom.Compare(b.info.EffectiveFrom) })
	m[key] = list
}

// unindex removes d from its owner's decks.
func (r *Registry) unindex(d *Deck) {
	m, key := r.owners(d)
	list := slices.DeleteFunc(m[key], func(x *Deck) bool { return x == d })
	if len(list) == 0 {
		delete(m, key)
		return
	}
	m[key] = list
}

// GatewayDeckUntil is GatewayDeck that also returns when the gateway's
// next deck takes over from the one returned (its EffectiveFrom), or the
// zero time when none is held: until then, without a write to the
// registry (see Mark), GatewayDeck's answer stays the same.
func (r *Registry) GatewayDeckUntil(gateway string, at time.Time) (*Deck, time.Time) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	decks := r.gateways[gateway]
	for i := len(decks) - 1; i >= 0; i-- {
		if !at.Before(decks[i].info.EffectiveFrom) {
			if i+1 < len(decks) {
				return usable(decks[i]), decks[i+1].info.EffectiveFrom
			}
			return usable(decks[i]), time.Time{}
		}
	}
	if len(decks) > 0 {
		return nil, decks[0].info.EffectiveFrom
	}
	return nil, time.Time{}
}
