package routing

import (
	"cmp"
	"slices"
	"strconv"
	"time"

	"callbridge"
	"callbridge/internal/prefix"
	"callbridge/rating"
)

// Table is a plan joined with its gateways' buy decks, priced ahead of
// the calls: one trie holds the plan's prefixes and every prefix of the
// gateways' decks, and each of its nodes the buy price of every gateway
// for the numbers that end there. Resolving a call through a Table is one
// trie walk instead of one per gateway, and no pricing at all, so it
// stays fast however many carriers a route lists.
//
// A Table is a cache of Plan.Resolve with the decks of its build time:
// Table.Resolve gives exactly Plan.Resolve's answer. When a call's time
// is outside the span the decks' prices hold for (StableUntil), or a
// route's gateway has another deck in force than the one the table was
// built with (a new deck version, a deck taking over), it falls back to
// Plan.Resolve for that call. Rebuild it when decks or the plan change,
// and before Until passes. It is immutable and safe for concurrent use.
type Table struct {
	plan *Plan
	// prices and mark, when prices is a VersionedPrices, let Resolve
	// skip checking each gateway's deck while prices saw no write.
	prices PriceSource
	mark   uint64
	marked bool
	decks  []*rating.Deck // per plan gateway, in force at From; nil: none
	ids    []string       // the decks' ids
	curs   []string       // the decks' currencies
	from   time.Time
	until  time.Time // zero: never

	// trie holds the plan's and the decks' prefixes. Every node on the
	// path of a prefix carries the payload of its nearest ancestor (or
	// itself) with one, so a walk ends on the node to read: Lo is the
	// data index, Aux the deepest node of the plan's trie with routes on
	// the path (-1: none) or, for a plan without time bands, that node's
	// first route plus planRoute.
	trie prefix.Trie[int32]
	// direct and bkt answer a walk of trie for numbers of at least
	// trie.TopDigits() digits in one or two reads: direct maps a number's
	// first TopDigits digits to the data of the deepest prefix of at most
	// that many digits on its path, and to bkt[direct[v].b:direct[v+1].b],
	// the longer prefixes that start with them, longest first.
	direct []dent
	bkt    []bent
	// quote is, per data index and plan gateway (len(decks) per index),
	// the gateway's price there, inline so that a call reads one or two
	// cache lines for all its gateways.
	quote []tquote
}

// tquote is a quote packed in 16 bytes: pm is the per-minute price, or
// -1 when unpriced, with tDefault set when the deck's default rate
// priced it.
type tquote struct {
	cost, pm int64
}

const tDefault = 1 << 62

func packQuote(q quote) tquote {
	if !q.priced {
		return tquote{pm: -1}
	}
	t := tquote{cost: q.cost, pm: q.perMinute}
	if q.deflt {
		t.pm |= tDefault
	}
	return t
}

