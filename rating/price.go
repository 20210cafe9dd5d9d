// Package rating prices calls. A Deck is a compiled version of a rate
// deck (an account's sell rates or a carrier's buy rates); Deck.Price
// turns a Usage (destination, answer time, billed milliseconds) into a
// Result in int64 micro-units of the deck's currency, with the arithmetic
// that produced it: longest-prefix match on E.164 digits, the time band in
// force in the deck's zone, increments, connect fee, minimum, and the
// deck's rounding, the call split where it crosses a band boundary.
// ParseCSV and WriteCSV read and write decks' rates.
//
// A Registry holds a process's compiled decks and finds the one in force
// for an account or a gateway at a time.
//
// It performs no I/O and reads no clock: the caller loads the deck's time
// zone and says when the call started. It never uses floating point for
// money, and it never fails to price a call: what it cannot rate it flags.
// It does not store or load decks or record CDRs; the postgres package
// (postgres.DeckSync fills the Registry) and the CDR pipeline do.
package rating

import (
	"math"
	"math/bits"
	"strings"
	"time"

	"callbridge"
)

// Usage is what the engine prices: one call leg to a destination.
type Usage struct {
	// Number is the destination, E.164 digits.
	Number callbridge.Number
	// Start is when the call was answered (for an unanswered call, when it
	// started). Its location is irrelevant; bands are read in the deck's.
	Start time.Time
	// BillMS is the billed duration in milliseconds, FreeSWITCH's
	// billmsec. Zero or less means the call was not answered.
	BillMS int64
}

// Flags qualify a Result.
type Flags uint8

// Result flags.
const (
	// FlagUnanswered: the call was not answered; it costs nothing.
	FlagUnanswered Flags = 1 << iota
	// FlagShort: the call was shorter than the deck's ShortMS; it is
	// recorded but costs nothing.
	FlagShort
	// FlagUnratedDefault: no rate matched (all or part of) the call and
	// the deck's default rate priced it.
	FlagUnratedDefault
	// FlagUnrated: no rate matched (all or part of) the call and the deck
	// has no default; the unmatched time costs nothing.
	FlagUnrated
	// FlagMinimum: the rate's minimum charge replaced a smaller amount.
	FlagMinimum
	// FlagMergedParts: the call crossed more than MaxParts bands; the last
	// part sums all the remaining ones.
	FlagMergedParts
	// FlagOverflow: an amount exceeded int64 and was saturated. It only
	// happens with absurd durations.
	FlagOverflow
)

var flagNames = [...]string{"unanswered", "short", "unrated_default", "unrated", "minimum", "merged_parts", "overflow"}

// Has reports whether all of f's flags are set in fs.
func (fs Flags) Has(f Flags) bool { return fs&f == f }

