package routing

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/rating"
)

// summary writes a resolution as "gw:reason:cost" items, kept ones in
// attempt order, then " | " and the skipped ones.
func summary(r *Resolution) string {
	var kept, skipped []string
	for _, c := range r.Candidates {
		s := fmt.Sprintf("%s:%s", c.Gateway, c.Reason)
		if c.Priced {
			s += fmt.Sprintf(":%d", c.Cost)
		}
		if c.Kept {
			kept = append(kept, s)
		} else {
			skipped = append(skipped, s)
		}
	}
	if len(kept) != len(r.Attempts()) {
		return fmt.Sprintf("BROKEN: %d kept, %d attempts", len(kept), len(r.Attempts()))
	}
	return strings.Join(kept, " ") + " | " + strings.Join(skipped, " ")
}

func TestResolveLeastCost(t *testing.T) {
	at := utc("2026-03-02T10:00:00Z")
	decks := registry(
		buyDeck(t, "cheap", "EUR", nil, buyRate("49", 10_000), buyRate("4930", 50_000)),
		buyDeck(t, "mid", "EUR", nil, buyRate("49", 20_000)),
		buyDeck(t, "dear", "EUR", &rating.Rate{PerMinute: 90_000, FirstIncrement: 60, NextIncrement: 60}, buyRate("1", 1)),
		buyDeck(t, "tied", "EUR", nil, buyRate("49", 20_000)),
		buyDeck(t, "dollars", "USD", nil, buyRate("49", 1)),
		buyDeck(t, "other", "EUR", nil, buyRate("33", 1)),
	)
	p := newPlan(t, PlanInfo{MaxAttempts: 4},
		route("49", LeastCost, "dear", "tied", "mid", "cheap", "dollars", "nodeck", "other"))
	tests := []struct {
		name   string
		number string
		health HealthMap
		want   string
	}{
		{"cheapest first, ties in route order, default rate flagged", "4989123", nil,
			"cheap:ok:10000 tied:ok:20000 mid:ok:20000 dear:default_rate:90000 | dollars:currency_mismatch:1 nodeck:no_buy_deck other:no_buy_rate"},
		{"a longer buy prefix reprices a gateway", "4930123", nil,
			"tied:ok:20000 mid:ok:20000 cheap:ok:50000 dear:default_rate:90000 | dollars:currency_mismatch:1 nodeck:no_buy_deck other:no_buy_rate"},
		{"health skips, half-open probes", "4989123", HealthMap{
			"cheap": {Sofia: SofiaDown},
			"tied":  {Breaker: BreakerOpen},
			"mid":   {Breaker: BreakerHalfOpen, Sofia: SofiaUp},
			"dear":  {Active: 10, MaxActive: 10},
		}, "mid:probe:20000 | dear:at_capacity:90000 tied:circuit_open:20000 cheap:sofia_down:10000 dollars:currency_mismatch:1 nodeck:no_buy_deck other:no_buy_rate"},
		{"probing and calls-per-second", "4989123", HealthMap{
			"cheap": {Breaker: BreakerProbing},
			"tied":  {CPSFull: true},
			"mid":   {Active: 9, MaxActive: 10},
		}, "mid:ok:20000 dear:default_rate:90000 | tied:cps_limit:20000 cheap:circuit_probing:10000 dollars:currency_mismatch:1 nodeck:no_buy_deck other:no_buy_rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res Resolution
			p.Resolve(&res, callbridge.Number(tt.number), at, Sources{Prices: decks, Health: tt.health})
			if got := summary(&res); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if !res.Matched || res.Prefix != "49" || res.Strategy != LeastCost || res.MaxAttempts != 4 || res.PostDialMS != DefaultPostDialMS {
				t.Errorf("got %+v", res)
			}
		})
	}
	t.Run("equal rounded costs: the lower per-minute price first", func(t *testing.T) {
		whole := func(gw string, perMinute int64) *rating.Deck {
			d, err := rating.NewDeck(rating.DeckInfo{ID: gw, Gateway: gw, Name: gw, Currency: "EUR", TimeZone: "Europe/Berlin", Precision: 0},
				loc(t, "Europe/Berlin"), []rating.Rate{buyRate("49", perMinute)})
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		// Both round up to 1 EUR a minute.
		reg := registry(whole("x", 9_000), whole("y", 5_000))
		p := newPlan(t, PlanInfo{}, route("49", LeastCost, "x", "y"))
		var res Resolution
		p.Resolve(&res, "4989", at, Sources{Prices: reg})
		if got, want := summary(&res), "y:ok:1000000 x:ok:1000000 | "; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})
	t.Run("max attempts", func(t *testing.T) {
		p := newPlan(t, PlanInfo{MaxAttempts: 2}, route("49", LeastCost, "dear", "mid", "cheap"))
		var res Resolution
		p.Resolve(&res, "4989", at, Sources{Prices: decks})
		if got, want := summary(&res), "cheap:ok:10000 mid:ok:20000 | dear:max_attempts:90000"; got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	})
	t.Run("prices and deck of a candidate", func(t *testing.T) {
		var res Resolution
		p.Resolve(&res, "4989", at, Sources{Prices: decks})
		c := res.Attempts()[0]
		if c.Gateway != "cheap" || c.DeckID != "deck-cheap" || c.Currency != "EUR" || c.PerMinute != 10_000 || c.Cost != 10_000 {
			t.Errorf("got %+v", c)
		}
	})
	t.Run("no route", func(t *testing.T) {
		res := Resolution{Candidates: make([]Candidate, 3)}
		p.Resolve(&res, "33", at, Sources{Prices: decks})
		if res.Matched || len(res.Candidates) != 0 || len(res.Attempts()) != 0 {
			t.Errorf("got %+v, want no match and no candidates", res)
		}
	})
}

