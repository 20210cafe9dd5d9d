package callbridge_test

import (
	"math"
	"testing"
	"time"

	"callbridge"
)

func TestCurrencyExponent(t *testing.T) {
	for code, want := range map[string]int{
		"EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "VND": 0,
		"KWD": 3, "BHD": 3, "JOD": 3, "OMR": 3, "TND": 3, "IQD": 3, "LYD": 3, "CLF": 4, "UYW": 4,
	} {
		if got, ok := callbridge.CurrencyExponent(code); !ok || got != want {
			t.Errorf("CurrencyExponent(%q) = %d, %v; want %d", code, got, ok, want)
		}
	}
	// No minor unit (metals, SDR, testing), withdrawn, or not a code.
	for _, code := range []string{"XAU", "XDR", "XXX", "XTS", "HRK", "SLL", "ZWL", "eur", "EU", "EURO", ""} {
		if _, ok := callbridge.CurrencyExponent(code); ok {
			t.Errorf("CurrencyExponent(%q) is known", code)
		}
		if err := callbridge.ValidateCurrency("currency", code); callbridge.ErrorCode(err) != callbridge.EINVALID {
			t.Errorf("ValidateCurrency(%q) = %v, want EINVALID", code, err)
		}
	}
	if n := len(callbridge.Currencies()); n < 150 {
		t.Errorf("%d currencies, want the whole ISO 4217 list", n)
	}
}

func TestRoundToMinor(t *testing.T) {
	for _, tt := range []struct {
		micros   int64
		exponent int
		want     int64
		text     string
	}{
		{155_599_769, 2, 15560, "155.60"},
		{155_594_999, 2, 15559, "155.59"},
		{5_000, 2, 1, "0.01"}, // half: away from zero
		{4_999, 2, 0, "0.00"},
		{-5_000, 2, -1, "-0.01"},
		{-4_999, 2, 0, "0.00"},
		{-86_112_473, 2, -8611, "-86.11"},
		{1_555_500_000, 0, 1556, "1556"},
		{1_555_499_999, 0, 1555, "1555"},
		{-86_112_473, 3, -86112, "-86.112"},
		{86_112_500, 3, 86113, "86.113"},
		{1, 6, 1, "0.000001"},
		{123_456_789, 4, 1_234_568, "123.4568"},
		{math.MaxInt64, 2, 922337203685478, "9223372036854.78"},
		{math.MinInt64, 2, -922337203685478, "-9223372036854.78"},
	} {
		got := callbridge.RoundToMinor(tt.micros, tt.exponent)
		if got != tt.want {
			t.Errorf("RoundToMinor(%d, %d) = %d, want %d", tt.micros, tt.exponent, got, tt.want)
		}
		if s := callbridge.FormatMinor(got, tt.exponent); s != tt.text {
			t.Errorf("FormatMinor(%d, %d) = %q, want %q", got, tt.exponent, s, tt.text)
		}
	}
	if got := callbridge.FormatMinor(math.MinInt64, 0); got != "-9223372036854775808" {
		t.Errorf("FormatMinor(MinInt64, 0) = %q", got)
	}
	if got := callbridge.MinorToMicros(15560, 2); got != 155_600_000 {
		t.Errorf("MinorToMicros(15560, 2) = %d", got)
	}
}

func TestTaxOf(t *testing.T) {
	for _, tt := range []struct{ subtotal, bps, want int64 }{
		{14, 1900, 3},        // 2.66
		{5, 1000, 1},         // 0.5: away from zero
		{-5, 1000, -1},       // -0.5
		{15, 1000, 2},        // 1.5
		{-15, 1000, -2},      // -1.5
		{14999, 1, 1},        // 1.4999
		{1, 4999, 0},         // 0.4999
		{-8611, 1900, -1636}, // -1636.09
		{922337203685477, 10000, 922337203685477},
		{math.MaxInt64 / 10000 * 10000, 10000, math.MaxInt64 / 10000 * 10000},
	} {
		if got := callbridge.TaxOf(tt.subtotal, tt.bps); got != tt.want {
			t.Errorf("TaxOf(%d, %d) = %d, want %d", tt.subtotal, tt.bps, got, tt.want)
		}
	}
}

func TestCheckPeriodClosed(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	day := 24 * time.Hour
	for _, tt := range []struct {
		y      int
		m      time.Month
		loc    *time.Location
		grace  time.Duration
		now    string
		closed bool
	}{
		{2026, time.December, time.UTC, day, "2026-12-06T05:00:00Z", false}, // the running month
		{2027, time.January, time.UTC, day, "2026-12-06T05:00:00Z", false},  // the future
		{2026, time.November, time.UTC, day, "2026-12-01T23:59:59Z", false}, // in its grace
		{2026, time.November, time.UTC, day, "2026-12-02T00:00:00Z", true},  // grace over
		{2026, time.November, time.UTC, 0, "2026-12-01T00:00:00Z", true},    // no grace: at its end
		{2026, time.November, time.UTC, 0, "2026-11-30T23:59:59Z", false},
		// New York's November ends at 05:00 UTC on December 1st.
		{2026, time.November, ny, 0, "2026-12-01T04:59:59Z", false},
		{2026, time.November, ny, 0, "2026-12-01T05:00:00Z", true},
		{2026, time.November, ny, 2 * time.Hour, "2026-12-01T06:59:00Z", false},
	} {
		err := callbridge.CheckPeriodClosed(tt.y, tt.m, tt.loc, tt.grace, at(tt.now))
		if (err == nil) != tt.closed {
			t.Errorf("%d-%02d %s grace %s at %s: %v, want closed %v", tt.y, tt.m, tt.loc, tt.grace, tt.now, err, tt.closed)
		}
		if err != nil && (callbridge.ErrorCode(err) != callbridge.ECONFLICT || callbridge.ErrorField(err) != "month") {
			t.Errorf("error %v, want ECONFLICT on month", err)
		}
		// The latest closed month is closed, the month after it is not.
		y, m := callbridge.LatestClosedMonth(tt.loc, tt.grace, at(tt.now))
		if err := callbridge.CheckPeriodClosed(y, m, tt.loc, tt.grace, at(tt.now)); err != nil {
			t.Errorf("LatestClosedMonth at %s = %d-%02d, which is open: %v", tt.now, y, m, err)
		}
		next := time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC)
		if err := callbridge.CheckPeriodClosed(next.Year(), next.Month(), tt.loc, tt.grace, at(tt.now)); err == nil {
			t.Errorf("LatestClosedMonth at %s = %d-%02d, but %s is closed too", tt.now, y, m, next.Format("2006-01"))
		}
	}
	err = callbridge.CheckPeriodClosed(2026, time.December, time.UTC, day, at("2026-12-06T05:00:00Z"))
	if want := "2026-12 (UTC) has not ended: it can be invoiced from 2027-01-02T00:00:00Z (the month's end plus a grace of 24h0m0s)"; callbridge.ErrorMessage(err) != want {
		t.Errorf("message %q, want %q", callbridge.ErrorMessage(err), want)
	}
}
