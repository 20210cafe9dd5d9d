package rating

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"callbridge"
)

// Limits on the values a Rate may hold. They keep every product in the
// engine far from int64 overflow and refuse typing mistakes early.
const (
	// MaxPrice is the largest PerMinute, ConnectFee or MinCharge: one
	// million currency units.
	MaxPrice = 1_000_000 * Micro
	// MaxIncrement is the longest billing increment, one day, in seconds.
	MaxIncrement = 86400
	// MaxPrefixLen is the longest prefix: a whole E.164 number.
	MaxPrefixLen = 15
	maxTextLen   = 200
)

// Micro is one currency unit in micro-units: every amount in this package
// is an int64 count of millionths of the deck's currency.
const Micro = 1_000_000

// Rate is one row of a deck: the price of calls to numbers starting with
// Prefix during one time band and one effective period. Several rates may
// share a prefix (peak and off-peak, old and new price); for a call the
// engine takes the longest prefix that has a rate in force, and among that
// prefix's rates the first, by Priority, whose band contains the time.
//
// The vocabulary follows CGRateS (ConnectFee, Rate per RateUnit,
// RateIncrement, GroupIntervalStart): PerMinute is the CGRateS Rate with a
// RateUnit of 60 s; FirstIncrement is the RateIncrement of the interval
// group starting at 0; NextIncrement is the RateIncrement of the group whose
// GroupIntervalStart is FirstIncrement. Money is int64 micro-units.
type Rate struct {
	// Prefix is the destination prefix, E.164 digits without '+'.
	// It is empty only for a deck's default rate.
	Prefix string `json:"prefix"`
	// Description names the destination for people ("Germany mobile").
	Description string `json:"description,omitempty"`
	// Band names the time band for people ("peak", "weekend").
	Band string `json:"band,omitempty"`
	// PerMinute is the price of 60 s of billed time in micro-units.
	PerMinute int64 `json:"per_minute_micros"`
	// ConnectFee is charged once per answered, billable call.
	ConnectFee int64 `json:"connect_fee_micros"`
	// MinCharge is the least a billable call costs, connect fee included.
	MinCharge int64 `json:"min_charge_micros"`
	// FirstIncrement is the first billing interval in seconds: a call
	// shorter than it is billed for all of it.
	FirstIncrement int32 `json:"first_increment"`
	// NextIncrement is every later billing interval in seconds.
	NextIncrement int32 `json:"next_increment"`
	// Days are the days the band applies on, in the deck's zone.
	Days Days `json:"days"`
	// From is the start of the band's time of day, inclusive.
	From TimeOfDay `json:"from"`
	// Until is the end of the band's time of day, exclusive; 24:00 is
	// midnight at the end of the day. From < Until: a night band is two
	// rates (00:00-08:00 and 20:00-24:00).
	Until TimeOfDay `json:"until"`
	// EffectiveFrom is the first instant the rate is in force; zero means
	// since always.
	EffectiveFrom time.Time `json:"effective_from,omitzero"`
	// EffectiveUntil is the first instant the rate is no longer in force;
	// zero means for ever.
	EffectiveUntil time.Time `json:"effective_until,omitzero"`
	// Priority orders the rates of one prefix: lower first. Among equal
	// priorities the rate with the later EffectiveFrom comes first, so a
	// new price added without closing the old one takes over on its date;
	// then the smaller day set (as a bit mask: Sunday 1, Monday 2 ...
	// Saturday 64, holidays 128; so mon-fri before all), then the earlier
	// From. The order does not depend on the order rates are given in.
	Priority int32 `json:"priority"`
}

// Validate reports the first problem with r as an EINVALID
// *callbridge.Error whose Field is the CSV column at fault. A deck's
// default rate, which has no prefix, is checked by DeckInfo.Validate.
func (r *Rate) Validate() error {
	if err := validatePrefix(r.Prefix); err != nil {
		return err
	}
	if err := r.validateCommon(); err != nil {
		return err
	}
	if r.Days == 0 {
		return callbridge.FieldError("days", "no day selected")
	}
	if r.From < 0 || r.From >= Midnight {
		return callbridge.FieldError("from", "time of day out of range")
	}
	if r.Until <= 0 || r.Until > Midnight {
		return callbridge.FieldError("until", "time of day out of range")
	}
	if r.From >= r.Until {
		return callbridge.FieldError("until", "must be later than from (split a band that crosses midnight into two rates)")
	}
	if !r.EffectiveFrom.IsZero() && !r.EffectiveUntil.IsZero() && !r.EffectiveUntil.After(r.EffectiveFrom) {
		return callbridge.FieldError("effective_until", "must be later than effective_from")
	}
	return nil
}

