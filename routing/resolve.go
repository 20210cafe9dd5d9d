package routing

import (
	"math/rand/v2"
	"time"

	"callbridge"
	"callbridge/rating"
)

// PriceSource finds a gateway's buy deck in force at a time.
// *rating.Registry is one.
type PriceSource interface {
	GatewayDeck(gateway string, at time.Time) *rating.Deck
}

// SofiaState is a gateway's state as the switch reports it (sofia
// xmlstatus gateway: its status UP or DOWN).
type SofiaState uint8

// Sofia states.
const (
	// SofiaUnknown: the switch has not said; the gateway is tried.
	SofiaUnknown SofiaState = iota
	// SofiaUp: the gateway is up.
	SofiaUp
	// SofiaDown: the gateway is down (failed pings or registration);
	// it is skipped.
	SofiaDown
)

var sofiaNames = [...]string{"unknown", "up", "down"}

// String returns "unknown", "up" or "down".
func (s SofiaState) String() string {
	if int(s) < len(sofiaNames) {
		return sofiaNames[s]
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler.
func (s SofiaState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Health is what is known of a gateway when a call is routed.
type Health struct {
	// Sofia is the switch's view of the gateway.
	Sofia SofiaState `json:"sofia"`
	// Breaker is the state of the gateway's circuit breaker.
	Breaker BreakerState `json:"breaker"`
	// Active is how many calls go through the gateway now, across
	// controllers; MaxActive is its cap, 0 for none.
	Active    int `json:"active"`
	MaxActive int `json:"max_active,omitempty"`
	// CPSFull is true when the gateway's calls-per-second cap is
	// reached for the current second.
	CPSFull bool `json:"cps_full,omitempty"`
}

// HealthSource reports gateways' health at now.
type HealthSource interface {
	Health(gateway string, now time.Time) Health
}

// HealthMap is a snapshot of gateways' health; a gateway it does not
// hold is healthy as far as is known.
type HealthMap map[string]Health

// Health implements HealthSource.
func (m HealthMap) Health(gateway string, _ time.Time) Health { return m[gateway] }

// Sources are what resolution reads besides the plan. Every field may be
// nil.
type Sources struct {
	// Prices finds buy decks; nil: no gateway has a buy deck.
	Prices PriceSource
	// Health reports gateways' health; nil: every gateway is healthy.
	Health HealthSource
	// Rand draws the weighted strategy's order; nil: weighted routes
	// are tried by weight, heaviest first (ties in the route's order).
	Rand rand.Source
	// Now is the time health is read at; zero means the call's time.
	Now time.Time
}

// Reason says why a gateway was kept or skipped.
type Reason uint8

// Reasons. Those before ReasonSkip keep the gateway.
const (
	// ReasonOK: kept; healthy and, under least_cost, priced.
	ReasonOK Reason = iota
	// ReasonProbe: kept; its breaker is half-open and this call may
	// probe it (the engine claims the probe with Breakers.Allow).
	ReasonProbe
	// ReasonUnpriced: kept (priority or weighted); no buy rate prices
	// calls to the number through it, so their cost is unknown.
	ReasonUnpriced
	// ReasonDefaultRate: kept; its buy deck's default rate priced it.
	ReasonDefaultRate

	// ReasonSkip marks the first skipping reason; it is not one itself.
	ReasonSkip
	// ReasonSofiaDown: skipped; the switch reports the gateway down.
	ReasonSofiaDown
	// ReasonCircuitOpen: skipped; its breaker is open.
	ReasonCircuitOpen
	// ReasonCircuitProbing: skipped; a probe call is testing it.
	ReasonCircuitProbing
	// ReasonAtCapacity: skipped; it carries its maximum of concurrent
	// calls.
	ReasonAtCapacity
	// ReasonCPSLimit: skipped; its calls-per-second cap is reached.
	ReasonCPSLimit
	// ReasonNoBuyDeck: skipped (least_cost); the gateway has no buy
	// deck in force.
	ReasonNoBuyDeck
	// ReasonNoBuyRate: skipped (least_cost); its buy deck has no rate
	// for the number at the time and no default rate.
	ReasonNoBuyRate
	// ReasonCurrency: skipped (least_cost); its buy deck is in another
	// currency than the plan's, so prices cannot be compared.
	ReasonCurrency
	// ReasonMaxAttempts: skipped; the plan's MaxAttempts gateways come
	// before it.
	ReasonMaxAttempts
)

var reasonNames = [...]string{
	ReasonOK: "ok", ReasonProbe: "probe", ReasonUnpriced: "unpriced", ReasonDefaultRate: "default_rate",
	ReasonSkip: "skip", ReasonSofiaDown: "sofia_down", ReasonCircuitOpen: "circuit_open",
	ReasonCircuitProbing: "circuit_probing", ReasonAtCapacity: "at_capacity", ReasonCPSLimit: "cps_limit",
	ReasonNoBuyDeck: "no_buy_deck", ReasonNoBuyRate: "no_buy_rate", ReasonCurrency: "currency_mismatch",
	ReasonMaxAttempts: "max_attempts",
}

// String returns the reason's name, e.g. "circuit_open".
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Kept reports whether the reason keeps the gateway.
func (r Reason) Kept() bool { return r < ReasonSkip }

// Candidate is one gateway of the matched route and the verdict on it.
type Candidate struct {
	// Gateway is the gateway's name.
	Gateway string `json:"gateway"`
	// Kept is true when the call may try it; Reason says why or why not.
	Kept   bool   `json:"kept"`
	Reason Reason `json:"reason"`
	// Weight is its weight in the route (1 when not given).
	Weight int32 `json:"weight"`
	// Priced is true when its buy deck priced the call; then DeckID,
	// Currency, PerMinute (micro-units per 60 s at the time) and Cost (a
	// CostBasisMS call, connect fee and minimum included) are set.
	Priced    bool   `json:"priced"`
	DeckID    string `json:"deck_id,omitempty"`
	Currency  string `json:"currency,omitempty"`
	PerMinute int64  `json:"per_minute_micros"`
	Cost      int64  `json:"cost_micros"`
	// Health is what was known of the gateway.
	Health Health `json:"health"`
}

// Resolution is the answer for one call: the gateways to try, in order,
// then those skipped. Resolve fills it, reusing its Candidates' storage.
type Resolution struct {
	// Matched is false when no route matches the number at the time;
	// then there are no candidates.
	Matched bool `json:"matched"`
	// Prefix, Description and Strategy are the matched route's.
	Prefix      string   `json:"prefix"`
	Description string   `json:"description,omitempty"`
	Strategy    Strategy `json:"strategy,omitempty"`
	// Days, From and Until are the matched route's band.
	Days  rating.Days      `json:"days"`
	From  rating.TimeOfDay `json:"from"`
	Until rating.TimeOfDay `json:"until"`
	// MaxAttempts and PostDialMS are the plan's.
	MaxAttempts int   `json:"max_attempts"`
	PostDialMS  int64 `json:"post_dial_ms"`
	// Candidates are every gateway of the route: the kept ones first, in
	// the order to try them (at most MaxAttempts), then those skipped for
	// MaxAttempts in the same order, then the others skipped, in the
	// route's order.
	Candidates []Candidate `json:"candidates"`
	// kept is how many candidates are kept.
	kept int
	// touch keeps Table.Resolve's early reads from being optimised away.
	touch int64
}

// Attempts returns the kept candidates, in the order to try them. The
// slice aliases r.
func (r *Resolution) Attempts() []Candidate { return r.Candidates[:r.kept] }

// Resolve routes a call to n at at (its time, read in the plan's zone for
// bands and used to find the buy decks in force) into dst, reusing dst's
// storage: with a dst reused from call to call it makes no allocation.
//
// For each gateway of the matched route, in order: health first (the
// switch reports it down, its breaker is open or probing, it is at its
// concurrent or per-second cap: skipped; half-open: kept as a probe),
// then its buy deck prices a CostBasisMS call to n at at. Under
// least_cost a gateway without a buy deck, without a rate for n, or
// priced in another currency than the plan's is skipped, and the rest
// are ordered by Cost, cheapest first, then by PerMinute (ties keep the
// route's order).
// Under priority they keep the route's order; under weighted the order is
// drawn from src.Rand. Kept gateways beyond the plan's MaxAttempts are
// skipped with ReasonMaxAttempts.
func (p *Plan) Resolve(dst *Resolution, n callbridge.Number, at time.Time, src Sources) {
	p.resolve(dst, p.match(n, at), n, at, src, nil, -1)
}

// resolve fills dst for the matched route r (nil: none). With t set, the
// buy prices come from t's quotes for its data node d instead of from
// pricing each gateway's deck.
func (p *Plan) resolve(dst *Resolution, r *croute, n callbridge.Number, at time.Time, src Sources, t *Table, d int32) {
	cands := dst.Candidates[:0]
	*dst = Resolution{MaxAttempts: p.info.MaxAttempts, PostDialMS: p.info.PostDialMS}
	if r == nil {
		dst.Candidates = cands
		return
	}
	dst.Matched, dst.Prefix, dst.Description, dst.Strategy = true, r.Prefix, r.Description, r.Strategy
	dst.Days, dst.From, dst.Until = r.Days, r.From, r.Until
	now := src.Now
	if now.IsZero() {
		now = at
	}
	for i, tg := range r.Gateways {
		c := Candidate{Gateway: tg.Gateway, Weight: tg.Weight}
		if src.Health != nil {
			c.Health = src.Health.Health(tg.Gateway, now)
		}
		c.Reason = healthReason(c.Health)
		hasDeck := false
		if t != nil {
			hasDeck = t.quoteInto(&c, r.gw[i], d)
		} else if src.Prices != nil {
			if deck := src.Prices.GatewayDeck(tg.Gateway, at); deck != nil {
				hasDeck = true
				priceInto(&c, deck, n, at)
			}
		}
		if c.Reason.Kept() {
			switch {
			case r.Strategy == LeastCost && !hasDeck:
				c.Reason = ReasonNoBuyDeck
			case r.Strategy == LeastCost && !c.Priced:
				c.Reason = ReasonNoBuyRate
			case r.Strategy == LeastCost && c.Currency != p.info.Currency:
				c.Reason = ReasonCurrency
			case c.Reason == ReasonProbe:
			case !c.Priced:
				c.Reason = ReasonUnpriced
			}
		}
		c.Kept = c.Reason.Kept()
		cands = append(cands, c)
	}
	// Kept candidates to the front, in route order (stable).
	k := 0
	for i := range cands {
		if cands[i].Kept {
			c := cands[i]
			copy(cands[k+1:i+1], cands[k:i])
			cands[k] = c
			k++
		}
	}
	kept := cands[:k]
	switch r.Strategy {
	case LeastCost:
		// Insertion sort: stable, no allocation, a handful of items.
		for i := 1; i < len(kept); i++ {
			for j := i; j > 0 && cheaper(&kept[j], &kept[j-1]); j-- {
				kept[j], kept[j-1] = kept[j-1], kept[j]
			}
		}
	case Weighted:
		drawWeighted(kept, src.Rand)
	}
	if k > p.info.MaxAttempts {
		for i := p.info.MaxAttempts; i < k; i++ {
			kept[i].Kept, kept[i].Reason = false, ReasonMaxAttempts
		}
		k = p.info.MaxAttempts
	}
	dst.Candidates, dst.kept = cands, k
}

// cheaper orders least_cost candidates: by the reference call's cost,
// then (costs rounded to a coarse deck precision can tie) by the
// per-minute price.
func cheaper(a, b *Candidate) bool {
	if a.Cost != b.Cost {
		return a.Cost < b.Cost
	}
	return a.PerMinute < b.PerMinute
}

// Reason is the verdict on the gateway's health alone: ReasonOK,
// ReasonProbe, or the reason it is skipped.
func (h Health) Reason() Reason { return healthReason(h) }

// healthReason is the verdict on a gateway's health alone.
func healthReason(h Health) Reason {
	switch {
	case h.Sofia == SofiaDown:
		return ReasonSofiaDown
	case h.Breaker == BreakerOpen:
		return ReasonCircuitOpen
	case h.Breaker == BreakerProbing:
		return ReasonCircuitProbing
	case h.MaxActive > 0 && h.Active >= h.MaxActive:
		return ReasonAtCapacity
	case h.CPSFull:
		return ReasonCPSLimit
	case h.Breaker == BreakerHalfOpen:
		return ReasonProbe
	}
	return ReasonOK
}

// priceInto prices a CostBasisMS call to n at at with the gateway's buy
// deck.
func priceInto(c *Candidate, deck *rating.Deck, n callbridge.Number, at time.Time) {
	q := quoteOf(deck, n, at)
	if q.priced {
		c.Priced, c.DeckID, c.Currency, c.PerMinute, c.Cost = true, deck.Info().ID, deck.Info().Currency, q.perMinute, q.cost
		if q.deflt && c.Reason == ReasonOK {
			c.Reason = ReasonDefaultRate
		}
	}
}

// quote is a gateway's buy price for a destination at a time.
type quote struct {
	perMinute, cost int64
	priced, deflt   bool
}

// quoteOf prices a CostBasisMS call to n at at with deck.
func quoteOf(deck *rating.Deck, n callbridge.Number, at time.Time) quote {
	res := deck.Price(rating.Usage{Number: n, Start: at, BillMS: CostBasisMS})
	if res.Flags.Has(rating.FlagUnrated) {
		return quote{}
	}
	q := quote{priced: true, cost: res.Amount, deflt: res.Flags.Has(rating.FlagUnratedDefault)}
	if parts := res.Parts(); len(parts) > 0 {
		q.perMinute = parts[0].PerMinute
	}
	return q
}

// drawWeighted orders cs by repeated weighted draws without replacement
// from rnd; with rnd nil, heaviest first (stable).
func drawWeighted(cs []Candidate, rnd rand.Source) {
	if rnd == nil {
		for i := 1; i < len(cs); i++ {
			for j := i; j > 0 && cs[j].Weight > cs[j-1].Weight; j-- {
				cs[j], cs[j-1] = cs[j-1], cs[j]
			}
		}
		return
	}
	for i := 0; i < len(cs)-1; i++ {
		var total uint64
		for _, c := range cs[i:] {
			total += uint64(c.Weight)
		}
		x := rnd.Uint64() % total
		j := i
		for ; j < len(cs)-1; j++ {
			if x < uint64(cs[j].Weight) {
				break
			}
			x -= uint64(cs[j].Weight)
		}
		c := cs[j]
		copy(cs[i+1:j+1], cs[i:j])
		cs[i] = c
	}
}

// Next says which attempt comes after tried attempts (the first tried
// attempts of r.Attempts()) when the last one ended with verdict v after
// elapsedMS since the first was dialled. It returns the candidate and
// true, or false when the call must stop: v is Stop, the attempts are
// used up (MaxAttempts or no kept gateway left), or the post-dial budget
// is spent.
func (r *Resolution) Next(tried int, v Verdict, elapsedMS int64) (Candidate, bool) {
	if v != Failover || tried >= r.kept || tried >= r.MaxAttempts || elapsedMS >= r.PostDialMS {
		return Candidate{}, false
	}
	return r.Candidates[tried], true
}
