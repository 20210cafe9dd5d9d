package pricing

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"callbridge"
	"callbridge/rating"
)

// TestQuoteJSON checks the hand-written quote answer against
// encoding/json's encoding of the same fields.
func TestQuoteJSON(t *testing.T) {
	deck, err := rating.NewDeck(rating.DeckInfo{ID: "d-1", AccountID: "a", Name: "n", Currency: "EUR", TimeZone: "UTC", Precision: 4, Version: 7},
		time.UTC, []rating.Rate{{Prefix: "49", Description: `Germany <"fixed"> & more`, PerMinute: 123456, FirstIncrement: 30, NextIncrement: 6,
			Days: rating.AllDays, Until: rating.Midnight}})
	if err != nil {
		t.Fatal(err)
	}
	info := deck.Info()
	for _, tt := range []struct {
		number callbridge.Number
		at     time.Time
		ms     int64
	}{
		{"4930123456", time.Date(2026, 12, 6, 5, 0, 0, 123456789, time.UTC), 95000},
		{"15551230002", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 0},
	} {
		r := deck.Price(rating.Usage{Number: tt.number, Start: tt.at, BillMS: tt.ms})
		want, err := json.Marshal(struct {
			DeckID      string        `json:"deck_id"`
			DeckVersion int64         `json:"deck_version"`
			Number      string        `json:"number"`
			At          time.Time     `json:"at"`
			Amount      string        `json:"amount"`
			Result      rating.Result `json:"result"`
		}{info.ID, info.Version, tt.number.String(), tt.at, rating.FormatMoney(r.Amount), r})
		if err != nil {
			t.Fatal(err)
		}
		if got := appendQuote(nil, &info, tt.number, tt.at, &r); !bytes.Equal(got, want) {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
}