func (r *Rate) validateCommon() error {
	switch {
	case len(r.Description) > maxTextLen:
		return callbridge.FieldError("description", "longer than 200 bytes")
	case len(r.Band) > maxTextLen:
		return callbridge.FieldError("band", "longer than 200 bytes")
	case callbridge.CheckText("description", r.Description) != nil:
		return callbridge.CheckText("description", r.Description)
	case callbridge.CheckText("band", r.Band) != nil:
		return callbridge.CheckText("band", r.Band)
	case r.PerMinute < 0 || r.PerMinute > MaxPrice:
		return callbridge.FieldError("per_minute", "out of range 0 to 1000000")
	case r.ConnectFee < 0 || r.ConnectFee > MaxPrice:
		return callbridge.FieldError("connect_fee", "out of range 0 to 1000000")
	case r.MinCharge < 0 || r.MinCharge > MaxPrice:
		return callbridge.FieldError("min_charge", "out of range 0 to 1000000")
	case r.FirstIncrement < 1 || r.FirstIncrement > MaxIncrement:
		return callbridge.FieldError("first_increment", "out of range 1 to 86400 seconds")
	case r.NextIncrement < 1 || r.NextIncrement > MaxIncrement:
		return callbridge.FieldError("next_increment", "out of range 1 to 86400 seconds")
	}
	return nil
}

func validatePrefix(p string) error {
	if len(p) == 0 || len(p) > MaxPrefixLen {
		return callbridge.FieldError("prefix", "must have 1 to 15 digits")
	}
	if p[0] == '0' {
		return callbridge.FieldError("prefix", "must not start with 0 (E.164 digits without '+')")
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return callbridge.FieldError("prefix", "must contain only digits")
		}
	}
	return nil
}

// Days is a set of days a band applies on: one bit per weekday (bit
// time.Sunday to bit time.Saturday) and Holidays. On a date in the deck's
// holiday calendar only the Holidays bit is consulted, so a weekday peak
// band does not apply on a public holiday that falls on a Monday.
type Days uint8

// Day sets.
const (
	Holidays Days = 1 << 7
	Weekdays Days = 1<<time.Monday | 1<<time.Tuesday | 1<<time.Wednesday | 1<<time.Thursday | 1<<time.Friday
	Weekend  Days = 1<<time.Saturday | 1<<time.Sunday
	AllDays  Days = Weekdays | Weekend | Holidays
)

var dayNames = [7]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// mondayFirst is the order days are written in.
var mondayFirst = [7]time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday, time.Saturday, time.Sunday}

// ParseDays parses a day set: "all" (or empty) for every day including
// holidays, or a comma-separated list of "mon".."sun", ranges such as
// "mon-fri" (Monday first, so "sat-sun" but not "sun-sat") and "hol" for
// the deck's holidays. Case is ignored.
func ParseDays(s string) (Days, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || s == "all" {
		return AllDays, nil
	}
	var d Days
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "hol" {
			d |= Holidays
			continue
		}
		lo, hi, isRange := strings.Cut(item, "-")
		a, ok := mondayIndex(lo)
		if !ok {
			return 0, fmt.Errorf("rating: unknown day %q", lo)
		}
		b := a
		if isRange {
			if b, ok = mondayIndex(hi); !ok {
				return 0, fmt.Errorf("rating: unknown day %q", hi)
			}
			if b < a {
				return 0, fmt.Errorf("rating: day range %q runs backwards (weeks start on mon)", item)
			}
		}
		for i := a; i <= b; i++ {
			d |= 1 << mondayFirst[i]
		}
	}
	return d, nil
}

func mondayIndex(name string) (int, bool) {
	for i, wd := range mondayFirst {
		if dayNames[wd] == name {
			return i, true
		}
	}
	return 0, false
}

