package rating

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"callbridge"
)

// newDeck compiles a test deck; info's zero fields get test defaults.
func newDeck(tb testing.TB, info DeckInfo, rates ...Rate) *Deck {
	tb.Helper()
	if info.AccountID == "" && info.Gateway == "" {
		info.AccountID = "acc"
	}
	if info.Name == "" {
		info.Name = "test"
	}
	if info.Currency == "" {
		info.Currency = "EUR"
	}
	if info.TimeZone == "" {
		info.TimeZone = "Europe/Berlin"
	}
	loc, err := time.LoadLocation(info.TimeZone)
	if err != nil {
		tb.Fatal(err)
	}
	d, err := NewDeck(info, loc, rates)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// rate returns an all-day, all-week rate with 60/60 increments.
func rate(prefix string, perMinute int64) Rate {
	return Rate{Prefix: prefix, PerMinute: perMinute, FirstIncrement: 60, NextIncrement: 60, Days: AllDays, Until: Midnight}
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// want is the expected outcome of a priced call: the total, the flags,
// the billed time and the amount of each part.
type want struct {
	amount   int64
	flags    Flags
	billedMS int64
	parts    []int64
}

func check(t *testing.T, got Result, w want) {
	t.Helper()
	var parts []int64
	for _, p := range got.Parts() {
		parts = append(parts, p.Amount)
	}
	if got.Amount != w.amount || got.Flags != w.flags || got.BilledMS != w.billedMS || fmt.Sprint(parts) != fmt.Sprint(w.parts) {
		t.Errorf("got amount %d flags %q billed %d parts %v, want amount %d flags %q billed %d parts %v",
			got.Amount, got.Flags, got.BilledMS, parts, w.amount, w.flags, w.billedMS, w.parts)
	}
}

// handDeck is the deck of the hand-checked table: Europe/Berlin, four
// decimals (amounts are multiples of 100 micro-units), rounding up.
func handDeck(t testing.TB) *Deck {
	germany := rate("49", 20000) // 0.02/min, 60/60
	germany.Description = "Germany"
	berlin := rate("4930", 10000) // 0.01/min, 30/6, 0.05 connect fee
	berlin.Description, berlin.FirstIncrement, berlin.NextIncrement, berlin.ConnectFee = "Berlin", 30, 6, 50000
	peak := rate("4915", 120000) // 0.12/min Mon-Fri 08-18, 1/1
	peak.Description, peak.Band, peak.FirstIncrement, peak.NextIncrement = "Germany mobile", "peak", 1, 1
	peak.Days, peak.From, peak.Until = Weekdays, 8*3600, 18*3600
	off := rate("4915", 60000) // 0.06/min otherwise, 1/1
	off.Description, off.Band, off.FirstIncrement, off.NextIncrement, off.Priority = "Germany mobile", "offpeak", 1, 1, 10
	uk := rate("44", 33300) // 0.0333/min, 60/1, minimum 0.05
	uk.Description, uk.NextIncrement, uk.MinCharge = "UK", 1, 50000
	nanp := rate("1", 7000) // 0.007/min, 6/6
	nanp.FirstIncrement, nanp.NextIncrement = 6, 6
	frOld := rate("33", 50000) // 0.05/min until 1 July 2025
	frOld.EffectiveUntil = utc("2025-07-01T00:00:00Z")
	frNew := rate("33", 40000) // 0.04/min from 1 July 2025
	frNew.EffectiveFrom = utc("2025-07-01T00:00:00Z")
	return newDeck(t, DeckInfo{Precision: 4}, germany, berlin, peak, off, uk, nanp, frOld, frNew)
}

// TestPriceHandChecked is the table of priced calls checked by hand.
// Berlin is UTC+1 in January. Amounts are micro-units.
func TestPriceHandChecked(t *testing.T) {
	d := handDeck(t)
	wed := utc("2025-01-15T10:00:00Z") // Wednesday 11:00 in Berlin
	tests := []struct {
		name   string
		number string
		start  time.Time
		ms     int64
		want   want
	}{
		// 45 s on 30/6: 30 + ceil(15/6)=3 × 6 = 48 s; 10000 × 48/60 = 8000; + fee 50000 = 58000.
		{"berlin 45s 30/6 with fee", "4930123456", wed, 45000, want{58000, 0, 48000, []int64{8000}}},
		// exactly the first increment: 30 s; 10000 × 30/60 = 5000; + 50000 = 55000.
		{"berlin exactly first increment", "4930123456", wed, 30000, want{55000, 0, 30000, []int64{5000}}},
		// one ms into the second increment bills it whole: 36 s; 6000 + 50000 = 56000.
		{"berlin 1 ms over bills a whole increment", "4930123456", wed, 30001, want{56000, 0, 36000, []int64{6000}}},
		// 1 s is not short (threshold is < 1000 ms): billed 30 s = 5000 + 50000.
		{"berlin at threshold", "4930123456", wed, 1000, want{55000, 0, 30000, []int64{5000}}},
		// 999 ms is under the 1 s threshold: recorded, costs nothing.
		{"berlin short", "4930123456", wed, 999, want{0, FlagShort, 0, nil}},
		// unanswered: zero, no connect fee.
		{"berlin unanswered", "4930123456", wed, 0, want{0, FlagUnanswered, 0, nil}},
		// Germany 60/60, 61 s: 120 s; 20000 × 2 = 40000.
		{"germany 61s on 60/60", "4989123456", wed, 61000, want{40000, 0, 120000, []int64{40000}}},
		// 60 s: one increment, 20000.
		{"germany 60s", "4989123456", wed, 60000, want{20000, 0, 60000, []int64{20000}}},
		// 1.5 s: the whole first minute, 20000.
		{"germany 1.5s bills first minute", "4989123456", wed, 1500, want{20000, 0, 60000, []int64{20000}}},
		// mobile Wed 11:00 local: peak 0.12/min = 2000/s, 1/1; 90.5 s → 91 s = 182000.
		{"mobile peak", "4915112345678", wed, 90500, want{182000, 0, 91000, []int64{182000}}},
		// Saturday 11:00 local: peak is Mon-Fri, so off-peak 1000/s; 91 s = 91000.
		{"mobile saturday off-peak", "4915112345678", utc("2025-01-18T10:00:00Z"), 90500, want{91000, 0, 91000, []int64{91000}}},
		// Wed 17:59 local, 120 s: 60 s peak (120000) then 60 s off-peak (60000) = 180000.
		{"mobile split at 18:00", "4915112345678", utc("2025-01-15T16:59:00Z"), 120000, want{180000, 0, 120000, []int64{120000, 60000}}},
		// Wed 07:59:30 local, 45.25 s → 46 s: 30 s off-peak (30000) then 16 s peak (32000) = 62000.
		{"mobile split at 08:00", "4915112345678", utc("2025-01-15T06:59:30Z"), 45250, want{62000, 0, 46000, []int64{30000, 32000}}},
		// UK 10 s on 60/1: 60 s × 33300/60 = 33300 < minimum 50000 → 50000.
		{"uk minimum", "447700900123", wed, 10000, want{50000, FlagMinimum, 60000, []int64{33300}}},
		// UK 100 s: 33300 × 100/60 = 55500, above the minimum.
		{"uk above minimum", "447700900123", wed, 100000, want{55500, 0, 100000, []int64{55500}}},
		// UK 95 s: 33300 × 95/60 = 52725 → up to a multiple of 100 = 52800.
		{"uk rounds up to precision", "447700900123", wed, 95000, want{52800, 0, 95000, []int64{52800}}},
		// NANP 6/6, 13 s → 18 s: 7000 × 18/60 = 2100.
		{"nanp 6/6", "12125551234", wed, 13000, want{2100, 0, 18000, []int64{2100}}},
		// 7.001 s → 12 s: 7000 × 12/60 = 1400.
		{"nanp 7.001s", "12125551234", wed, 7001, want{1400, 0, 12000, []int64{1400}}},
		// France, started before 1 July: the old price for the whole call,
		// although it ends after: 2 min × 50000 = 100000.
		{"france old price across effective date", "33123456789", utc("2025-06-30T23:59:00Z"), 120000, want{100000, 0, 120000, []int64{100000}}},
		// started on 1 July: 2 min × 40000 = 80000.
		{"france new price", "33123456789", utc("2025-07-01T00:00:00Z"), 120000, want{80000, 0, 120000, []int64{80000}}},
		// Japan: no rate, no default: unrated, zero.
		{"unrated", "81312345678", wed, 60000, want{0, FlagUnrated, 0, nil}},
		// Germany landline that is not Berlin falls back to 49: 3 s → 60 s = 20000.
		{"longest prefix falls back", "4940123456", wed, 3000, want{20000, 0, 60000, []int64{20000}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := d.Price(Usage{Number: callbridge.Number(tt.number), Start: tt.start, BillMS: tt.ms})
			check(t, got, tt.want)
		})
	}
}

func TestPriceResultDetails(t *testing.T) {
	d := handDeck(t)
	// Wed 07:59:30 Berlin, 45.25 s on 1/1 increments across 08:00.
	got := d.Price(Usage{Number: "4915112345678", Start: utc("2025-01-15T06:59:30Z"), BillMS: 45250})
	if got.Prefix != "4915" || got.Band != "offpeak" || got.Description != "Germany mobile" || got.Currency != "EUR" {
		t.Errorf("got prefix %q band %q description %q currency %q, want 4915 offpeak \"Germany mobile\" EUR", got.Prefix, got.Band, got.Description, got.Currency)
	}
	want := []Part{
		{OffsetMS: 0, DurationMS: 30000, BilledMS: 30000, Increments: 30, Prefix: "4915", Description: "Germany mobile", Band: "offpeak", PerMinute: 60000, Amount: 30000},
		{OffsetMS: 30000, DurationMS: 15250, BilledMS: 16000, Increments: 16, Prefix: "4915", Description: "Germany mobile", Band: "peak", PerMinute: 120000, Amount: 32000},
	}
	if fmt.Sprint(got.Parts()) != fmt.Sprint(want) {
		t.Errorf("got parts %+v, want %+v", got.Parts(), want)
	}
	if got.FirstIncrement != 1 || got.NextIncrement != 1 {
		t.Errorf("got increments %d/%d, want 1/1", got.FirstIncrement, got.NextIncrement)
	}
}

func TestPriceIncrementsAcrossSplit(t *testing.T) {
	peak := rate("4915", 120000)
	peak.Band, peak.Days, peak.From, peak.Until = "peak", Weekdays, 8*3600, 18*3600
	off := rate("4915", 60000)
	off.Band, off.Priority = "offpeak", 1
	tests := []struct {
		name        string
		first, next int32
		start       string
		ms          int64
		want        want
		increments  []int64
	}{
		// 17:59:30 local, 60/60, 120 s: the boundary at 30 s moves to the
		// increment boundary at 60 s: [0,60) peak 120000, [60,120) off 60000.
		{"60/60 boundary inside first increment", 60, 60, "2025-01-15T16:59:30Z", 120000, want{180000, 0, 120000, []int64{120000, 60000}}, []int64{1, 1}},
		// 17:59:50, 30/6, 45 s → 48 s; boundary at 10 s moves to 30 s:
		// [0,30) peak 120000×30/60 = 60000; [30,48) off 60000×18/60 = 18000.
		{"30/6 boundary inside first increment", 30, 6, "2025-01-15T16:59:50Z", 45000, want{78000, 0, 48000, []int64{60000, 18000}}, []int64{1, 3}},
		// 17:59:25, 30/6, 45 s → 48 s; boundary at 35 s moves to 36 s:
		// [0,36) peak 72000; [36,48) off 12000.
		{"30/6 boundary inside later increment", 30, 6, "2025-01-15T16:59:25Z", 45000, want{84000, 0, 48000, []int64{72000, 12000}}, []int64{2, 2}},
		// 17:59:00, 60/60, 55 s: billed 60 s ends at the boundary: no split.
		{"billed time ends at boundary", 60, 60, "2025-01-15T16:59:00Z", 55000, want{120000, 0, 60000, []int64{120000}}, []int64{1}},
		// 17:59:30, 60/60, 20 s: the call ends before 18:00 but its billed
		// minute crosses it; the increment is priced where it starts.
		{"billed increment crosses boundary", 60, 60, "2025-01-15T16:59:30Z", 20000, want{120000, 0, 60000, []int64{120000}}, []int64{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, o := peak, off
			p.FirstIncrement, p.NextIncrement, o.FirstIncrement, o.NextIncrement = tt.first, tt.next, tt.first, tt.next
			d := newDeck(t, DeckInfo{Precision: 6}, p, o)
			got := d.Price(Usage{Number: "4915112345678", Start: utc(tt.start), BillMS: tt.ms})
			check(t, got, tt.want)
			var incs []int64
			for _, p := range got.Parts() {
				incs = append(incs, p.Increments)
			}
			if fmt.Sprint(incs) != fmt.Sprint(tt.increments) {
				t.Errorf("got increments %v, want %v", incs, tt.increments)
			}
		})
	}
}

func TestPriceRounding(t *testing.T) {
	tests := []struct {
		precision int
		rounding  Rounding
		perMinute int64
		seconds   int64
		want      int64
	}{
		// 10000 × 7/60 = 1166.67 micro-units.
		{6, RoundUp, 10000, 7, 1167},
		{6, RoundHalfUp, 10000, 7, 1167},
		{6, RoundDown, 10000, 7, 1166},
		{4, RoundUp, 10000, 7, 1200},
		{4, RoundHalfUp, 10000, 7, 1200},
		{4, RoundDown, 10000, 7, 1100},
		{2, RoundUp, 10000, 7, 10000},
		{2, RoundHalfUp, 10000, 7, 0},
		{2, RoundDown, 10000, 7, 0},
		// 10000 × 3/60 = 500: exactly half of 1000.
		{3, RoundHalfUp, 10000, 3, 1000},
		{3, RoundDown, 10000, 3, 0},
		{3, RoundUp, 10000, 3, 1000},
		// 12000 × 5/60 = 1000 exactly: no rule changes it.
		{3, RoundUp, 12000, 5, 1000},
		{3, RoundDown, 12000, 5, 1000},
		// whole currency units: 1.5/min × 61 s = 1525000 → 2000000 up, 1000000 down.
		{0, RoundUp, 1500000, 61, 2000000},
		{0, RoundDown, 1500000, 61, 1000000},
		{0, "", 1500000, 61, 2000000}, // empty rounding means up
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("p%d_%s_%d_%ds", tt.precision, tt.rounding, tt.perMinute, tt.seconds), func(t *testing.T) {
			r := rate("49", tt.perMinute)
			r.FirstIncrement, r.NextIncrement = 1, 1
			d := newDeck(t, DeckInfo{Precision: tt.precision, Rounding: tt.rounding}, r)
			got := d.Price(Usage{Number: "4930123", Start: utc("2025-01-15T10:00:00Z"), BillMS: tt.seconds * 1000})
			if got.Amount != tt.want {
				t.Errorf("got %d, want %d", got.Amount, tt.want)
			}
		})
	}
}

func TestPriceFeesAndMinimums(t *testing.T) {
	tests := []struct {
		name                string
		precision           int
		connect, min, perMn int64
		ms                  int64
		want                want
	}{
		// 60 s × 10000 = 10000 + fee 5000 = 15000.
		{"fee added", 6, 5000, 0, 10000, 60000, want{15000, 0, 60000, []int64{10000}}},
		// fee + parts 15000 < minimum 20000.
		{"minimum includes fee", 6, 5000, 20000, 10000, 60000, want{20000, FlagMinimum, 60000, []int64{10000}}},
		// 2 min: 20000 + 5000 = 25000 >= 20000.
		{"above minimum", 6, 5000, 20000, 10000, 120000, want{25000, 0, 120000, []int64{20000}}},
		// free minute but a connect fee.
		{"zero price with fee", 6, 5000, 0, 0, 60000, want{5000, 0, 60000, []int64{0}}},
		// precision 2 (unit 10000): fee 5 (0.000005) rounds the total up
		// from 10005 to 20000.
		{"fee finer than precision", 2, 5, 0, 10000, 60000, want{20000, 0, 60000, []int64{10000}}},
		// short calls pay neither fee nor minimum.
		{"short pays no fee", 6, 5000, 20000, 10000, 500, want{0, FlagShort, 0, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rate("49", tt.perMn)
			r.ConnectFee, r.MinCharge = tt.connect, tt.min
			d := newDeck(t, DeckInfo{Precision: tt.precision}, r)
			check(t, d.Price(Usage{Number: "4930123", Start: utc("2025-01-15T10:00:00Z"), BillMS: tt.ms}), tt.want)
		})
	}
}

func TestPriceShortThreshold(t *testing.T) {
	r := rate("49", 60000)
	r.FirstIncrement, r.NextIncrement = 1, 1
	tests := []struct {
		short int64
		ms    int64
		want  want
	}{
		{0, 999, want{0, FlagShort, 0, nil}},             // default 1000
		{0, 1000, want{1000, 0, 1000, []int64{1000}}},    // 1 s at 1000/s
		{3000, 2999, want{0, FlagShort, 0, nil}},         // configured 3 s
		{3000, 3000, want{3000, 0, 3000, []int64{3000}}}, // 3 s
		{1, 1, want{1000, 0, 1000, []int64{1000}}},       // 1 ms bills the 1 s increment
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("short%d_%dms", tt.short, tt.ms), func(t *testing.T) {
			d := newDeck(t, DeckInfo{Precision: 6, ShortMS: tt.short}, r)
			check(t, d.Price(Usage{Number: "4930", Start: utc("2025-01-15T10:00:00Z"), BillMS: tt.ms}), tt.want)
		})
	}
}

