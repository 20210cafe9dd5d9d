package rating

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"callbridge"
)

// Columns returns the CSV columns ParseCSV reads and WriteCSV writes, in
// WriteCSV's order. A file starts with a header row naming its columns in
// any order; prefix and per_minute are required, every other column may
// be left out (or a cell left empty) for its default:
//
//	prefix           E.164 digits without '+', 1 to 15, e.g. 4930
//	description      text, at most 200 bytes (default empty)
//	band             text, at most 200 bytes (default empty)
//	per_minute       price of 60 s in currency units, at most 6 decimals: 0.0125
//	connect_fee      currency units (default 0)
//	min_charge       currency units (default 0)
//	first_increment  seconds, 1 to 86400 (default 60)
//	next_increment   seconds, 1 to 86400 (default 60)
//	days             e.g. mon-fri, sat,sun,hol or all (default all); see ParseDays
//	from             HH:MM[:SS] in the deck's zone, inclusive (default 00:00)
//	until            HH:MM[:SS], exclusive, up to 24:00 (default 24:00)
//	effective_from   RFC 3339 time, or YYYY-MM-DD for 00:00 UTC (default: always)
//	effective_until  RFC 3339 time, or YYYY-MM-DD for 00:00 UTC (default: for ever)
//	priority         integer, lower first (default 0)
func Columns() []string { return slices.Clone(columnNames[:]) }

var columnNames = [...]string{
	"prefix", "description", "band", "per_minute", "connect_fee", "min_charge",
	"first_increment", "next_increment", "days", "from", "until",
	"effective_from", "effective_until", "priority",
}

// RowError is one bad row of a CSV file.
type RowError struct {
	// Line is the row's line number in the file, the header being line 1.
	Line int `json:"line"`
	// Column names the bad cell, when one is at fault.
	Column string `json:"column,omitempty"`
	// Message says what is wrong.
	Message string `json:"message"`
}

// CSVError refuses a whole file and lists every bad row, in file order.
type CSVError struct {
	Rows []RowError
}

// Error lists the first bad rows.
func (e *CSVError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rating: %d bad row(s) in csv", len(e.Rows))
	for i, r := range e.Rows {
		if i == 10 {
			fmt.Fprintf(&b, "; and %d more", len(e.Rows)-i)
			break
		}
		fmt.Fprintf(&b, "; line %d", r.Line)
		if r.Column != "" {
			fmt.Fprintf(&b, " %s", r.Column)
		}
		fmt.Fprintf(&b, ": %s", r.Message)
	}
	return b.String()
}

// Lines returns the line numbers of the bad rows.
func (e *CSVError) Lines() []int {
	lines := make([]int, len(e.Rows))
	for i, r := range e.Rows {
		lines[i] = r.Line
	}
	return lines
}

type rateKey struct {
	prefix      string
	days        Days
	from, until TimeOfDay
	effFrom     int64
	priority    int32
}

// ParseCSV reads rates in the format of Columns. Every row is validated
// (Rate.Validate, and no two rows may have the same prefix, days, band
// times, effective_from and priority); if any row is bad the whole file is
// refused with a *CSVError listing every bad row. It never returns some
// rates and an error.
func ParseCSV(r io.Reader) ([]Rate, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, &CSVError{Rows: []RowError{{Line: 1, Message: "empty file: a header row is required"}}}
	}
	if err != nil {
		return nil, readError(err, 1)
	}
	col, err := parseHeader(header)
	if err != nil {
		return nil, &CSVError{Rows: []RowError{{Line: 1, Message: err.Error()}}}
	}
	ncols := len(header)

	var (
		rates []Rate
		bad   []RowError
		seen  = map[rateKey]int{}
	)
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return nil, readError(err, 0)
			}
			bad = append(bad, RowError{Line: pe.StartLine, Message: csvMessage(err)})
			break // the reader cannot resynchronise after a syntax error
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != ncols {
			bad = append(bad, RowError{Line: line, Message: fmt.Sprintf("has %d fields, the header %d", len(rec), ncols)})
			continue
		}
		rate, err := parseRow(rec, &col)
		if err == nil {
			err = rate.Validate()
		}
		if err != nil {
			bad = append(bad, RowError{Line: line, Column: callbridge.ErrorField(err), Message: callbridge.ErrorMessage(err)})
			continue
		}
		k := rateKey{rate.Prefix, rate.Days, rate.From, rate.Until, effMS(rate.EffectiveFrom, 0), rate.Priority}
		if prev, dup := seen[k]; dup {
			bad = append(bad, RowError{Line: line, Message: fmt.Sprintf("duplicates line %d (same prefix, days, from, until, effective_from and priority)", prev)})
			continue
		}
		seen[k] = line
		if len(bad) == 0 {
			rates = append(rates, rate)
		}
	}
	if len(bad) > 0 {
		return nil, &CSVError{Rows: bad}
	}
	return rates, nil
}