// Names returns the set flags' names, e.g. ["unrated_default"].
func (fs Flags) Names() []string {
	names := []string{}
	for i, n := range flagNames {
		if fs&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return names
}

// String returns the flags' names separated by commas.
func (fs Flags) String() string { return strings.Join(fs.Names(), ",") }

// MaxParts is how many parts a Result holds; see FlagMergedParts.
const MaxParts = 8

// Part is a stretch of a call priced at one rate: the call split at the
// band boundaries it crossed.
type Part struct {
	// OffsetMS is where the part starts, from the call's start.
	OffsetMS int64 `json:"offset_ms"`
	// DurationMS is the call's actual time within the part.
	DurationMS int64 `json:"duration_ms"`
	// BilledMS is the time billed for the part: whole increments.
	BilledMS int64 `json:"billed_ms"`
	// Increments is how many increments the part bills (the first
	// increment of the call counts as one).
	Increments int64 `json:"increments"`
	// Prefix, Description and Band identify the rate; empty when the
	// part is unrated or priced by the default rate.
	Prefix      string `json:"prefix"`
	Description string `json:"description"`
	Band        string `json:"band"`
	// PerMinute is the rate's price of 60 s.
	PerMinute int64 `json:"per_minute_micros"`
	// Amount is PerMinute × BilledMS / 60000, rounded to the deck's
	// precision by its rule.
	Amount int64 `json:"amount_micros"`
}

// Result is a priced call with the arithmetic that priced it. Prefix,
// Description and Band are those of the rate in force when the call
// started, which also supplies the increments, connect fee and minimum.
type Result struct {
	// Flags qualify the result: unrated, short, minimum applied...
	Flags Flags `json:"flags"`
	// Currency is the deck's, the unit of every amount.
	Currency string `json:"currency"`
	// Prefix is the matched prefix; empty when unrated or priced by the
	// default rate.
	Prefix string `json:"prefix"`
	// Description and Band are the matched rate's.
	Description string `json:"description"`
	Band        string `json:"band"`
	// DurationMS is the usage's BillMS.
	DurationMS int64 `json:"duration_ms"`
	// BilledMS is DurationMS rounded up to whole increments; zero when
	// the call is not charged.
	BilledMS int64 `json:"billed_ms"`
	// FirstIncrement and NextIncrement are the increments applied, in
	// seconds.
	FirstIncrement int32 `json:"first_increment"`
	NextIncrement  int32 `json:"next_increment"`
	// ConnectFee is the fee charged (zero when the call is not charged).
	ConnectFee int64 `json:"connect_fee_micros"`
	// MinCharge is the minimum of the rate in force at the start.
	MinCharge int64 `json:"min_charge_micros"`
	// Amount is what the call costs in micro-units of Currency.
	Amount int64 `json:"amount_micros"`

	nparts int
	parts  [MaxParts]Part
}

// Parts returns the priced parts of the call, in order. The slice aliases
// r; it is empty when the call is not charged or not rated.
func (r *Result) Parts() []Part { return r.parts[:r.nparts] }

// Price rates one call. It never fails: a call no rate matches is priced
// by the default rate or flagged unrated, and the flags say which.
//
// The arithmetic, exactly:
//
//  1. The rate is looked up by the longest prefix of u.Number that has a
//     rate in force at u.Start (EffectiveFrom <= Start < EffectiveUntil),
//     taking that prefix's first rate, by Priority, whose band contains
//     u.Start read in the deck's zone. No match: the default rate, else
//     unrated. The effective period is judged at the start only.
//  2. BillMS <= 0: FlagUnanswered, amount 0. BillMS < ShortMS: FlagShort,
//     amount 0.
//  3. Billed time: the first increment F, then increments of N, counted
//     from the start of the call. A started increment is billed whole, by
//     even a millisecond: billed = F if BillMS <= F, else
//     F + ceil((BillMS - F) / N) × N.
//  4. Bands: the billed time is cut where the call crosses a band
//     boundary (a band's start or end time, local midnight, or a change of
//     the zone's UTC offset), moved forward to the next increment
//     boundary, so every increment is priced whole at the band it starts
//     in. The increments, connect fee and minimum stay those of the rate
//     of step 1; only the per-minute price changes from part to part.
//     Adjacent stretches priced by the same rate are one part.
//  5. Each part costs PerMinute × billed seconds / 60, rounded to the
//     deck's precision by its rule (up by default).
//  6. Amount = ConnectFee + the parts; if below MinCharge, MinCharge
//     (FlagMinimum). The sum is rounded to the precision once more, which
//     changes it only if the fee or the minimum has more decimals than the
//     precision.
//
// Price makes no allocation.
func (d *Deck) Price(u Usage) (r Result) {
	r.Currency = d.info.Currency
	r.DurationMS = u.BillMS

	leaf := d.trie.Walk(string(u.Number))
	startMS := u.Start.UnixMilli()

	var lt local
	if !d.flat {
		lt = d.local(u.Start)
	}
	cur := d.pick(leaf, startMS, lt)
	if cur < 0 {
		cur = d.def
		if cur >= 0 {
			r.Flags |= FlagUnratedDefault
		} else {
			r.Flags |= FlagUnrated
		}
	}
	var first *crate
	if cur >= 0 {
		first = &d.rates[cur]
		if cur != d.def {
			r.Prefix, r.Description, r.Band = first.prefix, first.description, first.band
		}
		r.FirstIncrement, r.NextIncrement = int32(first.first/int64(time.Second)), int32(first.next/int64(time.Second))
		r.MinCharge = first.minCharge
	}
	switch {
	case u.BillMS <= 0:
		r.Flags |= FlagUnanswered
		return r
	case u.BillMS < d.short:
		r.Flags |= FlagShort
		return r
	case first == nil:
		return r
	}

	dur := int64(math.MaxInt64)
	if u.BillMS < math.MaxInt64/int64(time.Millisecond) {
		dur = u.BillMS * int64(time.Millisecond)
	}
	billed := ceilIncrement(dur, first.first, first.next)
	r.BilledMS = billed / int64(time.Millisecond)

	var total uint64 // exact connect fee + parts, saturating
	partStart := int64(0)
	if !d.flat {
		pos := int64(0)
		for {
			e := pos + d.nextBoundary(u.Start, pos, lt)
			if e >= billed {
				break
			}
			s := ceilIncrement(e, first.first, first.next)
			if s >= billed {
				break
			}
			pos = s
			lt = d.local(u.Start.Add(time.Duration(pos)))
			next := d.pick(leaf, startMS, lt)
			if next < 0 {
				next = d.def
			}
			if next == cur {
				continue
			}
			total = addSat(total, d.part(&r, cur, partStart, pos, dur, first))
			partStart, cur = pos, next
		}
	}
	total = addSat(total, d.part(&r, cur, partStart, billed, dur, first))

	r.ConnectFee = first.connectFee
	total = addSat(total, uint64(first.connectFee))
	if total < uint64(first.minCharge) {
		total = uint64(first.minCharge)
		r.Flags |= FlagMinimum
	}
	if amt := d.roundDiv(0, total, uint64(d.unit)); total == math.MaxInt64 || amt > math.MaxInt64/d.unit {
		r.Flags |= FlagOverflow
		r.Amount = math.MaxInt64
	} else {
		r.Amount = amt * d.unit
	}
	return r
}

// part prices the billed stretch [from, to) (ns from the start) at rate
// idx (-1: unrated), appends it to r and returns its amount.
func (d *Deck) part(r *Result, idx int32, from, to, dur int64, first *crate) uint64 {
	p := Part{
		OffsetMS:   from / int64(time.Millisecond),
		DurationMS: (min(to, dur) - min(from, dur)) / int64(time.Millisecond),
		BilledMS:   (to - from) / int64(time.Millisecond),
		Increments: incrementsBefore(to, first.first, first.next) - incrementsBefore(from, first.first, first.next),
	}
	switch {
	case idx < 0:
		r.Flags |= FlagUnrated
	default:
		c := &d.rates[idx]
		if idx == d.def {
			r.Flags |= FlagUnratedDefault
		} else {
			p.Prefix, p.Description, p.Band = c.prefix, c.description, c.band
		}
		p.PerMinute = c.perMinute
		hi, lo := bits.Mul64(uint64(c.perMinute), uint64((to-from)/int64(time.Second)))
		q := d.roundDiv(hi, lo, 60*uint64(d.unit))
		if q > math.MaxInt64/d.unit {
			r.Flags |= FlagOverflow
			p.Amount = math.MaxInt64
		} else {
			p.Amount = q * d.unit
		}
	}
	if r.nparts < MaxParts {
		r.parts[r.nparts] = p
		r.nparts++
		return uint64(p.Amount)
	}
	r.Flags |= FlagMergedParts
	last := &r.parts[MaxParts-1]
	last.DurationMS += p.DurationMS
	last.BilledMS += p.BilledMS
	last.Increments += p.Increments
	last.Amount = int64(min(addSat(uint64(last.Amount), uint64(p.Amount)), math.MaxInt64))
	if last.Prefix != p.Prefix || last.Band != p.Band || last.PerMinute != p.PerMinute {
		last.Prefix, last.Description, last.Band, last.PerMinute = "", "", "", 0
	}
	return uint64(p.Amount)
}

func addSat(a, b uint64) uint64 {
	s, c := bits.Add64(a, b, 0)
	if c != 0 || s > math.MaxInt64 {
		return math.MaxInt64
	}
	return s
}

// ceilIncrement rounds x (ns, > 0) up to the next increment boundary:
// F, F+N, F+2N...
func ceilIncrement(x, first, next int64) int64 {
	if x <= first {
		return first
	}
	k := (x - first + next - 1) / next
	if k > (math.MaxInt64-first)/next {
		return math.MaxInt64 / next * next
	}
	return first + k*next
}

// incrementsBefore counts the increments that end at or before the
// increment boundary x.
func incrementsBefore(x, first, next int64) int64 {
	if x <= 0 {
		return 0
	}
	if x <= first {
		return 1
	}
	return 1 + (x-first+next-1)/next
}

// local is an instant read in the deck's zone.
type local struct {
	tod     int64 // ns since local midnight
	zoneEnd int64 // unix second the zone's offset next changes
	weekday int
	holiday bool
}

// local reads t in the deck's zone, using the zone's UTC offset at t.
func (d *Deck) local(t time.Time) local {
	off, zoneEnd := d.zoneAt(t)
	sec := t.Unix() + int64(off)
	day := sec / 86400
	if sec%86400 < 0 {
		day--
	}
	l := local{
		tod:     (sec-day*86400)*int64(time.Second) + int64(t.Nanosecond()),
		zoneEnd: zoneEnd,
		weekday: int((day%7 + 11) % 7), // 1970-01-01 was a Thursday
	}
	if len(d.holidays) > 0 {
		lo, hi := 0, len(d.holidays)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if d.holidays[m] < day {
				lo = m + 1
			} else {
				hi = m
			}
		}
		l.holiday = lo < len(d.holidays) && d.holidays[lo] == day
	}
	return l
}