// weekendDeck: Berlin, 1/1, weekdays 0.06/min (1000/s), weekends and
// holidays 0.03/min (500/s), Christmas Day 2025 a holiday.
func weekendDeck(t testing.TB, zone string) *Deck {
	wk := rate("49", 60000)
	wk.Band, wk.Days, wk.FirstIncrement, wk.NextIncrement = "weekday", Weekdays, 1, 1
	we := rate("49", 30000)
	we.Band, we.Days, we.FirstIncrement, we.NextIncrement = "weekend", Weekend|Holidays, 1, 1
	return newDeck(t, DeckInfo{Precision: 6, TimeZone: zone, Holidays: []string{"2025-12-25"}}, wk, we)
}

func TestPriceBandSplits(t *testing.T) {
	d := weekendDeck(t, "Europe/Berlin")
	tests := []struct {
		name  string
		start string
		ms    int64
		want  want
		bands []string
	}{
		// Fri 23:59 Berlin, 2 min: 60 s weekday (60000) + 60 s weekend (30000).
		{"friday into saturday", "2025-01-17T22:59:00Z", 120000, want{90000, 0, 120000, []int64{60000, 30000}}, []string{"weekday", "weekend"}},
		// Sun 23:30 Berlin, 1 h: 30 min weekend (900000) + 30 min weekday (1800000).
		{"sunday into monday", "2025-01-19T22:30:00Z", 3600000, want{2700000, 0, 3600000, []int64{900000, 1800000}}, []string{"weekend", "weekday"}},
		// Tue 23:59 → Wed 00:01: midnight, same band: one part of 120 s.
		{"midnight same band is one part", "2025-01-14T22:59:00Z", 120000, want{120000, 0, 120000, []int64{120000}}, []string{"weekday"}},
		// Christmas Day 2025 is a Thursday and a holiday: weekend rate.
		{"holiday", "2025-12-25T10:00:00Z", 60000, want{30000, 0, 60000, []int64{30000}}, []string{"weekend"}},
		// Wed 24 Dec 23:59:30 Berlin into the holiday: 30 s × 1000 + 30 s × 500.
		{"into holiday", "2025-12-24T22:59:30Z", 60000, want{45000, 0, 60000, []int64{30000, 15000}}, []string{"weekday", "weekend"}},
		// Fri 23:00 to Mon 01:00 Berlin (50 h): 1 h weekday, 48 h weekend, 1 h weekday.
		{"whole weekend", "2025-01-17T22:00:00Z", 50 * 3600000, want{3600000 + 86400000 + 3600000, 0, 50 * 3600000, []int64{3600000, 86400000, 3600000}}, []string{"weekday", "weekend", "weekday"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := d.Price(Usage{Number: "4930123", Start: utc(tt.start), BillMS: tt.ms})
			check(t, got, tt.want)
			var bands []string
			for _, p := range got.Parts() {
				bands = append(bands, p.Band)
			}
			if fmt.Sprint(bands) != fmt.Sprint(tt.bands) {
				t.Errorf("got bands %v, want %v", bands, tt.bands)
			}
		})
	}
}