func TestResolvePriorityKeepsOrder(t *testing.T) {
	at := utc("2026-03-02T10:00:00Z")
	decks := registry(buyDeck(t, "b", "EUR", nil, buyRate("49", 1)), buyDeck(t, "c", "USD", nil, buyRate("49", 5)))
	p := newPlan(t, PlanInfo{}, route("49", Priority, "a", "b", "c", "d"))
	var res Resolution
	p.Resolve(&res, "4912", at, Sources{Prices: decks, Health: HealthMap{"b": {Breaker: BreakerOpen}}})
	// Unpriced gateways are kept (their cost is unknown, not high), and
	// another currency is no reason to skip one: nothing is compared.
	if got, want := summary(&res), "a:unpriced c:ok:5 d:unpriced | b:circuit_open:1"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestResolveWeighted(t *testing.T) {
	at := utc("2026-03-02T10:00:00Z")
	r := route("49", Weighted, "a", "b", "c")
	r.Gateways[0].Weight, r.Gateways[1].Weight, r.Gateways[2].Weight = 1, 3, 6
	p := newPlan(t, PlanInfo{}, r)
	t.Run("deterministic for a seed", func(t *testing.T) {
		var first, again []string
		for _, out := range []*[]string{&first, &again} {
			rng := rand.NewPCG(42, 7)
			var res Resolution
			for range 5 {
				p.Resolve(&res, "4912", at, Sources{Rand: rng})
				*out = append(*out, summary(&res))
			}
		}
		if !reflect.DeepEqual(first, again) {
			t.Errorf("same seed, different orders:\n%v\n%v", first, again)
		}
	})
	t.Run("first choice in proportion to weight", func(t *testing.T) {
		rng := rand.NewPCG(1, 2)
		counts := map[string]int{}
		var res Resolution
		const n = 20_000
		for range n {
			p.Resolve(&res, "4912", at, Sources{Rand: rng})
			if len(res.Attempts()) != 3 {
				t.Fatalf("got %d attempts, want 3", len(res.Attempts()))
			}
			counts[res.Attempts()[0].Gateway]++
		}
		for gw, want := range map[string]float64{"a": 0.1, "b": 0.3, "c": 0.6} {
			if got := float64(counts[gw]) / n; got < want-0.02 || got > want+0.02 {
				t.Errorf("%s first in %.3f of calls, want %.2f", gw, got, want)
			}
		}
	})
	t.Run("no source: heaviest first", func(t *testing.T) {
		var res Resolution
		p.Resolve(&res, "4912", at, Sources{})
		if got, want := summary(&res), "c:unpriced b:unpriced a:unpriced | "; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})
	t.Run("skipped gateways are not drawn", func(t *testing.T) {
		var res Resolution
		for seed := range uint64(50) {
			p.Resolve(&res, "4912", at, Sources{Rand: rand.NewPCG(seed, 0), Health: HealthMap{"c": {Sofia: SofiaDown}}})
			if got := summary(&res); !strings.HasSuffix(got, " | c:sofia_down") {
				t.Fatalf("got %s, want c skipped last", got)
			}
		}
	})
}

func TestResolutionNext(t *testing.T) {
	p := newPlan(t, PlanInfo{MaxAttempts: 2, PostDialMS: 30_000}, route("49", Priority, "a", "b", "c"))
	var res Resolution
	p.Resolve(&res, "4912", utc("2026-03-02T10:00:00Z"), Sources{})
	tests := []struct {
		name    string
		tried   int
		v       Verdict
		elapsed int64
		want    string
	}{
		{"carrier failed: next gateway", 1, Failover, 5_000, "b"},
		{"callee answered: stop", 1, Stop, 5_000, ""},
		{"max attempts", 2, Failover, 5_000, ""},
		{"post-dial budget spent", 1, Failover, 30_000, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := res.Next(tt.tried, tt.v, tt.elapsed)
			if ok != (tt.want != "") || c.Gateway != tt.want {
				t.Errorf("got %q, %v; want %q", c.Gateway, ok, tt.want)
			}
		})
	}
}

func TestResolveReusesStorage(t *testing.T) {
	p := newPlan(t, PlanInfo{}, route("49", Priority, "a", "b"))
	res := Resolution{Candidates: make([]Candidate, 0, 8)}
	before := &res.Candidates[:1][0]
	p.Resolve(&res, "4912", time.Now(), Sources{})
	if &res.Candidates[0] != before {
		t.Error("Resolve did not reuse the candidates' storage")
	}
}