// String returns d in the form ParseDays reads, e.g. "mon-fri" or
// "sat,sun,hol"; "all" for every day and holidays.
func (d Days) String() string {
	if d == AllDays {
		return "all"
	}
	var b strings.Builder
	for i := 0; i < 7; {
		if d&(1<<mondayFirst[i]) == 0 {
			i++
			continue
		}
		j := i
		for j+1 < 7 && d&(1<<mondayFirst[j+1]) != 0 {
			j++
		}
		for _, s := range runNames(i, j) {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(s)
		}
		i = j + 1
	}
	if d&Holidays != 0 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString("hol")
	}
	return b.String()
}

func runNames(i, j int) []string {
	switch {
	case i == j:
		return []string{dayNames[mondayFirst[i]]}
	case j == i+1:
		return []string{dayNames[mondayFirst[i]], dayNames[mondayFirst[j]]}
	}
	return []string{dayNames[mondayFirst[i]] + "-" + dayNames[mondayFirst[j]]}
}

// MarshalText implements encoding.TextMarshaler.
func (d Days) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Days) UnmarshalText(b []byte) error {
	v, err := ParseDays(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// matches reports whether the band applies on a day with the given weekday
// that is or is not a holiday.
func (d Days) matches(wd int, holiday bool) bool {
	if holiday {
		return d&Holidays != 0
	}
	return d&(1<<wd) != 0
}

// TimeOfDay is a wall-clock time in the deck's zone, in seconds since
// midnight: 0 to Midnight inclusive.
type TimeOfDay int32

// Midnight is 24:00, the end of a day.
const Midnight TimeOfDay = 86400

// ParseTimeOfDay parses "HH:MM" or "HH:MM:SS", "00:00" to "24:00".
func ParseTimeOfDay(s string) (TimeOfDay, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, fmt.Errorf("rating: time of day %q is not HH:MM or HH:MM:SS", s)
	}
	var v [3]int
	limits := [3]int{24, 59, 59}
	for i, p := range parts {
		if len(p) != 2 || p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9' {
			return 0, fmt.Errorf("rating: time of day %q is not HH:MM or HH:MM:SS", s)
		}
		v[i] = int(p[0]-'0')*10 + int(p[1]-'0')
		if v[i] > limits[i] {
			return 0, fmt.Errorf("rating: time of day %q out of range", s)
		}
	}
	t := TimeOfDay(v[0]*3600 + v[1]*60 + v[2])
	if t > Midnight {
		return 0, fmt.Errorf("rating: time of day %q is after 24:00", s)
	}
	return t, nil
}

// String returns "HH:MM", or "HH:MM:SS" when there are seconds.
func (t TimeOfDay) String() string {
	h, m, s := int(t)/3600, int(t)/60%60, int(t)%60
	if s != 0 {
		return fmt.Sprintf("%02d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%02d:%02d", h, m)
}

// MarshalText implements encoding.TextMarshaler.
func (t TimeOfDay) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *TimeOfDay) UnmarshalText(b []byte) error {
	v, err := ParseTimeOfDay(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// ParseMoney parses a non-negative decimal amount of currency units with
// at most six decimals ("0.0125", "3", "1.5") into micro-units. No sign,
// exponent, thousands separator or float rounding is accepted.
func ParseMoney(s string) (int64, error) {
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" && (!dot || frac == "") || len(frac) > 6 || len(whole) > 7 {
		return 0, fmt.Errorf("rating: amount %q is not a decimal with at most 6 decimals and 7 integer digits", s)
	}
	var v int64
	for i := 0; i < len(whole); i++ {
		c := whole[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("rating: amount %q is not a decimal number", s)
		}
		v = v*10 + int64(c-'0')
	}
	v *= Micro
	scale := int64(Micro / 10)
	for i := 0; i < len(frac); i++ {
		c := frac[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("rating: amount %q is not a decimal number", s)
		}
		v += int64(c-'0') * scale
		scale /= 10
	}
	return v, nil
}

// FormatMoney writes micro-units as a decimal amount of currency units
// without trailing zeros: 12500 is "0.0125", 3000000 is "3".
func FormatMoney(m int64) string {
	neg := m < 0
	u := uint64(m)
	if neg {
		u = -u
	}
	s := strconv.FormatUint(u/Micro, 10)
	if f := u % Micro; f != 0 {
		fs := strconv.FormatUint(f+Micro, 10)[1:]
		s += "." + strings.TrimRight(fs, "0")
	}
	if neg {
		s = "-" + s
	}
	return s
}