func TestPriceDST(t *testing.T) {
	// Bands by local time of day, every day: night 00:00-03:00 at
	// 60000/min (1000/s), day 03:00-24:00 at 120000/min (2000/s), 1/1.
	night := rate("49", 60000)
	night.Band, night.Until, night.FirstIncrement, night.NextIncrement = "night", 3*3600, 1, 1
	day := rate("49", 120000)
	day.Band, day.From, day.FirstIncrement, day.NextIncrement = "day", 3*3600, 1, 1
	berlin := newDeck(t, DeckInfo{Precision: 6}, night, day)
	peak := rate("1", 120000)
	peak.Band, peak.Days, peak.From, peak.Until, peak.FirstIncrement, peak.NextIncrement = "peak", Weekdays, 8*3600, 18*3600, 1, 1
	off := rate("1", 60000)
	off.Band, off.Priority, off.FirstIncrement, off.NextIncrement = "off", 1, 1, 1
	newYork := newDeck(t, DeckInfo{Precision: 6, TimeZone: "America/New_York", Currency: "USD"}, peak, off)

	tests := []struct {
		name   string
		deck   *Deck
		number string
		start  string
		ms     int64
		want   want
	}{
		// Berlin springs forward on 30 March 2025 at 01:00Z (02:00 CET →
		// 03:00 CEST). From 00:30Z (01:30 CET) the night band lasts 30 real
		// minutes, not 90: 1800 s × 1000 + 1800 s × 2000.
		{"berlin spring forward", berlin, "4930", "2025-03-30T00:30:00Z", 3600000, want{1800000 + 3600000, 0, 3600000, []int64{1800000, 3600000}}},
		// Berlin falls back on 26 October 2025 at 01:00Z (03:00 CEST →
		// 02:00 CET). From 00:30Z (02:30 CEST) local time reaches 03:00
		// only at 02:00Z: 90 min all night band, 5400 × 1000.
		{"berlin fall back", berlin, "4930", "2025-10-26T00:30:00Z", 5400000, want{5400000, 0, 5400000, []int64{5400000}}},
		// ... and 2 h from the same start: 90 min night, 30 min day.
		{"berlin fall back then day", berlin, "4930", "2025-10-26T00:30:00Z", 7200000, want{5400000 + 3600000, 0, 7200000, []int64{5400000, 3600000}}},
		// New York springs forward on 9 March 2025: Monday 10 March 08:00
		// EDT is 12:00Z (not 13:00Z). 11:59Z, 2 min: 60 s off, 60 s peak.
		{"new york peak after spring forward", newYork, "12125551234", "2025-03-10T11:59:00Z", 120000, want{60000 + 120000, 0, 120000, []int64{60000, 120000}}},
		// Friday 7 March 08:00 EST is 13:00Z: 12:59Z, 2 min.
		{"new york peak before spring forward", newYork, "12125551234", "2025-03-07T12:59:00Z", 120000, want{60000 + 120000, 0, 120000, []int64{60000, 120000}}},
		// New York falls back on 2 November 2025 (a Sunday): a call over
		// the repeated hour is all off-peak and one part.
		{"new york fall back", newYork, "12125551234", "2025-11-02T05:30:00Z", 3600000, want{3600000, 0, 3600000, []int64{3600000}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, tt.deck.Price(Usage{Number: callbridge.Number(tt.number), Start: utc(tt.start), BillMS: tt.ms}), tt.want)
		})
	}
}

