package routing

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"callbridge"
	"callbridge/rating"
)

// Columns returns the CSV columns RouteReader reads and WriteCSV writes,
// in WriteCSV's order. A file starts with a header row naming its columns
// in any order; prefix, strategy and gateways are required, the others
// may be left out (or a cell left empty) for their default:
//
//	prefix       E.164 digits without '+', 0 to 15 (empty: every number)
//	description  text, at most 200 bytes (default empty)
//	strategy     least_cost, priority or weighted
//	gateways     gateway names separated by ';', each optionally with
//	             ':weight' (1 to 1000000) for weighted: gw-a:70;gw-b:30
//	days         e.g. mon-fri, sat,sun or all (default all); no hol
//	from         HH:MM[:SS] in the plan's zone, inclusive (default 00:00)
//	until        HH:MM[:SS], exclusive, up to 24:00 (default 24:00)
//	priority     integer, lower first (default 0)
func Columns() []string { return slices.Clone(columnNames[:]) }

var columnNames = [...]string{"prefix", "description", "strategy", "gateways", "days", "from", "until", "priority"}

// RouteSource is a stream of routes, each with its line, as RouteReader
// reads them from a file or SliceRoutes from memory. After Next returns
// false, Err says why: nil at the end of good input.
type RouteSource interface {
	Next() bool
	Route() Route
	Line() int
	Err() error
}

// RouteReader reads routes in the format of Columns one row at a time, in
// memory bounded by a constant whatever the file's size: a row is at most
// rating.MaxRecordBytes, and at most rating.MaxRowErrors bad rows are
// kept. Next skips bad rows; after it returns false, Err returns a
// *rating.CSVError listing them. It does not look for duplicate rows; its
// consumer does (the database's unique key, or NewPlan).
type RouteReader struct {
	cr     *csv.Reader
	in     *rating.RecordLimit
	col    [len(columnNames)]int
	ncols  int
	header bool

	route Route
	line  int
	last  int
	err   error
	done  bool

	bad  []rating.RowError
	nbad int
}

// NewRouteReader returns a RouteReader of r.
func NewRouteReader(r io.Reader) *RouteReader {
	in := rating.NewRecordLimit(r)
	cr := csv.NewReader(in)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	return &RouteReader{cr: cr, in: in}
}

// Next reads up to the next good row; it returns false at the end of the
// file, at a malformed line, or when reading fails.
func (rr *RouteReader) Next() bool {
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
		if errors.Is(err, rating.ErrRecordTooLong) {
			rr.done = true
			rr.reject(rating.RowError{Line: rr.last + 1, Message: fmt.Sprintf("the row after line %d is longer than %d bytes", rr.last, rating.MaxRecordBytes)})
			return false
		}
		if err != nil {
			rr.done = true
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				rr.err = fmt.Errorf("routing: reading csv: %w", err)
				return false
			}
			rr.reject(rating.RowError{Line: pe.StartLine, Message: "malformed csv: " + pe.Err.Error()})
			return false
		}
		line, _ := rr.cr.FieldPos(0)
		rr.last, _ = rr.cr.FieldPos(len(rec) - 1)
		if len(rec) != rr.ncols {
			rr.reject(rating.RowError{Line: line, Message: fmt.Sprintf("has %d fields, the header %d", len(rec), rr.ncols)})
			continue
		}
		r, err := rr.parseRow(rec)
		if err == nil {
			err = r.Validate()
		}
		if err != nil {
			rr.reject(rating.RowError{Line: line, Column: callbridge.ErrorField(err), Message: callbridge.ErrorMessage(err)})
			continue
		}
		rr.route, rr.line = r, line
		return true
	}
}

func (rr *RouteReader) readHeader() bool {
	header, err := rr.cr.Read()
	if errors.Is(err, io.EOF) {
		rr.reject(rating.RowError{Line: 1, Message: "empty file: a header row is required"})
		return false
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			rr.reject(rating.RowError{Line: 1, Message: "malformed csv: " + pe.Err.Error()})
		} else {
			rr.err = fmt.Errorf("routing: reading csv: %w", err)
		}
		return false
	}
	for i := range rr.col {
		rr.col[i] = -1
	}
	for i, name := range header {
		if i == 0 {
			name = strings.TrimPrefix(name, "\uFEFF")
		}
		name = strings.ToLower(strings.TrimSpace(name))
		k := slices.Index(columnNames[:], name)
		switch {
		case k < 0:
			rr.reject(rating.RowError{Line: 1, Message: fmt.Sprintf("unknown column %q (known: %s)", name, strings.Join(columnNames[:], ","))})
			return false
		case rr.col[k] >= 0:
			rr.reject(rating.RowError{Line: 1, Message: fmt.Sprintf("column %q appears twice", name)})
			return false
		}
		rr.col[k] = i
	}
	if rr.col[0] < 0 || rr.col[2] < 0 || rr.col[3] < 0 {
		rr.reject(rating.RowError{Line: 1, Message: "the header must name at least prefix, strategy and gateways"})
		return false
	}
	rr.ncols = len(header)
	rr.last, _ = rr.cr.FieldPos(len(header) - 1)
	return true
}

