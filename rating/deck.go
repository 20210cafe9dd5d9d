package rating

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"
	"time"

	"callbridge"
	"callbridge/internal/prefix"
)

// Rounding says which way an amount that falls between two multiples of
// a deck's precision goes.
type Rounding string

// Rounding rules.
const (
	// RoundUp rounds towards the larger amount (ceiling): the telecom
	// habit, the deck owner is never short-changed. It is the default.
	RoundUp Rounding = "up"
	// RoundHalfUp rounds to the nearest amount, halves upwards.
	RoundHalfUp Rounding = "half_up"
	// RoundDown truncates towards zero.
	RoundDown Rounding = "down"
)

// DefaultShortMS is the default threshold under which an answered call is
// recorded but not charged: one second.
const DefaultShortMS = 1000

// DeckInfo describes a rate deck: whose it is and the deck-wide terms. A
// deck belongs to an account (sell rates: what the account is charged) or
// to a carrier gateway (buy rates: what the operator pays), never both.
type DeckInfo struct {
	// ID is the deck's id, assigned by the store.
	ID string `json:"id"`
	// AccountID owns a sell deck; empty for a carrier deck.
	AccountID string `json:"account_id,omitempty"`
	// Gateway is the FreeSWITCH gateway of a carrier (buy) deck; empty for
	// an account deck.
	Gateway string `json:"gateway,omitempty"`
	// Name is for people.
	Name string `json:"name"`
	// Currency is the ISO 4217 code of every amount in the deck.
	Currency string `json:"currency"`
	// TimeZone is the IANA zone time bands and holidays are read in.
	TimeZone string `json:"time_zone"`
	// Precision is how many decimals of the currency amounts are rounded
	// to, 0 to 6 (6: whole micro-units).
	Precision int `json:"precision"`
	// Rounding is the rounding rule; empty means RoundUp.
	Rounding Rounding `json:"rounding"`
	// ShortMS is the billed duration under which an answered call costs
	// nothing; 0 means DefaultShortMS, 1 charges every answered call.
	ShortMS int64 `json:"short_ms"`
	// Default prices calls no rate matches (flagged unrated_default);
	// nil leaves them unrated. Its Prefix, Days, From, Until, effective
	// period and Priority are ignored: it applies at all times.
	Default *Rate `json:"default_rate,omitempty"`
	// Holidays are the dates, "YYYY-MM-DD" in TimeZone, on which only
	// bands that include "hol" apply.
	Holidays []string `json:"holidays,omitempty"`
	// EffectiveFrom is when the deck takes over from its owner's previous
	// deck: the store picks, for a call, the latest deck in force at its
	// start. The engine does not use it. Zero means since always.
	EffectiveFrom time.Time `json:"effective_from,omitzero"`
	// Version increases whenever the deck or its rates change.
	Version int64 `json:"version"`
	// CreatedAt is when the deck was created, UTC.
	CreatedAt time.Time `json:"created_at"`
}

// Validate reports the first problem with the deck's terms as an EINVALID
// *callbridge.Error naming the field. It does not check that TimeZone
// exists; loading zones is I/O and belongs to the caller of NewDeck.
func (i *DeckInfo) Validate() error {
	switch {
	case (i.AccountID == "") == (i.Gateway == ""):
		return callbridge.FieldError("account_id", "a deck belongs to exactly one of an account or a gateway")
	case i.Gateway != "" && !isGateway(i.Gateway):
		return callbridge.FieldError("gateway", "must be 1 to 64 letters, digits, '.', '_' or '-'")
	case i.Name == "" || len(i.Name) > maxTextLen:
		return callbridge.FieldError("name", "must have 1 to 200 bytes")
	case callbridge.CheckText("name", i.Name) != nil:
		return callbridge.CheckText("name", i.Name)
	case !isCurrency(i.Currency):
		return callbridge.ValidateCurrency("currency", i.Currency)
	case i.TimeZone == "":
		return callbridge.FieldError("time_zone", "must be an IANA zone such as Europe/Berlin")
	case i.Precision < 0 || i.Precision > 6:
		return callbridge.FieldError("precision", "must be 0 to 6 decimals")
	case i.ShortMS < 0 || i.ShortMS > 3_600_000:
		return callbridge.FieldError("short_ms", "must be 0 to 3600000")
	}
	switch i.Rounding {
	case "", RoundUp, RoundHalfUp, RoundDown:
	default:
		return callbridge.FieldError("rounding", "must be up, half_up or down")
	}
	if i.Default != nil {
		if i.Default.Prefix != "" {
			return callbridge.FieldError("default_rate", "a default rate has no prefix")
		}
		if err := i.Default.validateCommon(); err != nil {
			return callbridge.FieldError("default_rate", "%s: %s", callbridge.ErrorField(err), callbridge.ErrorMessage(err))
		}
	}
	for _, h := range i.Holidays {
		if _, err := time.Parse(time.DateOnly, h); err != nil {
			return callbridge.FieldError("holidays", "%q is not a YYYY-MM-DD date", h)
		}
	}
	return nil
}