func TestPriceEffectiveDates(t *testing.T) {
	old := rate("4930", 10000)
	old.Description = "old"
	newer := rate("4930", 20000)
	newer.Description, newer.EffectiveFrom = "new", utc("2025-03-01T00:00:00Z")
	future := rate("4931", 30000)
	future.Description, future.EffectiveFrom = "future", utc("2025-06-01T00:00:00Z")
	closed := rate("4932", 40000)
	closed.Description, closed.EffectiveUntil = "closed", utc("2025-02-01T00:00:00Z")
	parent := rate("49", 50000)
	parent.Description = "parent"
	d := newDeck(t, DeckInfo{Precision: 6}, old, newer, future, closed, parent)
	tests := []struct {
		number, start, want string
	}{
		{"4930123", "2025-02-28T23:59:59Z", "old"},    // before the new price
		{"4930123", "2025-03-01T00:00:00Z", "new"},    // from its first instant the later EffectiveFrom wins
		{"4931123", "2025-05-31T23:59:59Z", "parent"}, // not yet in force: shorter prefix
		{"4931123", "2025-06-01T00:00:00Z", "future"},
		{"4932123", "2025-01-31T23:59:59Z", "closed"},
		{"4932123", "2025-02-01T00:00:00Z", "parent"}, // EffectiveUntil is exclusive
	}
	for _, tt := range tests {
		t.Run(tt.number+"@"+tt.start, func(t *testing.T) {
			got := d.Price(Usage{Number: callbridge.Number(tt.number), Start: utc(tt.start), BillMS: 60000})
			if got.Description != tt.want {
				t.Errorf("got %q, want %q", got.Description, tt.want)
			}
		})
	}
}