// parseRow turns one record into a Route; Validate checks the values.
func (rr *RouteReader) parseRow(rec []string) (Route, error) {
	get := func(k int) string {
		if rr.col[k] < 0 {
			return ""
		}
		return strings.TrimSpace(rec[rr.col[k]])
	}
	r := Route{
		Prefix:      strings.TrimPrefix(get(0), "+"),
		Description: get(1),
		Strategy:    Strategy(strings.ToLower(get(2))),
		Days:        rating.AllDays,
		Until:       rating.Midnight,
	}
	var err error
	if r.Gateways, err = ParseGateways(get(3)); err != nil {
		return r, err
	}
	if s := get(4); s != "" {
		if r.Days, err = rating.ParseDays(s); err != nil {
			return r, callbridge.FieldError("days", "%s", strings.TrimPrefix(err.Error(), "rating: "))
		}
	}
	for i, p := range []*rating.TimeOfDay{&r.From, &r.Until} {
		if s := get(5 + i); s != "" {
			if *p, err = rating.ParseTimeOfDay(s); err != nil {
				return r, callbridge.FieldError(columnNames[5+i], "%s", strings.TrimPrefix(err.Error(), "rating: "))
			}
		}
	}
	if s := get(7); s != "" {
		v, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return r, callbridge.FieldError("priority", "%q is not a whole number", s)
		}
		r.Priority = int32(v)
	}
	return r, nil
}

// ParseGateways reads a gateways cell: names separated by ';', each
// optionally followed by ':weight'. EINVALID naming gateways.
func ParseGateways(s string) ([]Target, error) {
	var out []Target
	for item := range strings.SplitSeq(s, ";") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, w, hasWeight := strings.Cut(item, ":")
		t := Target{Gateway: strings.TrimSpace(name)}
		if hasWeight {
			v, err := strconv.ParseInt(strings.TrimSpace(w), 10, 32)
			if err != nil || v < 1 || v > MaxWeight {
				return nil, callbridge.FieldError("gateways", "weight %q of %s must be a whole number from 1 to %d", w, t.Gateway, MaxWeight)
			}
			t.Weight = int32(v)
		}
		if len(out) == MaxGateways {
			return nil, callbridge.FieldError("gateways", "must list 1 to %d gateways", MaxGateways)
		}
		out = append(out, t)
	}
	return out, nil
}

// FormatGateways writes targets as ParseGateways reads them; weights are
// written when any differs from 1.
func FormatGateways(ts []Target) string {
	weights := false
	for _, t := range ts {
		if t.Weight > 1 {
			weights = true
		}
	}
	var b strings.Builder
	for i, t := range ts {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(t.Gateway)
		if weights {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(int(max(t.Weight, 1))))
		}
	}
	return b.String()
}

func (rr *RouteReader) reject(e rating.RowError) {
	rr.nbad++
	if len(rr.bad) < rating.MaxRowErrors {
		rr.bad = append(rr.bad, e)
	}
}

// Route returns the row Next read.
func (rr *RouteReader) Route() Route { return rr.route }

// Line returns the line number of the row Next read, the header being
// line 1.
func (rr *RouteReader) Line() int { return rr.line }

// Err returns why Next returned false: nil at the end of a good file, a
// *rating.CSVError when any row was bad, else the failure to read
// (wrapped, so errors.As finds an *http.MaxBytesError).
func (rr *RouteReader) Err() error {
	if rr.err != nil {
		return rr.err
	}
	if rr.nbad > 0 {
		return &rating.CSVError{Rows: slices.Clone(rr.bad), Omitted: rr.nbad - len(rr.bad)}
	}
	return nil
}

// SliceRoutes returns a RouteSource of routes held in memory, numbered
// as the lines of a file with a header would be.
func SliceRoutes(routes []Route) RouteSource { return &sliceRoutes{routes: routes, i: -1} }

type sliceRoutes struct {
	routes []Route
	i      int
}

func (s *sliceRoutes) Next() bool {
	if s.i+1 >= len(s.routes) {
		return false
	}
	s.i++
	return true
}
func (s *sliceRoutes) Route() Route { return s.routes[s.i] }
func (s *sliceRoutes) Line() int    { return s.i + 2 }
func (s *sliceRoutes) Err() error   { return nil }

// CSVWriter writes routes with a header row in the format RouteReader
// reads, one at a time, so an export need not hold a plan in memory.
type CSVWriter struct {
	cw     *csv.Writer
	rec    []string
	header bool
}

// NewCSVWriter returns a CSVWriter writing to w.
func NewCSVWriter(w io.Writer) *CSVWriter {
	return &CSVWriter{cw: csv.NewWriter(w), rec: make([]string, len(columnNames))}
}

// Write writes one route (after the header, on the first call).
func (w *CSVWriter) Write(r *Route) error {
	if !w.header {
		w.header = true
		if err := w.cw.Write(columnNames[:]); err != nil {
			return fmt.Errorf("routing: writing csv: %w", err)
		}
	}
	w.rec[0] = r.Prefix
	w.rec[1] = r.Description
	w.rec[2] = string(r.Strategy)
	w.rec[3] = FormatGateways(r.Gateways)
	w.rec[4] = r.Days.String()
	w.rec[5] = r.From.String()
	w.rec[6] = r.Until.String()
	w.rec[7] = strconv.Itoa(int(r.Priority))
	if err := w.cw.Write(w.rec); err != nil {
		return fmt.Errorf("routing: writing csv: %w", err)
	}
	return nil
}

// Flush writes the header if nothing was written yet, then flushes.
func (w *CSVWriter) Flush() error {
	if !w.header {
		w.header = true
		if err := w.cw.Write(columnNames[:]); err != nil {
			return fmt.Errorf("routing: writing csv: %w", err)
		}
	}
	w.cw.Flush()
	if err := w.cw.Error(); err != nil {
		return fmt.Errorf("routing: writing csv: %w", err)
	}
	return nil
}

// WriteCSV writes routes with a header row.
func WriteCSV(w io.Writer, routes []Route) error {
	cw := NewCSVWriter(w)
	for i := range routes {
		if err := cw.Write(&routes[i]); err != nil {
			return err
		}
	}
	return cw.Flush()
}
