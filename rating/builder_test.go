package rating

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"callbridge"
)

// TestDeckBuilderOrder compiles one set of rates given in the deck's
// order and shuffled: both decks are the same.
func TestDeckBuilderOrder(t *testing.T) {
	rates := benchRates(2000, true)
	for i := range rates {
		rates[i].Priority = int32(i % 3)
		if i%7 == 0 {
			rates[i].EffectiveFrom = time.Date(2026, 1, 1+i%20, 0, 0, 0, 0, time.UTC)
		}
	}
	info := DeckInfo{ID: "d", AccountID: "acc", Name: "n", Currency: "EUR", TimeZone: "UTC", Precision: 6}
	sorted, err := NewDeck(info, time.UTC, rates)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewDeckBuilder(info, time.UTC, 0)
	if err != nil {
		t.Fatal(err)
	}
	shuffled := append([]Rate(nil), rates...)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for i := range shuffled {
		if err := b.Add(&shuffled[i]); err != nil {
			t.Fatal(err)
		}
	}
	if b.Len() != len(rates) {
		t.Fatalf("Len: got %d, want %d", b.Len(), len(rates))
	}
	got, err := b.Deck()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.rates, sorted.rates) || !reflect.DeepEqual(got.bounds, sorted.bounds) || !reflect.DeepEqual(got.effs, sorted.effs) {
		t.Error("a deck built from shuffled rates differs from the one built from them in order")
	}
	for _, r := range rates[:50] {
		u := Usage{Number: callbridge.Number(r.Prefix + "123"), Start: time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC), BillMS: 61000}
		if a, b := got.Price(u), sorted.Price(u); !reflect.DeepEqual(a, b) {
			t.Errorf("price of %s: got %+v, want %+v", u.Number, a, b)
		}
	}
	if _, err := b.Deck(); err == nil {
		t.Error("a second Deck call: got no error")
	}
}