// NewTable prices plan's gateways with the buy decks prices has in force
// at at (usually now) and returns the table, valid from at until Until.
func NewTable(plan *Plan, prices PriceSource, at time.Time) *Table {
	g := len(plan.gateways)
	t := &Table{plan: plan, prices: prices, decks: make([]*rating.Deck, g), ids: make([]string, g), curs: make([]string, g), from: at}
	vp, versioned := prices.(VersionedPrices)
	if versioned {
		t.mark, t.marked = vp.Mark(), true
	}
	later := func(u time.Time) {
		if !u.IsZero() && (t.until.IsZero() || u.Before(t.until)) {
			t.until = u
		}
	}
	type entry struct {
		prefix string
		src    int32 // -1: the plan; else the gateway's index
	}
	var entries []entry
	for i := 0; i < len(plan.routes); i++ {
		if i == 0 || plan.routes[i].Prefix != plan.routes[i-1].Prefix {
			entries = append(entries, entry{plan.routes[i].Prefix, -1})
		}
	}
	entries = append(entries, entry{"", -1}) // the root holds the default rates
	for gi, name := range plan.gateways {
		if prices == nil {
			break
		}
		var d *rating.Deck
		if versioned {
			var next time.Time
			d, next = vp.GatewayDeckUntil(name, at)
			later(next)
		} else {
			d = prices.GatewayDeck(name, at)
		}
		if d == nil {
			continue
		}
		info := d.Info()
		t.decks[gi], t.ids[gi], t.curs[gi] = d, info.ID, info.Currency
		if u := d.StableUntil(at); !u.IsZero() {
			// A reference call must lie wholly before the change.
			later(u.Add(-CostBasisMS * time.Millisecond))
		}
		for p := range d.Prefixes {
			entries = append(entries, entry{p, int32(gi)})
		}
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if c := cmp.Compare(a.prefix, b.prefix); c != 0 {
			return c
		}
		return cmp.Compare(a.src, b.src)
	})
	var groups []prefix.Group
	var own [][2]int // per data index: its run in entries
	for i := 0; i < len(entries); {
		j := i
		for j < len(entries) && entries[j].prefix == entries[i].prefix {
			j++
		}
		groups = append(groups, prefix.Group{Prefix: entries[i].prefix, Lo: int32(len(groups)), Count: 1})
		own = append(own, [2]int{i, j})
		i = j
	}
	t.trie = prefix.New[int32](groups)
	planNode := make([]int32, len(groups))
	t.quote = make([]tquote, len(groups)*g)
	// Ascending prefix order visits every prefix after its ancestors, so
	// a gateway without a rate of its own at a prefix takes its nearest
	// ancestor's price, found through the merged trie's up links.
	parent := make([]int32, len(groups))
	has := make([]bool, g) // the gateways with a prefix of their own here
	for u, gr := range groups {
		nd := t.trie.Walk(gr.Prefix)
		parent[u] = -1
		if up := t.trie.Nodes[nd].Up; up >= 0 {
			parent[u] = t.trie.Nodes[up].Lo
		}
		planNode[u] = plan.trie.Walk(gr.Prefix)
		clear(has)
		for _, e := range entries[own[u][0]:own[u][1]] {
			if e.src >= 0 {
				t.quote[u*g+int(e.src)] = packQuote(quoteOf(t.decks[e.src], callbridge.Number(gr.Prefix), at))
				has[e.src] = true
			}
		}
		for gi := range g {
			switch {
			case t.decks[gi] == nil:
				t.quote[u*g+gi] = tquote{pm: -1}
			case has[gi]:
			case parent[u] >= 0:
				t.quote[u*g+gi] = t.quote[int(parent[u])*g+gi]
			default:
				// No prefix of the deck leads here: its default rate, if any.
				t.quote[u*g+gi] = packQuote(quoteOf(t.decks[gi], "", at))
			}
		}
	}
	// Nodes are laid out breadth first: a node's parent comes before it.
	for i := range t.trie.Nodes {
		nd := &t.trie.Nodes[i]
		if nd.Count == 0 {
			if nd.Up < 0 {
				nd.Aux = -1
				continue
			}
			nd.Lo, nd.Count = t.trie.Nodes[nd.Up].Lo, 1
		}
		nd.Aux = planNode[nd.Lo]
		if plan.flat && nd.Aux >= 0 {
			nd.Aux = planRoute + plan.trie.Nodes[nd.Aux].Lo
		}
	}
	t.buildDirect(groups)
	return t
}

// planRoute marks a Table node's aux that is a route index.
const planRoute = 1 << 30

// dent is an entry of Table.direct: a node's lo and aux, and where its
// bucket starts.
type dent struct {
	lo, aux, b int32
}

// bent is a prefix longer than Table.trie.TopDigits(): its digits after
// those (suf, n of them) and its node's lo and aux.
type bent struct {
	suf     uint64
	lo, aux int32
	n       int32
}

// buildDirect fills direct and bkt from the finished trie.
func (t *Table) buildDirect(groups []prefix.Group) {
	k := t.trie.TopDigits()
	if k == 0 {
		return
	}
	size := int(pow10u(int32(k)))
	t.direct = make([]dent, size+1)
	for v := range size {
		nd := &t.trie.Nodes[t.trie.TopNode(v)]
		t.direct[v].lo, t.direct[v].aux = nd.Lo, nd.Aux
	}
	type keyed struct {
		key int
		e   bent
	}
	var long []keyed
	for _, gr := range groups {
		if len(gr.Prefix) <= k {
			continue
		}
		key, _ := strconv.Atoi(gr.Prefix[:k])
		suf, _ := strconv.ParseUint(gr.Prefix[k:], 10, 64)
		nd := &t.trie.Nodes[t.trie.Walk(gr.Prefix)]
		long = append(long, keyed{key, bent{suf: suf, lo: nd.Lo, aux: nd.Aux, n: int32(len(gr.Prefix) - k)}})
	}
	slices.SortFunc(long, func(a, b keyed) int {
		if c := cmp.Compare(a.key, b.key); c != 0 {
			return c
		}
		return cmp.Compare(b.e.n, a.e.n)
	})
	t.bkt = make([]bent, len(long))
	j := 0
	for v := 0; v <= size; v++ {
		t.direct[v].b = int32(j)
		for j < len(long) && long[j].key == v {
			t.bkt[j] = long[j].e
			j++
		}
	}
}

