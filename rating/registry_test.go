package rating

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestRegistryInForce(t *testing.T) {
	jan := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	feb := jan.AddDate(0, 1, 0)
	old := newDeck(t, DeckInfo{ID: "old", AccountID: "acc", Version: 1, Precision: 6}, rate("49", 1))
	next := newDeck(t, DeckInfo{ID: "next", AccountID: "acc", Version: 1, Precision: 6, EffectiveFrom: feb}, rate("49", 2))
	buy := newDeck(t, DeckInfo{ID: "buy", Gateway: "carrier", Version: 1, Precision: 6, EffectiveFrom: jan}, rate("49", 3))
	var r Registry
	if r.Ready() {
		t.Fatal("an empty registry is ready before its first Replace")
	}
	r.Replace([]*Deck{next, buy, old}, r.Mark())
	if !r.Ready() || r.Len() != 3 {
		t.Fatalf("got ready %v, %d decks; want ready, 3", r.Ready(), r.Len())
	}
	tests := []struct {
		name string
		got  *Deck
		want *Deck
	}{
		{"before the next deck", r.AccountDeck("acc", feb.Add(-time.Nanosecond)), old},
		{"at its start", r.AccountDeck("acc", feb), next},
		{"long after", r.AccountDeck("acc", feb.AddDate(5, 0, 0)), next},
		{"other account", r.AccountDeck("other", feb), nil},
		{"gateway", r.GatewayDeck("carrier", feb), buy},
		{"gateway before its deck", r.GatewayDeck("carrier", jan.Add(-time.Second)), nil},
		{"an account id is no gateway", r.GatewayDeck("acc", feb), nil},
		{"by id", r.Deck("next"), next},
		{"unknown id", r.Deck("nope"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", deckID(tt.got), deckID(tt.want))
			}
		})
	}
}

func deckID(d *Deck) string {
	if d == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s v%d", d.info.ID, d.info.Version)
}

func TestRegistryVersions(t *testing.T) {
	v1 := newDeck(t, DeckInfo{ID: "d", AccountID: "acc", Version: 1, Precision: 6}, rate("49", 1))
	v2 := newDeck(t, DeckInfo{ID: "d", AccountID: "acc", Version: 2, Precision: 6}, rate("49", 2))
	// A new effective date moves the deck: it is indexed by its new start.
	v3 := newDeck(t, DeckInfo{ID: "d", AccountID: "acc", Version: 3, Precision: 6,
		EffectiveFrom: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}, rate("49", 3))
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	var r Registry
	if !r.Put(v2) || r.Put(v1) {
		t.Fatal("Put: a newer version must win over an older one loaded later")
	}
	if got := r.AccountDeck("acc", now); got != v2 {
		t.Fatalf("got %s, want d v2", deckID(got))
	}
	if !r.Put(v3) {
		t.Fatal("Put v3 refused")
	}
	if got := r.AccountDeck("acc", now); got != nil {
		t.Errorf("got %s before the deck's new start, want none", deckID(got))
	}
	if got := r.AccountDeck("acc", v3.info.EffectiveFrom); got != v3 {
		t.Errorf("got %s at the new start, want d v3", deckID(got))
	}
	r.Remove("d")
	if r.Deck("d") != nil || r.AccountDeck("acc", v3.info.EffectiveFrom) != nil || r.Len() != 0 {
		t.Error("a removed deck is still found")
	}
	if r.Put(v3) {
		t.Error("a removed deck came back with a version read before its deletion")
	}
}

// TestRegistryReplaceKeepsLaterWrites: a full reload reads a snapshot
// while single-deck reloads go on; what they wrote after the mark is newer
// than the snapshot and survives it.
func TestRegistryReplaceKeepsLaterWrites(t *testing.T) {
	a1 := newDeck(t, DeckInfo{ID: "a", AccountID: "acc", Version: 1, Precision: 6}, rate("49", 1))
	a2 := newDeck(t, DeckInfo{ID: "a", AccountID: "acc", Version: 2, Precision: 6}, rate("49", 2))
	b := newDeck(t, DeckInfo{ID: "b", AccountID: "other", Version: 1, Precision: 6}, rate("49", 1))
	c := newDeck(t, DeckInfo{ID: "c", AccountID: "third", Version: 1, Precision: 6}, rate("49", 1))
	stale := newDeck(t, DeckInfo{ID: "stale", AccountID: "gone", Version: 1, Precision: 6}, rate("49", 1))
	var r Registry
	r.Replace([]*Deck{stale}, r.Mark())

	mark := r.Mark()
	r.Put(a2)     // written after the mark, newer than the snapshot
	r.Remove("b") // deleted after the mark
	r.Replace([]*Deck{a1, b, c}, mark)

	if got := r.Deck("a"); got != a2 {
		t.Errorf("a: got %s, want v2", deckID(got))
	}
	if got := r.Deck("b"); got != nil {
		t.Errorf("b: got %s, want deleted", deckID(got))
	}
	if got := r.AccountDeck("third", time.Now()); got != c {
		t.Errorf("c: got %s", deckID(got))
	}
	if got := r.Deck("stale"); got != nil {
		t.Errorf("a deck the snapshot no longer has is still there: %s", deckID(got))
	}
	if r.Len() != 2 {
		t.Errorf("got %d decks, want 2", r.Len())
	}
}

