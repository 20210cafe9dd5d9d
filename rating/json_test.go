package rating

import (
	"bytes"
	"encoding/json"
	"testing"
)

// reflectJSON is the encoding AppendJSON must equal: encoding/json's of
// the result's fields followed by its parts.
func reflectJSON(t *testing.T, r Result) []byte {
	t.Helper()
	type plain struct {
		Flags          []string `json:"flags"`
		Currency       string   `json:"currency"`
		Prefix         string   `json:"prefix"`
		Description    string   `json:"description"`
		Band           string   `json:"band"`
		DurationMS     int64    `json:"duration_ms"`
		BilledMS       int64    `json:"billed_ms"`
		FirstIncrement int32    `json:"first_increment"`
		NextIncrement  int32    `json:"next_increment"`
		ConnectFee     int64    `json:"connect_fee_micros"`
		MinCharge      int64    `json:"min_charge_micros"`
		Amount         int64    `json:"amount_micros"`
		Parts          []Part   `json:"parts"`
	}
	b, err := json.Marshal(plain{r.Flags.Names(), r.Currency, r.Prefix, r.Description, r.Band, r.DurationMS, r.BilledMS,
		r.FirstIncrement, r.NextIncrement, r.ConnectFee, r.MinCharge, r.Amount, r.Parts()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestResultJSON(t *testing.T) {
	rates := benchRates(2000, true)
	for i := range rates {
		switch i % 5 {
		case 1:
			rates[i].Description = `Côte d'Ivoire "mobile" <a&b> \ end`
		case 2:
			rates[i].Description = "line\u2028sep"
		}
	}
	d := newDeck(t, DeckInfo{Precision: 4, Default: &Rate{PerMinute: 1, FirstIncrement: 1, NextIncrement: 1}}, rates...)
	for i, u := range benchUsages(rates, 3000) {
		if i%7 == 0 {
			u.BillMS = 0
		}
		if i%11 == 0 {
			u.Number = "999999"
		}
		if i%13 == 0 {
			u.BillMS = 30 * 3600 * 1000 // crosses many bands
		}
		r := d.Price(u)
		got, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if want := reflectJSON(t, r); !bytes.Equal(got, want) {
			t.Fatalf("call %d:\ngot  %s\nwant %s", i, got, want)
		}
	}
	empty, _ := json.Marshal(Result{})
	if want := reflectJSON(t, Result{}); !bytes.Equal(empty, want) {
		t.Errorf("zero result: got %s, want %s", empty, want)
	}
}