func TestPriceDefaultRate(t *testing.T) {
	def := Rate{PerMinute: 300000, FirstIncrement: 60, NextIncrement: 60, ConnectFee: 1000}
	peak := rate("4915", 120000)
	peak.Band, peak.Days, peak.From, peak.Until = "peak", Weekdays, 8*3600, 18*3600
	withDefault := newDeck(t, DeckInfo{Precision: 6, Default: &def}, rate("49", 20000), peak)
	without := newDeck(t, DeckInfo{Precision: 6}, rate("49", 20000), peak)
	onlyPeak := newDeck(t, DeckInfo{Precision: 6}, peak)

	tests := []struct {
		name   string
		deck   *Deck
		number string
		start  string
		ms     int64
		want   want
	}{
		// no rate for Japan: default 300000 × 2 + fee 1000.
		{"default prices unknown prefix", withDefault, "81312345678", "2025-01-15T10:00:00Z", 120000, want{601000, FlagUnratedDefault, 120000, []int64{600000}}},
		{"no default: unrated", without, "81312345678", "2025-01-15T10:00:00Z", 120000, want{0, FlagUnrated, 0, nil}},
		// mobile outside peak falls back to the 49 rate.
		{"band miss falls back to shorter prefix", without, "4915112345678", "2025-01-18T10:00:00Z", 60000, want{20000, 0, 60000, []int64{20000}}},
		// only the peak rate: Saturday matches nothing.
		{"band miss without default", onlyPeak, "4915112345678", "2025-01-18T10:00:00Z", 60000, want{0, FlagUnrated, 0, nil}},
		// Wed 17:59 Berlin, 2 min: peak, then nothing matches: the second
		// minute is unrated and free.
		{"part unrated", onlyPeak, "4915112345678", "2025-01-15T16:59:00Z", 120000, want{120000, FlagUnrated, 120000, []int64{120000, 0}}},
		{"unanswered unrated", without, "81312345678", "2025-01-15T10:00:00Z", 0, want{0, FlagUnrated | FlagUnanswered, 0, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, tt.deck.Price(Usage{Number: callbridge.Number(tt.number), Start: utc(tt.start), BillMS: tt.ms}), tt.want)
		})
	}
}

