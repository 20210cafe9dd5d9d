package rating

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"callbridge"
)

// benchRates returns n distinct prefixes of 3 to 9 digits; with bands,
// every prefix has a weekday peak rate and an off-peak rate.
func benchRates(n int, bands bool) []Rate {
	rng := rand.New(rand.NewPCG(1, 2))
	seen := map[string]bool{}
	var rates []Rate
	for len(seen) < n {
		p := strconv.Itoa(1 + rng.IntN(9))
		for l := 2 + rng.IntN(8); len(p) < l; {
			p += strconv.Itoa(rng.IntN(10))
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		r := Rate{Prefix: p, Description: "destination " + p, PerMinute: int64(rng.IntN(500000)), ConnectFee: 1000,
			FirstIncrement: 30, NextIncrement: 6, Days: AllDays, Until: Midnight}
		if !bands {
			rates = append(rates, r)
			continue
		}
		peak := r
		peak.Band, peak.Days, peak.From, peak.Until = "peak", Weekdays, 8*3600, 18*3600
		r.Band, r.Priority = "offpeak", 1
		rates = append(rates, peak, r)
	}
	return rates
}

// benchUsages returns calls to numbers under the deck's prefixes at
// spread-out times of day and durations of 1 s to 10 min.
func benchUsages(rates []Rate, n int) []Usage {
	rng := rand.New(rand.NewPCG(3, 4))
	base := time.Date(2025, 1, 13, 0, 0, 0, 0, time.UTC)
	us := make([]Usage, n)
	for i := range us {
		p := rates[rng.IntN(len(rates))].Prefix
		for len(p) < 11 {
			p += strconv.Itoa(rng.IntN(10))
		}
		us[i] = Usage{
			Number: callbridge.Number(p),
			Start:  base.Add(time.Duration(rng.Int64N(int64(7 * 24 * time.Hour)))),
			BillMS: 1000 + rng.Int64N(600000),
		}
	}
	return us
}

func benchmarkPrice(b *testing.B, bands bool) {
	rates := benchRates(100_000, bands)
	d := newDeck(b, DeckInfo{Precision: 4}, rates...)
	us := benchUsages(rates, 4096)
	var sink int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r := d.Price(us[i&4095])
		sink += r.Amount
	}
	if sink == 0 {
		b.Fatal("every call was free")
	}
}

// BenchmarkPrice is lookup and price with a 100,000-prefix deck whose
// rates apply at all times. Target: at most 300 ns and 0 allocations.
func BenchmarkPrice(b *testing.B) { benchmarkPrice(b, false) }

// BenchmarkPriceBands is the same with every prefix split into a
// weekday peak band and an off-peak band (200,000 rates), so calls are
// read in the deck's zone and some cross 08:00 or 18:00.
func BenchmarkPriceBands(b *testing.B) { benchmarkPrice(b, true) }

// BenchmarkNewDeck compiles a 100,000-prefix deck.
func BenchmarkNewDeck(b *testing.B) {
	rates := benchRates(100_000, false)
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		b.Fatal(err)
	}
	info := DeckInfo{AccountID: "a", Name: "n", Currency: "EUR", TimeZone: "Europe/Berlin", Precision: 4}
	for b.Loop() {
		if _, err := NewDeck(info, loc, rates); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseCSV parses 100,000 rows. Target: well under a second.
func BenchmarkParseCSV(b *testing.B) {
	var buf bytes.Buffer
	if err := WriteCSV(&buf, benchRates(100_000, false)); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	for b.Loop() {
		rates, err := ParseCSV(bytes.NewReader(buf.Bytes()))
		if err != nil || len(rates) != 100_000 {
			b.Fatalf("got %d rates, %v", len(rates), err)
		}
	}
}

func TestPriceAllocs(t *testing.T) {
	rates := benchRates(1000, true)
	d := newDeck(t, DeckInfo{Precision: 4}, rates...)
	us := benchUsages(rates, 64)
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		d.Price(us[i%len(us)])
		i++
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per call, want 0", allocs)
	}
}