// TestRegistryConcurrent runs lookups against writers; -race checks it.
func TestRegistryConcurrent(t *testing.T) {
	var versions []*Deck
	for v := range 20 {
		versions = append(versions, newDeck(t, DeckInfo{ID: "d", AccountID: "acc", Version: int64(v + 1), Precision: 6}, rate("49", int64(v+1))))
	}
	var r Registry
	r.Replace(versions[:1], r.Mark())
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := int64(0)
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := r.AccountDeck("acc", time.Now())
				if d == nil {
					t.Error("the deck vanished while being replaced")
					return
				}
				v := d.Info().Version
				if v < last {
					t.Errorf("version went back from %d to %d", last, v)
					return
				}
				last = v
				if res := d.Price(Usage{Number: "4930123", Start: time.Now(), BillMS: 60000}); res.Amount != d.Info().Version {
					t.Errorf("deck v%d priced %d: a mix of versions", d.Info().Version, res.Amount)
					return
				}
			}
		}()
	}
	for _, d := range versions[1:] {
		r.Put(d)
		r.Replace([]*Deck{d}, r.Mark())
	}
	close(stop)
	wg.Wait()
}

// TestRegistryRefused holds a refused deck (too many rates to compile) as
// its owner's deck in force: lookups find no deck while it is in force,
// the older deck does not price in its place, and other owners are
// unaffected.
func TestRegistryRefused(t *testing.T) {
	jan := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	feb := jan.AddDate(0, 1, 0)
	old := newDeck(t, DeckInfo{ID: "old", AccountID: "acc", Version: 1, Precision: 6}, rate("49", 1))
	big := RefusedDeck(DeckInfo{ID: "big", AccountID: "acc", Version: 4, EffectiveFrom: feb}, "too many rates")
	buy := RefusedDeck(DeckInfo{ID: "buy", Gateway: "carrier", Version: 1}, "too many rates")
	other := newDeck(t, DeckInfo{ID: "other", AccountID: "acc2", Version: 1, Precision: 6}, rate("49", 1))
	var r Registry
	r.Replace([]*Deck{old, big, buy, other}, r.Mark())
	if got := r.Len(); got != 2 {
		t.Errorf("Len: got %d, want 2 (refused decks not counted)", got)
	}
	if got := r.Refused(); len(got) != 2 || got[0].ID != "big" || got[1].ID != "buy" {
		t.Errorf("Refused: got %v, want big and buy", got)
	}
	gw, next := r.GatewayDeckUntil("carrier", feb)
	for name, tt := range map[string]struct{ got, want *Deck }{
		"before the refused deck": {r.AccountDeck("acc", jan), old},
		"refused deck in force":   {r.AccountDeck("acc", feb), nil},
		"refused deck by id":      {r.Deck("big"), nil},
		"refused gateway deck":    {r.GatewayDeck("carrier", feb), nil},
		"refused gateway (until)": {gw, nil},
		"another account's deck":  {r.AccountDeck("acc2", feb), other},
		"another account's by id": {r.Deck("other"), other},
		"older deck still by id":  {r.Deck("old"), old},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", name, deckID(tt.got), deckID(tt.want))
		}
	}
	if !next.IsZero() {
		t.Errorf("GatewayDeckUntil: next %v, want none", next)
	}
	// A compiled version of the deck replaces the refused one.
	fixed := newDeck(t, DeckInfo{ID: "big", AccountID: "acc", Version: 5, Precision: 6, EffectiveFrom: feb}, rate("49", 2))
	if !r.Put(fixed) || r.AccountDeck("acc", feb) != fixed || len(r.Refused()) != 1 {
		t.Errorf("after Put of a compiled version: deck %v, refused %v", deckID(r.AccountDeck("acc", feb)), r.Refused())
	}
}