func TestPriceMergedParts(t *testing.T) {
	d := weekendDeck(t, "Europe/Berlin")
	// Mon 2025-01-13 00:00 Berlin for 5 weeks: 10 parts (weekday,
	// weekend alternately); the last three merge into the 8th.
	got := d.Price(Usage{Number: "4930", Start: utc("2025-01-12T23:00:00Z"), BillMS: 35 * 86400000})
	// 25 weekdays × 86400 s × 1000 + 10 weekend days × 86400 × 500.
	wantAmount := int64(25*86400*1000 + 10*86400*500)
	if got.Amount != wantAmount || !got.Flags.Has(FlagMergedParts) || len(got.Parts()) != MaxParts {
		t.Fatalf("got amount %d flags %q parts %d, want %d merged_parts %d", got.Amount, got.Flags, len(got.Parts()), wantAmount, MaxParts)
	}
	var sum int64
	for _, p := range got.Parts() {
		sum += p.Amount
	}
	if sum != wantAmount {
		t.Errorf("got parts summing to %d, want %d", sum, wantAmount)
	}
}

func TestPriceNeverPanics(t *testing.T) {
	d := weekendDeck(t, "America/New_York")
	for _, u := range []Usage{
		{Number: "", Start: time.Time{}, BillMS: 1},
		{Number: "4x9", Start: utc("2025-01-15T10:00:00Z"), BillMS: 60000},
		{Number: "4930123456789012345", Start: utc("2025-01-15T10:00:00Z"), BillMS: 60000},
		{Number: "4930", Start: utc("2025-01-15T10:00:00Z"), BillMS: -5},
		{Number: "4930", Start: utc("2025-01-15T10:00:00Z"), BillMS: 1 << 40},
	} {
		got := d.Price(u)
		if got.Amount < 0 {
			t.Errorf("%+v: got negative amount %d", u, got.Amount)
		}
	}
	flat := newDeck(t, DeckInfo{Precision: 6}, rate("1", MaxPrice))
	got := flat.Price(Usage{Number: "1", Start: utc("2025-01-15T10:00:00Z"), BillMS: 1 << 62})
	if !got.Flags.Has(FlagOverflow) || got.Amount <= 0 {
		t.Errorf("got amount %d flags %q, want saturated with overflow", got.Amount, got.Flags)
	}
}