// readError reports a failure to read the file (not a bad row): a
// malformed header line becomes a *CSVError, anything else (the reader
// failed, the body was too large) is returned wrapped, so callers can tell
// it apart with errors.As.
func readError(err error, line int) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &CSVError{Rows: []RowError{{Line: line, Message: csvMessage(err)}}}
	}
	return fmt.Errorf("rating: reading csv: %w", err)
}

func csvMessage(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return "malformed csv: " + pe.Err.Error()
	}
	return "reading csv: " + err.Error()
}

// columns maps each known column to its index in the file, -1 if absent.
type columns [14]int

func parseHeader(h []string) (columns, error) {
	var c columns
	for i := range c {
		c[i] = -1
	}
	for i, name := range h {
		if i == 0 {
			name = strings.TrimPrefix(name, "\uFEFF") // spreadsheets' byte order mark
		}
		name = strings.ToLower(strings.TrimSpace(name))
		k := -1
		for j, known := range columnNames {
			if name == known {
				k = j
			}
		}
		switch {
		case k < 0:
			return c, fmt.Errorf("unknown column %q (known: %s)", name, strings.Join(columnNames[:], ","))
		case c[k] >= 0:
			return c, fmt.Errorf("column %q appears twice", name)
		}
		c[k] = i
	}
	if c[0] < 0 || c[3] < 0 {
		return c, errors.New("the header must name at least prefix and per_minute")
	}
	return c, nil
}

// parseRow turns one record into a Rate; Validate checks the values.
func parseRow(rec []string, col *columns) (Rate, error) {
	get := func(k int) string {
		if col[k] < 0 {
			return ""
		}
		return strings.TrimSpace(rec[col[k]])
	}
	r := Rate{
		Prefix:         strings.TrimPrefix(get(0), "+"),
		Description:    get(1),
		Band:           get(2),
		FirstIncrement: 60,
		NextIncrement:  60,
		Days:           AllDays,
		Until:          Midnight,
	}
	var err error
	bad := func(column string, e error) error {
		msg := e.Error()
		msg = strings.TrimPrefix(msg, "rating: ")
		return callbridge.FieldError(column, "%s", msg)
	}
	for i, p := range []*int64{&r.PerMinute, &r.ConnectFee, &r.MinCharge} {
		k := 3 + i
		if s := get(k); s != "" || k == 3 {
			if *p, err = ParseMoney(s); err != nil {
				return r, bad(columnNames[k], err)
			}
		}
	}
	for i, p := range []*int32{&r.FirstIncrement, &r.NextIncrement} {
		k := 6 + i
		if s := get(k); s != "" {
			v, err := strconv.ParseInt(s, 10, 32)
			if err != nil {
				return r, callbridge.FieldError(columnNames[k], "%q is not a whole number of seconds", s)
			}
			*p = int32(v)
		}
	}
	if s := get(8); s != "" {
		if r.Days, err = ParseDays(s); err != nil {
			return r, bad("days", err)
		}
	}
	for i, p := range []*TimeOfDay{&r.From, &r.Until} {
		k := 9 + i
		if s := get(k); s != "" {
			if *p, err = ParseTimeOfDay(s); err != nil {
				return r, bad(columnNames[k], err)
			}
		}
	}
	for i, p := range []*time.Time{&r.EffectiveFrom, &r.EffectiveUntil} {
		k := 11 + i
		if s := get(k); s != "" {
			if *p, err = parseEffective(s); err != nil {
				return r, bad(columnNames[k], err)
			}
		}
	}
	if s := get(13); s != "" {
		v, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return r, callbridge.FieldError("priority", "%q is not a whole number", s)
		}
		r.Priority = int32(v)
	}
	return r, nil
}

// parseEffective reads an RFC 3339 time or a date (00:00 UTC), in UTC.
func parseEffective(s string) (time.Time, error) {
	layout := time.RFC3339Nano
	if len(s) == len(time.DateOnly) {
		layout = time.DateOnly
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time or a YYYY-MM-DD date", s)
	}
	if t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}, fmt.Errorf("%q is out of range 1970 to 9999", s)
	}
	return t.UTC(), nil
}

// WriteCSV writes rates with a header row in the format ParseCSV reads,
// every column present.
func WriteCSV(w io.Writer, rates []Rate) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(columnNames[:]); err != nil {
		return fmt.Errorf("rating: writing csv: %w", err)
	}
	rec := make([]string, len(columnNames))
	for i := range rates {
		r := &rates[i]
		rec[0] = r.Prefix
		rec[1] = r.Description
		rec[2] = r.Band
		rec[3] = FormatMoney(r.PerMinute)
		rec[4] = FormatMoney(r.ConnectFee)
		rec[5] = FormatMoney(r.MinCharge)
		rec[6] = strconv.Itoa(int(r.FirstIncrement))
		rec[7] = strconv.Itoa(int(r.NextIncrement))
		rec[8] = r.Days.String()
		rec[9] = r.From.String()
		rec[10] = r.Until.String()
		rec[11] = formatEffective(r.EffectiveFrom)
		rec[12] = formatEffective(r.EffectiveUntil)
		rec[13] = strconv.Itoa(int(r.Priority))
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("rating: writing csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("rating: writing csv: %w", err)
	}
	return nil
}

func formatEffective(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