func isGateway(s string) bool {
	if len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// isCurrency says whether s is an ISO 4217 code with a minor unit, so
// that what the deck prices can be invoiced.
func isCurrency(s string) bool {
	_, ok := callbridge.CurrencyExponent(s)
	return ok
}

// Deck is a compiled rate deck: the rates of one deck version in a
// structure built once for fast lookup. It is immutable and safe for
// concurrent use; a new version of a deck is a new Deck.
type Deck struct {
	info  DeckInfo
	loc   *time.Location
	unit  int64 // micro-units per step of the deck's precision
	round Rounding
	short int64 // ms

	rates []crate // sorted by prefix, then priority; the default last
	def   int32   // index of the default rate in rates, or -1
	// trie holds the distinct prefixes of rates; a node's payload is its
	// prefix's run of rates.
	trie prefix.Trie[struct{}]
	// bounds are the distinct band edges of all rates, in nanoseconds
	// since local midnight, ascending, without 0 and 24:00.
	bounds   []int64
	holidays []int64 // local day numbers (days since 1970-01-01), ascending
	// zones are the deck zone's offsets from 1970 to zonesUntil (unix
	// seconds; math.MaxInt64 when the offset never changes after), so
	// reading a time in the zone is one search of a small table.
	zones      []zoneSpan
	zonesUntil int64
	// flat is true when every rate applies all day on all days: a call
	// can then never cross a band boundary.
	flat bool
	// effs are the distinct finite effective_from and effective_until
	// instants of the rates, unix ms, ascending.
	effs []int64
	// refused, when not empty, says why this deck version was not
	// compiled (see RefusedDeck).
	refused string
}

// RefusedDeck returns a stand-in for a deck version that was not
// compiled, with why (reason), for a Registry to hold: one with more rates
// than a controller may hold, say. The registry finds no deck where it is
// in force, so calls it would have priced are unrated, as with no deck at
// all, and its owner's older decks do not price them in its place. It has
// no rates.
func RefusedDeck(info DeckInfo, reason string) *Deck {
	return &Deck{info: info, def: -1, refused: reason}
}

// Refused returns why the deck was not compiled (RefusedDeck), or "".
func (d *Deck) Refused() string { return d.refused }

// zoneSpan is a period of constant UTC offset, from start (unix seconds)
// to the next span's start.
type zoneSpan struct {
	start int64
	off   int32
}

// zoneTableEnd is where the zone table stops, 2100-01-01T00:00:00Z in
// unix seconds; later times ask the time package.
const zoneTableEnd = 4102444800

// buildZones tabulates loc's offsets from 1970 to zoneTableEnd.
func (d *Deck) buildZones() {
	t := time.Unix(0, 0).In(d.loc)
	d.zonesUntil = zoneTableEnd
	for t.Unix() < zoneTableEnd {
		start, end := t.ZoneBounds()
		if _, off := t.Zone(); len(d.zones) == 0 || d.zones[len(d.zones)-1].off != int32(off) {
			s := t.Unix()
			if len(d.zones) == 0 && start.IsZero() {
				s = math.MinInt64
			}
			d.zones = append(d.zones, zoneSpan{start: s, off: int32(off)})
		}
		switch {
		case end.IsZero():
			d.zonesUntil = math.MaxInt64
			return
		case end.After(t):
			t = end.In(d.loc)
		default:
			// Beyond its last listed transition the time package works
			// out a zone's rule year by year and, near a year's end, may
			// report a period ending before t. Step an hour, finding any
			// change of offset within it to the second.
			t = nextOffsetChange(t, t.Add(time.Hour))
		}
	}
}

// nextOffsetChange returns the first second in (a, b] at which the offset
// differs from a's, or b if none does (at most one change is assumed).
func nextOffsetChange(a, b time.Time) time.Time {
	_, offA := a.Zone()
	if _, offB := b.Zone(); offB == offA {
		return b
	}
	for b.Sub(a) > time.Second {
		m := a.Add(b.Sub(a) / 2).Truncate(time.Second)
		if !m.After(a) {
			m = a.Add(time.Second)
		}
		if _, off := m.Zone(); off == offA {
			a = m
		} else {
			b = m
		}
	}
	return b
}

// crate is a Rate compiled for the engine: times in nanoseconds or unix
// milliseconds, open effective ends as the extremes of int64.
type crate struct {
	perMinute, connectFee, minCharge int64
	first, next                      int64 // increments, ns
	from, until                      int64 // band, ns since local midnight
	effFrom, effUntil                int64 // unix ms
	days                             Days
	prefix, description, band        string
}

// maxRatesPerPrefix bounds the rates one prefix may have (bands times
// effective periods).
const maxRatesPerPrefix = 1000

// NewDeck compiles a deck version from its terms, its zone (which the
// caller loads, usually with time.LoadLocation(info.TimeZone)) and its
// rates. Rates are validated; the first bad one is reported with its
// index as an EINVALID *callbridge.Error.
func NewDeck(info DeckInfo, loc *time.Location, rates []Rate) (*Deck, error) {
	b, err := NewDeckBuilder(info, loc, len(rates))
	if err != nil {
		return nil, err
	}
	for i := range rates {
		if err := b.Add(&rates[i]); err != nil {
			return nil, err
		}
	}
	return b.Deck()
}

// DeckBuilder compiles a deck from rates given one at a time, so that a
// loader reading rows from a database holds only the compiled deck, never
// the rates as well: a deck of millions of rates would otherwise need
// both at once. Rates added in the deck's order (prefix, priority,
// effective_from descending with open last, days, from: the order the
// store reads them in) are not sorted again.
type DeckBuilder struct {
	d     *Deck
	prio  []int32 // the rates' priorities, for sorting; dropped by Deck
	edges map[int64]bool
	// sorted stays true while every rate added sorts after the one before.
	sorted bool
	done   bool
}

// NewDeckBuilder starts compiling a deck version from its terms and its
// zone, as NewDeck does, with room for sizeHint rates.
func NewDeckBuilder(info DeckInfo, loc *time.Location, sizeHint int) (*DeckBuilder, error) {
	if err := info.Validate(); err != nil {
		return nil, err
	}
	if loc == nil || loc.String() != info.TimeZone {
		return nil, callbridge.FieldError("time_zone", "location does not match time zone %q", info.TimeZone)
	}
	d := &Deck{
		info:  info,
		loc:   loc,
		unit:  pow10(6 - info.Precision),
		round: info.Rounding,
		short: info.ShortMS,
		def:   -1,
		flat:  true,
	}
	if d.round == "" {
		d.round = RoundUp
	}
	if d.short == 0 {
		d.short = DefaultShortMS
	}
	d.info.Holidays = slices.Clone(info.Holidays)
	for _, h := range info.Holidays {
		t, _ := time.Parse(time.DateOnly, h) // checked by Validate
		d.holidays = append(d.holidays, t.Unix()/86400)
	}
	slices.Sort(d.holidays)
	d.holidays = slices.Compact(d.holidays)
	sizeHint = max(sizeHint, 0)
	d.rates = make([]crate, 0, sizeHint+1) // +1: the default rate
	return &DeckBuilder{d: d, prio: make([]int32, 0, sizeHint), edges: map[int64]bool{}, sorted: true}, nil
}

// Len returns the number of rates added.
func (b *DeckBuilder) Len() int { return len(b.prio) }

// Add validates r and adds it to the deck. A bad rate is reported with
// its index among the rates added, as an EINVALID *callbridge.Error; the
// builder is then of no further use.
func (b *DeckBuilder) Add(r *Rate) error {
	d := b.d
	if err := r.Validate(); err != nil {
		return fmt.Errorf("rating: rate %d (prefix %q): %w", len(b.prio), r.Prefix, err)
	}
	c := compile(r)
	if n := len(d.rates); n > 0 && b.sorted && compareRates(&d.rates[n-1], b.prio[n-1], &c, r.Priority) > 0 {
		b.sorted = false
	}
	d.rates = append(d.rates, c)
	b.prio = append(b.prio, r.Priority)
	if r.Days != AllDays || r.From != 0 || r.Until != Midnight {
		d.flat = false
	}
	b.edges[c.from], b.edges[c.until] = true, true
	for _, e := range [2]int64{c.effFrom, c.effUntil} {
		if e != math.MinInt64 && e != math.MaxInt64 {
			d.effs = append(d.effs, e)
		}
	}
	return nil
}

// compareRates orders compiled rates as a deck holds them: by prefix,
// priority, effective_from descending (an open one last), days, from.
func compareRates(a *crate, pa int32, b *crate, pb int32) int {
	if c := cmp.Compare(a.prefix, b.prefix); c != 0 {
		return c
	}
	if c := cmp.Compare(pa, pb); c != 0 {
		return c
	}
	if c := -cmp.Compare(a.effFrom, b.effFrom); c != 0 {
		return c
	}
	if c := cmp.Compare(a.days, b.days); c != 0 {
		return c
	}
	return cmp.Compare(a.from, b.from)
}

// builderOrder sorts a builder's rates in place, with their priorities.
type builderOrder struct {
	rates []crate
	prio  []int32
}

func (o builderOrder) Len() int { return len(o.rates) }
func (o builderOrder) Less(i, j int) bool {
	return compareRates(&o.rates[i], o.prio[i], &o.rates[j], o.prio[j]) < 0
}
func (o builderOrder) Swap(i, j int) {
	o.rates[i], o.rates[j] = o.rates[j], o.rates[i]
	o.prio[i], o.prio[j] = o.prio[j], o.prio[i]
}

// Deck finishes the deck. It may be called once.
func (b *DeckBuilder) Deck() (*Deck, error) {
	if b.done {
		return nil, callbridge.Errorf(callbridge.EINTERNAL, "rating: DeckBuilder.Deck called twice")
	}
	b.done = true
	d := b.d
	if !b.sorted {
		// In place and stable, as the rates' given order decides ties.
		sort.Stable(builderOrder{d.rates, b.prio})
	}
	b.prio = nil
	slices.Sort(d.effs)
	d.effs = slices.Clip(slices.Compact(d.effs))
	for e := range b.edges {
		if e != 0 && e != int64(Midnight)*int64(time.Second) {
			d.bounds = append(d.bounds, e)
		}
	}
	slices.Sort(d.bounds)
	if info := d.info; info.Default != nil {
		c := compile(info.Default)
		c.days, c.from, c.until = AllDays, 0, int64(Midnight)*int64(time.Second)
		c.effFrom, c.effUntil = math.MinInt64, math.MaxInt64
		d.def = int32(len(d.rates))
		d.rates = append(d.rates, c)
	}
	d.rates = slices.Clip(d.rates)
	if !d.flat {
		d.buildZones()
	}
	if err := d.buildTrie(); err != nil {
		return nil, err
	}
	return d, nil
}

func compile(r *Rate) crate {
	return crate{
		perMinute:   r.PerMinute,
		connectFee:  r.ConnectFee,
		minCharge:   r.MinCharge,
		first:       int64(r.FirstIncrement) * int64(time.Second),
		next:        int64(r.NextIncrement) * int64(time.Second),
		from:        int64(r.From) * int64(time.Second),
		until:       int64(r.Until) * int64(time.Second),
		effFrom:     effMS(r.EffectiveFrom, math.MinInt64),
		effUntil:    effMS(r.EffectiveUntil, math.MaxInt64),
		days:        r.Days,
		prefix:      r.Prefix,
		description: r.Description,
		band:        r.Band,
	}
}

func effMS(t time.Time, open int64) int64 {
	if t.IsZero() {
		return open
	}
	return t.UnixMilli()
}

func pow10(n int) int64 {
	v := int64(1)
	for range n {
		v *= 10
	}
	return v
}

// buildTrie builds the trie of the distinct prefixes of d.rates (sorted,
// so each prefix's rates are one run).
func (d *Deck) buildTrie() error {
	end := len(d.rates)
	if d.def >= 0 {
		end--
	}
	distinct := 0
	for i := 0; i < end; i++ {
		if i == 0 || d.rates[i].prefix != d.rates[i-1].prefix {
			distinct++
		}
	}
	groups := make([]prefix.Group, 0, distinct)
	for i := 0; i < end; {
		j := i
		for j < end && d.rates[j].prefix == d.rates[i].prefix {
			j++
		}
		if j-i > maxRatesPerPrefix {
			return callbridge.FieldError("prefix", "prefix %s has %d rates, more than %d", d.rates[i].prefix, j-i, maxRatesPerPrefix)
		}
		groups = append(groups, prefix.Group{Prefix: d.rates[i].prefix, Lo: int32(i), Count: uint16(j - i)})
		i = j
	}
	d.trie = prefix.New[struct{}](groups)
	return nil
}

// Info returns the deck's terms.
func (d *Deck) Info() DeckInfo { return d.info }

// Location returns the zone time bands are read in.
func (d *Deck) Location() *time.Location { return d.loc }

// Len returns the number of rates, the default rate not counted.
func (d *Deck) Len() int {
	if d.def >= 0 {
		return len(d.rates) - 1
	}
	return len(d.rates)
}

// roundTo divides the 128-bit hi:lo by den and rounds the quotient to a
// whole number by the deck's rule, saturating at math.MaxInt64.
func (d *Deck) roundDiv(hi, lo uint64, den uint64) int64 {
	if hi >= den {
		return math.MaxInt64
	}
	q, rem := bits.Div64(hi, lo, den)
	switch d.round {
	case RoundUp:
		if rem != 0 {
			q++
		}
	case RoundHalfUp:
		if rem >= den-rem {
			q++
		}
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

// Prefixes calls yield with each distinct prefix that has rates, in
// ascending order, until yield returns false. The default rate has no
// prefix and is not yielded.
func (d *Deck) Prefixes(yield func(prefix string) bool) {
	end := len(d.rates)
	if d.def >= 0 {
		end--
	}
	for i := 0; i < end; i++ {
		if i > 0 && d.rates[i].prefix == d.rates[i-1].prefix {
			continue
		}
		if !yield(d.rates[i].prefix) {
			return
		}
	}
}

// StableUntil returns the first instant after at when the rate the deck
// picks for some number may change: the next band edge, local midnight or
// change of the zone's offset (for a deck with time bands), or the next
// effective_from or effective_until of a rate. Until then every call's
// rate is the one at at. It returns the zero time when no change ever
// comes (every rate applies at all times, for ever).
func (d *Deck) StableUntil(at time.Time) time.Time {
	next := int64(math.MaxInt64) // unix ns
	atNS := at.UnixNano()
	if !d.flat {
		next = atNS + d.nextBoundary(at, 0, d.local(at))
	}
	atMS := at.UnixMilli()
	if i, _ := slices.BinarySearch(d.effs, atMS+1); i < len(d.effs) {
		if e := d.effs[i] * int64(time.Millisecond); e < next {
			next = e
		}
	}
	if next == math.MaxInt64 {
		return time.Time{}
	}
	return time.Unix(0, next).UTC()
}
