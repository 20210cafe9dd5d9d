package rating

import (
	"slices"
	"testing"
	"time"
)

func TestDeckPrefixes(t *testing.T) {
	peak := rate("49", 2)
	peak.Days, peak.From, peak.Until, peak.Priority = Weekdays, 8*3600, 18*3600, 0
	d := newDeck(t, DeckInfo{Default: &Rate{PerMinute: 9, FirstIncrement: 1, NextIncrement: 1}},
		rate("4930", 1), rate("49", 1), peak, rate("1", 5))
	var got []string
	d.Prefixes(func(p string) bool { got = append(got, p); return true })
	if want := []string{"1", "49", "4930"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	got = nil
	d.Prefixes(func(p string) bool { got = append(got, p); return false })
	if len(got) != 1 {
		t.Errorf("got %v after yield returned false, want one prefix", got)
	}
}

func TestDeckStableUntil(t *testing.T) {
	newPrice := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	changed := rate("33", 7)
	changed.EffectiveFrom = newPrice
	flat := newDeck(t, DeckInfo{}, rate("49", 1), changed)
	peak := rate("49", 2)
	peak.Days, peak.From, peak.Until = Weekdays, 8*3600, 18*3600
	offpeak := rate("49", 1)
	offpeak.Priority = 1
	banded := newDeck(t, DeckInfo{TimeZone: "Europe/Berlin"}, peak, offpeak)
	always := newDeck(t, DeckInfo{}, rate("49", 1))
	tests := []struct {
		name string
		d    *Deck
		at   time.Time
		want time.Time
	}{
		{"flat, never changes", always, utc("2026-03-02T10:00:00Z"), time.Time{}},
		{"flat, before an effective date", flat, utc("2026-03-02T10:00:00Z"), newPrice},
		{"flat, at the effective date", flat, newPrice, time.Time{}},
		// Monday 2 March 2026, 10:00 UTC is 11:00 in Berlin (CET):
		// the peak band ends at 18:00 local, 17:00 UTC.
		{"banded, in the peak", banded, utc("2026-03-02T10:00:00Z"), utc("2026-03-02T17:00:00Z")},
		{"banded, after the peak: local midnight", banded, utc("2026-03-02T20:00:00Z"), utc("2026-03-02T23:00:00Z")},
		// Summer time starts 29 March 2026 at 01:00 UTC.
		{"banded, across the change to summer time", banded, utc("2026-03-29T00:30:00Z"), utc("2026-03-29T01:00:00Z")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.StableUntil(tt.at); !got.Equal(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRegistryGatewayDeckUntil(t *testing.T) {
	jan := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	feb := jan.AddDate(0, 1, 0)
	a := newDeck(t, DeckInfo{ID: "a", Gateway: "gw", Version: 1, EffectiveFrom: jan}, rate("49", 1))
	b := newDeck(t, DeckInfo{ID: "b", Gateway: "gw", Version: 1, EffectiveFrom: feb}, rate("49", 2))
	var r Registry
	r.Replace([]*Deck{a, b}, r.Mark())
	tests := []struct {
		name      string
		at        time.Time
		want      *Deck
		wantUntil time.Time
	}{
		{"before any deck", jan.Add(-time.Hour), nil, jan},
		{"first deck, second to come", jan, a, feb},
		{"last deck", feb, b, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, until := r.GatewayDeckUntil("gw", tt.at)
			if d != tt.want || !until.Equal(tt.wantUntil) {
				t.Errorf("got %s until %v, want %s until %v", deckID(d), until, deckID(tt.want), tt.wantUntil)
			}
			if g := r.GatewayDeck("gw", tt.at); g != d {
				t.Errorf("GatewayDeck got %s, GatewayDeckUntil %s", deckID(g), deckID(d))
			}
		})
	}
	if d, until := r.GatewayDeckUntil("other", feb); d != nil || !until.IsZero() {
		t.Errorf("unknown gateway: got %s until %v, want none", deckID(d), until)
	}
}
