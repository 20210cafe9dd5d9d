package rating

import (
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
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

// CSVError refuses a whole file and lists its bad rows, in file order.
type CSVError struct {
	Rows []RowError
	// Omitted counts the bad rows beyond those listed (a RateReader
	// lists at most MaxRowErrors).
	Omitted int
}

// Bad returns how many rows are bad, listed or not.
func (e *CSVError) Bad() int { return len(e.Rows) + e.Omitted }

// Error lists the first bad rows.
func (e *CSVError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rating: %d bad row(s) in csv", e.Bad())
	for i, r := range e.Rows {
		if i == 10 {
			fmt.Fprintf(&b, "; and %d more", e.Bad()-i)
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
// rates and an error. It holds the whole file in memory: to import a file
// of any size in constant memory, stream it with a RateReader.
func ParseCSV(r io.Reader) ([]Rate, error) {
	rr := NewRateReader(r)
	rr.maxBad = math.MaxInt
	var (
		rates []Rate
		seen  = map[rateKey]int{}
	)
	for rr.Next() {
		rate, line := rr.Rate(), rr.Line()
		k := rateKey{rate.Prefix, rate.Days, rate.From, rate.Until, effMS(rate.EffectiveFrom, 0), rate.Priority}
		if prev, dup := seen[k]; dup {
			rr.reject(RowError{Line: line, Message: DuplicateMessage(prev)})
			continue
		}
		seen[k] = line
		if rr.nbad == 0 {
			rates = append(rates, rate)
		}
	}
	if err := rr.Err(); err != nil {
		return nil, err
	}
	return rates, nil
}

// DuplicateMessage is the message of a row that repeats the key of the
// row at line first.
func DuplicateMessage(first int) string {
	return fmt.Sprintf("duplicates line %d (same prefix, days, from, until, effective_from and priority)", first)
}

// MaxRowErrors is how many bad rows a RateReader's *CSVError lists; it
// counts the others in Omitted.
const MaxRowErrors = 100

// MaxRecordBytes bounds one CSV record (a row, with any quoted line
// breaks): a longer one ends the file as malformed, so a reader never
// holds more than this much of a row.
const MaxRecordBytes = 64 << 10

// RateSource is a stream of rates, each with the line it came from, as
// RateReader reads them from a file or SliceRates from memory. After Next
// returns false, Err says why: nil at the end of good input.
type RateSource interface {
	Next() bool
	Rate() Rate
	Line() int
	Err() error
}

// RateReader reads rates in the format of Columns one row at a time, in
// memory bounded by a constant whatever the file's size: a row is at most
// MaxRecordBytes, and at most MaxRowErrors bad rows are kept. Next skips
// bad rows (Rate.Validate fails, or the row's field count differs from the
// header's); after it returns false, Err returns a *CSVError if any row
// was bad. It does not look for duplicate rows, which takes memory in
// proportion to the file: its consumer does (the database's unique key).
type RateReader struct {
	cr     *csv.Reader
	in     *RecordLimit
	col    columns
	ncols  int
	header bool

	rate Rate
	line int
	last int // the line the last record ended on
	err  error
	done bool

	bad    []RowError
	nbad   int
	maxBad int
}

// NewRateReader returns a RateReader of r.
func NewRateReader(r io.Reader) *RateReader {
	in := NewRecordLimit(r)
	cr := csv.NewReader(in)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	return &RateReader{cr: cr, in: in, maxBad: MaxRowErrors}
}

// Next reads up to the next good row; it returns false at the end of the
// file, at a malformed line, or when reading fails.
func (rr *RateReader) Next() bool {
	if rr.done {
		return false
	}
	if !rr.header {
		rr.header = true
		if !rr.readHeader() {
			rr.done = true
			return false
		}
	}
	for {
		rr.in.Reset()
		rec, err := rr.cr.Read()
		if errors.Is(err, io.EOF) {
			rr.done = true
			return false
		}
		if errors.Is(err, ErrRecordTooLong) {
			rr.done = true
			rr.reject(RowError{Line: rr.last + 1, Message: fmt.Sprintf("the row after line %d is longer than %d bytes", rr.last, MaxRecordBytes)})
			return false
		}
		if err != nil {
			rr.done = true
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				rr.err = readError(err, 0)
				return false
			}
			// The reader cannot resynchronise after a syntax error.
			rr.reject(RowError{Line: pe.StartLine, Message: csvMessage(err)})
			return false
		}
		line, _ := rr.cr.FieldPos(0)
		rr.last, _ = rr.cr.FieldPos(len(rec) - 1)
		if len(rec) != rr.ncols {
			rr.reject(RowError{Line: line, Message: fmt.Sprintf("has %d fields, the header %d", len(rec), rr.ncols)})
			continue
		}
		rate, err := parseRow(rec, &rr.col)
		if err == nil {
			err = rate.Validate()
		}
		if err != nil {
			rr.reject(RowError{Line: line, Column: callbridge.ErrorField(err), Message: callbridge.ErrorMessage(err)})
			continue
		}
		rr.rate, rr.line = rate, line
		return true
	}
}

func (rr *RateReader) readHeader() bool {
	header, err := rr.cr.Read()
	if errors.Is(err, io.EOF) {
		rr.reject(RowError{Line: 1, Message: "empty file: a header row is required"})
		return false
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			rr.reject(RowError{Line: 1, Message: csvMessage(err)})
		} else {
			rr.err = readError(err, 1)
		}
		return false
	}
	if rr.col, err = parseHeader(header); err != nil {
		rr.reject(RowError{Line: 1, Message: err.Error()})
		return false
	}
	rr.ncols = len(header)
	rr.last, _ = rr.cr.FieldPos(len(header) - 1)
	return true
}

func (rr *RateReader) reject(e RowError) {
	rr.nbad++
	if len(rr.bad) < rr.maxBad {
		rr.bad = append(rr.bad, e)
	}
}

// Rate returns the row Next read.
func (rr *RateReader) Rate() Rate { return rr.rate }

// Line returns the line number of the row Next read, the header being
// line 1.
func (rr *RateReader) Line() int { return rr.line }

// Err returns why Next returned false: nil at the end of a good file, a
// *CSVError when any row was bad, else the failure to read (wrapped, so
// errors.As finds an *http.MaxBytesError).
func (rr *RateReader) Err() error {
	if rr.err != nil {
		return rr.err
	}
	if rr.nbad > 0 {
		return &CSVError{Rows: slices.Clone(rr.bad), Omitted: rr.nbad - len(rr.bad)}
	}
	return nil
}

// RecordLimit fails a read once more than MaxRecordBytes were read since
// its last Reset (a CSV reader resets it before each record), with
// ErrRecordTooLong. csv.Reader reads through a 4 KiB buffer, so a record
// may be up to MaxRecordBytes minus that long. The rate and route
// readers share it.
type RecordLimit struct {
	r io.Reader
	n int
}

// ErrRecordTooLong is the read error of an overlong record.
var ErrRecordTooLong = errors.New("rating: csv record too long")

// NewRecordLimit returns a RecordLimit reading r.
func NewRecordLimit(r io.Reader) *RecordLimit { return &RecordLimit{r: r} }

// Reset starts a new record.
func (l *RecordLimit) Reset() { l.n = 0 }

func (l *RecordLimit) Read(p []byte) (int, error) {
	if l.n >= MaxRecordBytes {
		return 0, ErrRecordTooLong
	}
	p = p[:min(len(p), MaxRecordBytes-l.n)]
	n, err := l.r.Read(p)
	l.n += n
	return n, err
}

// SliceRates returns a RateSource of rates held in memory, numbered as
// the lines of a file with a header would be (the first rate is line 2).
func SliceRates(rates []Rate) RateSource { return &sliceRates{rates: rates, i: -1} }

type sliceRates struct {
	rates []Rate
	i     int
}

func (s *sliceRates) Next() bool {
	if s.i+1 >= len(s.rates) {
		return false
	}
	s.i++
	return true
}
func (s *sliceRates) Rate() Rate { return s.rates[s.i] }
func (s *sliceRates) Line() int  { return s.i + 2 }
func (s *sliceRates) Err() error { return nil }

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

// WithDuplicates returns the error that refuses an import for srcErr's
// bad rows (when srcErr is a *CSVError; its other errors are not rows)
// and for dups, rows that repeat an earlier row's key, of which omitted
// more were not listed: one *CSVError with both, in line order, at most
// MaxRowErrors listed. It returns nil when there is neither.
func WithDuplicates(srcErr error, dups []RowError, omitted int) error {
	var ce CSVError
	var src *CSVError
	if errors.As(srcErr, &src) {
		ce = *src
	}
	if len(dups) == 0 && ce.Bad() == 0 {
		return nil
	}
	ce.Rows = append(ce.Rows, dups...)
	ce.Omitted += omitted
	slices.SortStableFunc(ce.Rows, func(a, b RowError) int { return cmp.Compare(a.Line, b.Line) })
	if len(ce.Rows) > MaxRowErrors {
		ce.Omitted += len(ce.Rows) - MaxRowErrors
		ce.Rows = ce.Rows[:MaxRowErrors]
	}
	return &ce
}

// ReadFailure returns a source's err unless it is a *CSVError: bad rows
// are reported with an import's other bad rows, a failure to read the
// source at once.
func ReadFailure(err error) error {
	var ce *CSVError
	if errors.As(err, &ce) {
		return nil
	}
	return err
}