func TestNewDeckRefuses(t *testing.T) {
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	ok := DeckInfo{AccountID: "a", Name: "n", Currency: "EUR", TimeZone: "Europe/Berlin"}
	tests := []struct {
		name  string
		edit  func(*DeckInfo)
		rates []Rate
		field string
	}{
		{"both owners", func(i *DeckInfo) { i.Gateway = "gw" }, nil, "account_id"},
		{"no owner", func(i *DeckInfo) { i.AccountID = "" }, nil, "account_id"},
		{"currency", func(i *DeckInfo) { i.Currency = "eur" }, nil, "currency"},
		{"currency without a minor unit", func(i *DeckInfo) { i.Currency = "XAU" }, nil, "currency"},
		{"withdrawn currency", func(i *DeckInfo) { i.Currency = "HRK" }, nil, "currency"},
		{"precision", func(i *DeckInfo) { i.Precision = 7 }, nil, "precision"},
		{"rounding", func(i *DeckInfo) { i.Rounding = "banker" }, nil, "rounding"},
		{"zone mismatch", func(i *DeckInfo) { i.TimeZone = "UTC" }, nil, "time_zone"},
		{"holiday", func(i *DeckInfo) { i.Holidays = []string{"2025-13-01"} }, nil, "holidays"},
		{"default with prefix", func(i *DeckInfo) { r := rate("49", 1); i.Default = &r }, nil, "default_rate"},
		{"bad rate", func(*DeckInfo) {}, []Rate{{Prefix: "49", FirstIncrement: 0, NextIncrement: 60, Days: AllDays, Until: Midnight}}, "first_increment"},
		{"band backwards", func(*DeckInfo) {}, []Rate{{Prefix: "49", FirstIncrement: 1, NextIncrement: 1, Days: AllDays, From: 3600, Until: 60}}, "until"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := ok
			tt.edit(&info)
			_, err := NewDeck(info, loc, tt.rates)
			if callbridge.ErrorCode(err) != callbridge.EINVALID || callbridge.ErrorField(err) != tt.field {
				t.Errorf("got %v, want EINVALID on %s", err, tt.field)
			}
		})
	}
}

