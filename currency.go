package callbridge

import (
	"strconv"
	"strings"
)

// MicrosPerUnit is how many micro-units make one unit of a currency:
// rated money is int64 micro-units, whatever the currency's minor unit.
const MicrosPerUnit = 1_000_000

// currencyExponents maps the ISO 4217 codes callbridge accepts to their
// minor unit: the digits after the decimal point of an amount due (2 for
// EUR, 0 for JPY, 3 for KWD). It is the list of ISO 4217 codes in use
// that have a minor unit (list one, 2025, fund codes included); codes
// without one (XAU, XDR, XXX…) and withdrawn codes (HRK, SLL, ZWL…) are
// not in it, so no deck or account can use them.
func currencyExponents() map[string]int {
	m := map[string]int{}
	for exp, codes := range [...]string{
		0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
		2: "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD " +
			"CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL " +
			"GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD " +
			"LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN " +
			"PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB " +
			"TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG",
		3: "BHD IQD JOD KWD LYD OMR TND",
		4: "CLF UYW",
	} {
		for _, c := range strings.Fields(codes) {
			m[c] = exp
		}
	}
	return m
}

// CurrencyExponent returns the minor unit of an ISO 4217 currency code
// (2 for "EUR", 0 for "JPY", 3 for "KWD"); ok is false for a code
// callbridge does not know, which no deck or account may use.
func CurrencyExponent(code string) (exponent int, ok bool) {
	exponent, ok = currencyExponents()[code]
	return exponent, ok
}

// Currencies returns every currency code callbridge accepts with its
// minor unit.
func Currencies() map[string]int { return currencyExponents() }

// ValidateCurrency returns an EINVALID *Error naming field unless code is
// a currency of the ISO 4217 table (CurrencyExponent).
func ValidateCurrency(field, code string) error {
	if _, ok := CurrencyExponent(code); !ok {
		return FieldError(field, "must be an ISO 4217 currency code with a minor unit, such as EUR, USD or JPY (%q is not one)", code)
	}
	return nil
}

// microsPerMinor returns how many micro-units make one minor unit of a
// currency with the given exponent (10000 for 2 decimals).
func microsPerMinor(exponent int) int64 {
	u := int64(1)
	for i := exponent; i < 6; i++ {
		u *= 10
	}
	return u
}

// RoundToMinor rounds micro-units to minor units of a currency with the
// given exponent (0 to 6), half away from zero: with 2 decimals,
// 155_599_769 micro-units are 15560 (155.60), 5_000 are 1 (0.01) and
// -5_000 are -1. It is the one rounding of amounts due; see Invoice.
func RoundToMinor(micros int64, exponent int) int64 {
	u := microsPerMinor(exponent)
	q, r := micros/u, micros%u
	if r < 0 {
		r = -r
	}
	if 2*r >= u {
		if micros < 0 {
			q--
		} else {
			q++
		}
	}
	return q
}

// MinorToMicros converts minor units of a currency with the given
// exponent to micro-units.
func MinorToMicros(minor int64, exponent int) int64 { return minor * microsPerMinor(exponent) }

// FormatMinor formats an amount in minor units as a decimal with exactly
// exponent decimals: (15560, 2) → "155.60", (1556, 0) → "1556",
// (-1556, 3) → "-1.556".
func FormatMinor(minor int64, exponent int) string {
	neg := minor < 0
	u := uint64(minor)
	if neg {
		u = uint64(-minor) // -MinInt64 stays MinInt64, whose uint64 is its magnitude
	}
	s := strconv.FormatUint(u, 10)
	if exponent > 0 {
		if len(s) <= exponent {
			s = strings.Repeat("0", exponent-len(s)+1) + s
		}
		s = s[:len(s)-exponent] + "." + s[len(s)-exponent:]
	}
	if neg {
		return "-" + s
	}
	return s
}
