package callbridge

import "strings"

// Number is a phone number in E.164 form without the leading '+': 1 to 15
// ASCII digits, the first not zero. A Number that came from ParseNumber or
// NumberRules.Parse is safe to place in an ESL command or an XML document;
// Validate checks one that was built some other way (a database row, a
// conversion).
type Number string

// Validate reports whether n is well formed. It returns an EINVALID *Error.
func (n Number) Validate() error {
	if len(n) < 1 || len(n) > 15 {
		return Errorf(EINVALID, "number must have 1 to 15 digits")
	}
	if n[0] == '0' {
		return Errorf(EINVALID, "number must not start with 0")
	}
	for i := 0; i < len(n); i++ {
		if n[i] < '0' || n[i] > '9' {
			return Errorf(EINVALID, "number must contain only digits")
		}
	}
	return nil
}

// String returns the digits.
func (n Number) String() string { return string(n) }

// E164 returns the number with its leading '+'.
func (n Number) E164() string { return "+" + string(n) }

// NumberRules says how numbers written by people become E.164 digits.
// The zero value accepts only international forms ("+4930...", "004930...",
// or bare E.164 digits "4930...").
type NumberRules struct {
	// CountryCode replaces a national trunk prefix, e.g. "49" turns
	// "030 1234567" into "49301234567". Empty: national forms are refused.
	CountryCode string
	// TrunkPrefix is the national dialling prefix, "0" in most of the world.
	// Ignored when CountryCode is empty.
	TrunkPrefix string
	// InternationalPrefix is the dialled exit code, "00" by default.
	InternationalPrefix string
	// MinDigits is the shortest accepted result; 0 means 6.
	MinDigits int
}

// DefaultNumberRules returns the rules that accept international forms
// only, at least 6 digits.
func DefaultNumberRules() NumberRules { return NumberRules{InternationalPrefix: "00"} }

// ParseNumber normalises s with DefaultNumberRules.
func ParseNumber(s string) (Number, error) { return DefaultNumberRules().Parse(s) }

// Parse normalises a number written by a person or a carrier into E.164
// digits. Spaces, dots, dashes and parentheses between digits are removed;
// one leading '+' is accepted. Anything else (letters, unicode digits,
// control characters, SIP URIs) is refused with an EINVALID *Error, so no
// hostile byte can pass through a Number.
func (r NumberRules) Parse(s string) (Number, error) {
	if len(s) > 32 {
		return "", Errorf(EINVALID, "number is too long")
	}
	s = strings.TrimSpace(s)
	plus := strings.HasPrefix(s, "+")
	if plus {
		s = s[1:]
	}
	var b [32]byte
	digits := b[:0]
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
			if len(digits) == 0 && c != '(' {
				return "", Errorf(EINVALID, "number must start with a digit or '+'")
			}
		default:
			return "", Errorf(EINVALID, "number may contain only digits, spaces, '-', '.', '(' and ')' after an optional '+'")
		}
	}
	d := string(digits)
	if !plus {
		intl := r.InternationalPrefix
		if intl == "" {
			intl = "00"
		}
		switch {
		case strings.HasPrefix(d, intl):
			d = d[len(intl):]
		case r.CountryCode != "" && r.TrunkPrefix != "" && strings.HasPrefix(d, r.TrunkPrefix):
			d = r.CountryCode + d[len(r.TrunkPrefix):]
		}
	}
	min := r.MinDigits
	if min <= 0 {
		min = 6
	}
	if len(d) < min {
		return "", Errorf(EINVALID, "number must have at least %d digits", min)
	}
	n := Number(d)
	if err := n.Validate(); err != nil {
		return "", err
	}
	return n, nil
}