func TestDaysRoundTrip(t *testing.T) {
	tests := []struct {
		in, out string
	}{
		{"", "all"},
		{"ALL", "all"},
		{"mon-fri", "mon-fri"},
		{"sat,sun,hol", "sat,sun,hol"},
		{"mon,tue,wed", "mon-wed"},
		{"sun", "sun"},
		{"mon-sun", "mon-sun"},
		{"mon-sun,hol", "all"},
		{"hol", "hol"},
		{"fri,mon", "mon,fri"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d, err := ParseDays(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := d.String(); got != tt.out {
				t.Errorf("got %q, want %q", got, tt.out)
			}
			again, err := ParseDays(d.String())
			if err != nil || again != d {
				t.Errorf("got %v, %v re-parsing %q, want %v", again, err, d.String(), d)
			}
		})
	}
	for _, bad := range []string{"sun-sat", "monday", "mon-", "x"} {
		if _, err := ParseDays(bad); err == nil || !strings.HasPrefix(err.Error(), "rating: ") {
			t.Errorf("ParseDays(%q): got %v, want a rating error", bad, err)
		}
	}
}

func TestMoney(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		out  string
	}{
		{"0.0125", 12500, "0.0125"},
		{"3", 3000000, "3"},
		{"1.5", 1500000, "1.5"},
		{".5", 500000, "0.5"},
		{"0.000001", 1, "0.000001"},
		{"1000000", MaxPrice, "1000000"},
	} {
		got, err := ParseMoney(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseMoney(%q): got %d, %v, want %d", tt.in, got, err, tt.want)
		}
		if s := FormatMoney(got); s != tt.out {
			t.Errorf("FormatMoney(%d): got %q, want %q", got, s, tt.out)
		}
	}
	for _, bad := range []string{"", ".", "-1", "1e3", "0.0000001", "1,5", "12345678", "+1", " 1"} {
		if _, err := ParseMoney(bad); err == nil {
			t.Errorf("ParseMoney(%q): got no error", bad)
		}
	}
}

// TestPriceLongestPrefix checks the trie and its top table against a
// plain search over decks of several sizes.
func TestPriceLongestPrefix(t *testing.T) {
	for _, n := range []int{1, 30, 2000, 5000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rates := benchRates(n, false)
			d := newDeck(t, DeckInfo{Precision: 6}, rates...)
			for _, u := range benchUsages(rates, 300) {
				for _, num := range []callbridge.Number{u.Number, u.Number[:3], u.Number[:7] + "x1"} {
					want := ""
					for _, r := range rates {
						if strings.HasPrefix(string(num), r.Prefix) && len(r.Prefix) > len(want) {
							want = r.Prefix
						}
					}
					got := d.Price(Usage{Number: num, Start: u.Start, BillMS: 60000})
					if got.Prefix != want {
						t.Fatalf("%s: got prefix %q, want %q", num, got.Prefix, want)
					}
				}
			}
		})
	}
}

// TestZoneTable checks the deck's table of UTC offsets against the time
// package, including the years it computes from a zone's rule.
func TestZoneTable(t *testing.T) {
	for _, zone := range []string{"Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC", "Asia/Kolkata"} {
		t.Run(zone, func(t *testing.T) {
			d := weekendDeck(t, zone)
			for sec := int64(-86400 * 400); sec < 4200000000; sec += 86400*3 + 3607 {
				tm := time.Unix(sec, 0)
				_, want := tm.In(d.loc).Zone()
				off, end := d.zoneAt(tm)
				if off != want {
					t.Fatalf("%v: got offset %d, want %d", tm.UTC(), off, want)
				}
				if end != math.MaxInt64 {
					if _, before := time.Unix(end-1, 0).In(d.loc).Zone(); before != off {
						t.Fatalf("%v: offset changes before the end %v", tm.UTC(), time.Unix(end, 0).UTC())
					}
				}
			}
		})
	}
}
