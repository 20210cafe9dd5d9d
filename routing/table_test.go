package routing

import (
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"
	"time"

	"callbridge"
	"callbridge/rating"
)

// randomWorld builds a plan with bands and a catch-all, and buy decks
// with bands, effective dates and default rates, over a small digit
// space so that plan and deck prefixes nest in every way.
func randomWorld(t *testing.T, seed uint64) (*Plan, *rating.Registry) {
	rng := rand.New(rand.NewPCG(seed, 99))
	prefix := func() string {
		p := strconv.Itoa(1 + rng.IntN(3))
		for l := rng.IntN(4); l > 0; l-- {
			p += strconv.Itoa(rng.IntN(3))
		}
		return p
	}
	gws := []string{"g0", "g1", "g2", "g3"}
	strategies := []Strategy{LeastCost, Priority, Weighted}
	var routes []Route
	seen := map[string]bool{}
	for range 40 {
		r := route(prefix(), strategies[rng.IntN(3)])
		if rng.IntN(4) == 0 {
			r.Prefix = ""
		}
		if rng.IntN(3) == 0 {
			r.Days, r.From, r.Until = rating.Weekdays, 8*3600, 18*3600
		} else {
			r.Priority = 1
		}
		key := r.Prefix + "/" + strconv.Itoa(int(r.Priority))
		if seen[key] {
			continue
		}
		seen[key] = true
		for _, i := range rng.Perm(len(gws))[:1+rng.IntN(len(gws))] {
			r.Gateways = append(r.Gateways, Target{Gateway: gws[i], Weight: int32(1 + rng.IntN(5))})
		}
		routes = append(routes, r)
	}
	p := newPlan(t, PlanInfo{MaxAttempts: 3}, routes...)
	var decks []*rating.Deck
	for _, g := range gws[:3] { // g3 has no deck
		var rates []rating.Rate
		have := map[string]bool{}
		for range 30 {
			pre := prefix()
			if have[pre] {
				continue
			}
			have[pre] = true
			r := buyRate(pre, int64(1+rng.IntN(100))*1000)
			switch rng.IntN(4) {
			case 0:
				peak := r
				peak.Days, peak.From, peak.Until, peak.PerMinute = rating.Weekdays, 9*3600, 17*3600, r.PerMinute*2
				r.Priority = 1
				rates = append(rates, peak)
			case 1:
				r.EffectiveFrom = utc("2026-03-02T12:00:00Z")
			}
			rates = append(rates, r)
		}
		var def *rating.Rate
		if rng.IntN(2) == 0 {
			def = &rating.Rate{PerMinute: 500_000, FirstIncrement: 60, NextIncrement: 60}
		}
		decks = append(decks, buyDeck(t, g, "EUR", def, rates...))
	}
	return p, registry(decks...)
}

// TestTableMatchesPlan checks that a Table answers exactly as the plan
// it caches, inside its validity and outside it (where it falls back).
func TestTableMatchesPlan(t *testing.T) {
	for seed := range uint64(20) {
		p, reg := randomWorld(t, seed)
		built := utc("2026-03-02T07:00:00Z") // Monday 08:00 in Berlin
		table := NewTable(p, reg, built)
		rng := rand.New(rand.NewPCG(seed, 3))
		health := HealthMap{"g1": {Breaker: BreakerHalfOpen}, "g2": {Active: 1, MaxActive: 1}}
		var got, want Resolution
		for range 2000 {
			n := strconv.Itoa(1 + rng.IntN(3))
			for l := rng.IntN(8); l > 0; l-- {
				n += strconv.Itoa(rng.IntN(4))
			}
			at := built.Add(time.Duration(rng.Int64N(int64(12 * time.Hour))))
			if rng.IntN(10) == 0 {
				at = built.Add(-time.Duration(rng.Int64N(int64(time.Hour))))
			}
			s1, s2 := rng.Uint64(), rng.Uint64()
			table.Resolve(&got, callbridge.Number(n), at, Sources{Prices: reg, Health: health, Rand: rand.NewPCG(s1, s2)})
			p.Resolve(&want, callbridge.Number(n), at, Sources{Prices: reg, Health: health, Rand: rand.NewPCG(s1, s2)})
			got.touch = 0
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d, %s at %v:\ntable %s\nplan  %s", seed, n, at, summary(&got), summary(&want))
			}
		}
	}
}

func TestTableValidity(t *testing.T) {
	newPrice := utc("2026-03-02T12:00:00Z")
	later := rating.Rate{Prefix: "49", PerMinute: 5_000, FirstIncrement: 60, NextIncrement: 60, Days: rating.AllDays, Until: rating.Midnight, EffectiveFrom: newPrice}
	reg := registry(buyDeck(t, "a", "EUR", nil, buyRate("49", 10_000), later), buyDeck(t, "b", "EUR", nil, buyRate("49", 20_000)))
	p := newPlan(t, PlanInfo{}, route("49", LeastCost, "a", "b"))
	built := utc("2026-03-02T07:00:00Z")
	table := NewTable(p, reg, built)
	if want := newPrice.Add(-CostBasisMS * time.Millisecond); !table.Until().Equal(want) {
		t.Errorf("until: got %v, want %v (a reference call before the new price)", table.Until(), want)
	}
	var res Resolution
	table.Resolve(&res, "4912", newPrice, Sources{Prices: reg})
	if got, want := summary(&res), "a:ok:5000 b:ok:20000 | "; got != want {
		t.Errorf("after until: got %s, want %s (the new price, from the deck)", got, want)
	}

	// A new version of b's deck makes b the cheapest: the table, built
	// before it, must not answer with the old price.
	cheaper, err := rating.NewDeck(rating.DeckInfo{ID: "deck-b", Gateway: "b", Name: "b", Currency: "EUR", TimeZone: "Europe/Berlin",
		Precision: 6, Version: 2}, loc(t, "Europe/Berlin"), []rating.Rate{buyRate("49", 1_000)})
	if err != nil {
		t.Fatal(err)
	}
	reg.Put(cheaper)
	table.Resolve(&res, "4912", built, Sources{Prices: reg})
	if got, want := summary(&res), "b:ok:1000 a:ok:10000 | "; got != want {
		t.Errorf("after a deck changed: got %s, want %s", got, want)
	}
	// Through a PriceSource that is not the table's own, each gateway's
	// deck is compared.
	other := registry(buyDeck(t, "a", "EUR", nil, buyRate("49", 10_000)), cheaper)
	table.Resolve(&res, "4912", built, Sources{Prices: other})
	if got, want := summary(&res), "b:ok:1000 a:ok:10000 | "; got != want {
		t.Errorf("another registry: got %s, want %s", got, want)
	}

	// A deck that takes over later bounds the table.
	next, err := rating.NewDeck(rating.DeckInfo{ID: "deck-b2", Gateway: "b", Name: "b", Currency: "EUR", TimeZone: "Europe/Berlin",
		Precision: 6, Version: 1, EffectiveFrom: utc("2026-03-02T09:00:00Z")}, loc(t, "Europe/Berlin"), []rating.Rate{buyRate("49", 2_000)})
	if err != nil {
		t.Fatal(err)
	}
	reg.Put(next)
	table = NewTable(p, reg, built)
	if want := utc("2026-03-02T09:00:00Z"); !table.Until().Equal(want) {
		t.Errorf("until with a deck to come: got %v, want %v", table.Until(), want)
	}
}