// nextBoundary returns how long after start+pos (read as lt) the next
// possible band change is: the next band edge of the day, local midnight,
// or the next change of the zone's offset, whichever comes first.
func (d *Deck) nextBoundary(start time.Time, pos int64, lt local) int64 {
	next := int64(Midnight) * int64(time.Second)
	for _, b := range d.bounds {
		if b > lt.tod {
			next = b
			break
		}
	}
	delta := next - lt.tod
	if lt.zoneEnd != math.MaxInt64 {
		t := start.Add(time.Duration(pos))
		if z := int64(time.Unix(lt.zoneEnd, 0).Sub(t)); z > 0 && z < delta {
			delta = z
		}
	}
	return delta
}

// zoneAt returns the deck zone's offset at t and the unix second it next
// changes (math.MaxInt64: never), from the table NewDeck built, or from
// the time package outside the table's years.
func (d *Deck) zoneAt(t time.Time) (off int, end int64) {
	sec := t.Unix()
	z := d.zones
	if len(z) == 0 || sec < z[0].start || sec >= d.zonesUntil {
		tl := t.In(d.loc)
		_, off = tl.Zone()
		end = math.MaxInt64
		if _, e := tl.ZoneBounds(); !e.IsZero() {
			end = e.Unix()
		}
		return off, end
	}
	lo, hi := 0, len(z)
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if z[m].start <= sec {
			lo = m
		} else {
			hi = m
		}
	}
	end = d.zonesUntil
	if lo+1 < len(z) {
		end = z[lo+1].start
	}
	return int(z[lo].off), end
}

// pick returns the index of the rate for a call that started at startMS
// (unix ms) at the local time lt: from node nd up, the longest prefix
// with a rate in force and matching, first by priority. -1: none.
func (d *Deck) pick(nd int32, startMS int64, lt local) int32 {
	for ; nd >= 0; nd = d.trie.Nodes[nd].Up {
		n := &d.trie.Nodes[nd]
		for i := n.Lo; i < n.Lo+int32(n.Count); i++ {
			c := &d.rates[i]
			if startMS < c.effFrom || startMS >= c.effUntil {
				continue
			}
			if !d.flat && (!c.days.matches(lt.weekday, lt.holiday) || lt.tod < c.from || lt.tod >= c.until) {
				continue
			}
			return i
		}
	}
	return -1
}