// find returns the lo and aux of the deepest node with data on n's path:
// what walking the trie finds, from direct and bkt when n is long enough.
func (t *Table) find(n callbridge.Number) (lo, aux int32) {
	if v, ok := t.trie.TopKey(string(n)); ok {
		e := &t.direct[v]
		b0, b1 := e.b, t.direct[v+1].b
		if b0 == b1 {
			return e.lo, e.aux
		}
		var rest uint64 // the digits after the top key's, at most to MaxPrefixLen
		m := int32(0)
		for j := t.trie.TopDigits(); j < len(n) && j < MaxPrefixLen; j++ {
			c := n[j] - '0'
			if c > 9 {
				break
			}
			rest = rest*10 + uint64(c)
			m++
		}
		for _, b := range t.bkt[b0:b1] {
			if b.n <= m && rest/pow10u(m-b.n) == b.suf {
				return b.lo, b.aux
			}
		}
		return e.lo, e.aux
	}
	nd := &t.trie.Nodes[t.trie.Walk(string(n))]
	return nd.Lo, nd.Aux
}

// pow10u returns 10 to the n (0 <= n <= 19).
func pow10u(n int32) uint64 {
	v := uint64(1)
	for ; n > 0; n-- {
		v *= 10
	}
	return v
}

// From returns the time the table was priced at.
func (t *Table) From() time.Time { return t.from }

// Until returns when the table's prices stop holding for some call (a
// band edge or an effective date of a deck, less CostBasisMS); zero when
// they hold for ever. Rebuild the table before then.
func (t *Table) Until() time.Time { return t.until }

// Plan returns the table's plan.
func (t *Table) Plan() *Plan { return t.plan }

// Resolve is Plan.Resolve: the same answer, from the table's prices when
// they hold for at and src.Prices still has the table's decks in force
// for the matched route's gateways, else from Plan.Resolve.
func (t *Table) Resolve(dst *Resolution, n callbridge.Number, at time.Time, src Sources) {
	p := t.plan
	if at.Before(t.from) || !t.until.IsZero() && !at.Before(t.until) {
		p.Resolve(dst, n, at, src)
		return
	}
	lo, aux := t.find(n)
	// Read the node's quotes now, one entry per cache line: their misses
	// then overlap the route's instead of following it.
	g := len(t.decks)
	var touch int64
	for i := int(lo) * g; i < int(lo+1)*g; i += 4 {
		touch += t.quote[i].pm
	}
	var r *croute
	switch {
	case aux >= planRoute:
		r = &p.routes[aux-planRoute]
	case aux >= 0:
		r = p.matchFrom(aux, at)
	}
	if r != nil && !t.unchanged(src.Prices) {
		for _, gi := range r.gw {
			var cur *rating.Deck
			if src.Prices != nil {
				cur = src.Prices.GatewayDeck(p.gateways[gi], at)
			}
			if cur != t.decks[gi] {
				p.resolve(dst, r, n, at, src, nil, -1)
				return
			}
		}
	}
	p.resolve(dst, r, n, at, src, t, lo)
	dst.touch = touch
}

// unchanged reports whether prices is the table's VersionedPrices and
// saw no write since the table was built.
func (t *Table) unchanged(prices PriceSource) bool {
	if !t.marked || prices != t.prices {
		return false
	}
	return prices.(VersionedPrices).Mark() == t.mark
}

// VersionedPrices is a PriceSource that counts its writes and says when
// a gateway's next deck takes over; *rating.Registry is one. A Table
// built from one checks a single counter per call instead of every
// gateway's deck.
type VersionedPrices interface {
	PriceSource
	// Mark returns a counter that changes with every write.
	Mark() uint64
	// GatewayDeckUntil returns the deck in force at at and when the
	// next one takes over (zero: none).
	GatewayDeckUntil(gateway string, at time.Time) (*rating.Deck, time.Time)
}

// quoteInto sets c's price from gateway gi's quote at data index u and
// reports whether the gateway has a buy deck.
func (t *Table) quoteInto(c *Candidate, gi int32, u int32) bool {
	if t.decks[gi] == nil {
		return false
	}
	q := t.quote[int(u)*len(t.decks)+int(gi)]
	if q.pm < 0 {
		return true
	}
	c.Priced, c.DeckID, c.Currency, c.PerMinute, c.Cost = true, t.ids[gi], t.curs[gi], q.pm&^tDefault, q.cost
	if q.pm&tDefault != 0 && c.Reason == ReasonOK {
		c.Reason = ReasonDefaultRate
	}
	return true
}
