package rating

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParseCSV(t *testing.T) {
	in := "\uFEFFPrefix,per_minute,description,days,from,until,first_increment,next_increment,connect_fee,min_charge,effective_from,effective_until,priority,band\n" +
		"4915,0.12,\"Germany, mobile\",mon-fri,08:00,18:00,1,1,0.05,0.1,2025-01-01,2026-01-01T00:00:00+01:00,0,peak\n" +
		"+4915,0.06,\"Germany, mobile\",,,,1,1,,,,,10,offpeak\n" +
		"49,0.02,,,,,,,,,,,,\n"
	got, err := ParseCSV(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Rate{
		{Prefix: "4915", Description: "Germany, mobile", Band: "peak", PerMinute: 120000, ConnectFee: 50000, MinCharge: 100000,
			FirstIncrement: 1, NextIncrement: 1, Days: Weekdays, From: 8 * 3600, Until: 18 * 3600,
			EffectiveFrom: utc("2025-01-01T00:00:00Z"), EffectiveUntil: utc("2025-12-31T23:00:00Z")},
		{Prefix: "4915", Description: "Germany, mobile", Band: "offpeak", PerMinute: 60000, FirstIncrement: 1, NextIncrement: 1,
			Days: AllDays, Until: Midnight, Priority: 10},
		{Prefix: "49", PerMinute: 20000, FirstIncrement: 60, NextIncrement: 60, Days: AllDays, Until: Midnight},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestParseCSVRefusesWholeFile(t *testing.T) {
	in := "prefix,per_minute,days,from,until,first_increment\n" +
		"4930,0.01,,,,\n" + // line 2: good
		"04930,0.01,,,,\n" + // line 3: leading zero
		"4930,-1,,,,\n" + // line 4: negative
		"4931,0.01,mon-xyz,,,\n" + // line 5: bad day
		"4932,0.01,,18:00,08:00,\n" + // line 6: band backwards
		"4933,0.01,,,,0\n" + // line 7: zero increment
		"4930,0.02,,,,\n" + // line 8: duplicates line 2
		"4934,0.0000001,,,,\n" + // line 9: too many decimals
		"4935,0.01,,\n" + // line 10: short row
		"4936,0.01,,25:00,,\n" // line 11: bad time
	_, err := ParseCSV(strings.NewReader(in))
	var ce *CSVError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a *CSVError", err)
	}
	if got, want := fmt.Sprint(ce.Lines()), "[3 4 5 6 7 8 9 10 11]"; got != want {
		t.Errorf("got lines %s, want %s", got, want)
	}
	cols := map[int]string{3: "prefix", 4: "per_minute", 5: "days", 6: "until", 7: "first_increment", 9: "per_minute", 11: "from"}
	for _, r := range ce.Rows {
		if r.Column != cols[r.Line] {
			t.Errorf("line %d: got column %q, want %q (%s)", r.Line, r.Column, cols[r.Line], r.Message)
		}
	}
	if !strings.HasPrefix(err.Error(), "rating: 9 bad row(s) in csv; line 3 prefix: ") {
		t.Errorf("got message %q", err.Error())
	}
}

func TestParseCSVHeader(t *testing.T) {
	for _, in := range []string{
		"",
		"per_minute\n1\n",               // no prefix column
		"prefix,per_minute,price\n",     // unknown column
		"prefix,per_minute,prefix\n",    // twice
		"prefix,\"per_minute\n",         // malformed
		"4930,0.01\n",                   // no header
		"prefix,per_minute\n\"4930,1\n", // malformed row
	} {
		_, err := ParseCSV(strings.NewReader(in))
		var ce *CSVError
		if !errors.As(err, &ce) || len(ce.Rows) == 0 {
			t.Errorf("%q: got %v, want a *CSVError", in, err)
		}
	}
}

func TestCSVRoundTrip(t *testing.T) {
	rates := benchRates(200, true)
	rates[0].EffectiveFrom = utc("2025-01-01T00:00:00Z")
	rates[1].EffectiveUntil = utc("2025-01-01T12:30:00Z")
	rates[2].Description = `quoted "name", with comma`
	var buf bytes.Buffer
	if err := WriteCSV(&buf, rates); err != nil {
		t.Fatal(err)
	}
	got, err := ParseCSV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rates) {
		t.Errorf("round trip changed the rates")
	}
}

func FuzzParseCSV(f *testing.F) {
	f.Add("prefix,per_minute\n4930,0.01\n")
	f.Add("prefix,per_minute,days,from,until,effective_from\n4915,0.12,mon-fri,08:00,18:00,2025-01-01\n")
	f.Add("prefix,description,per_minute\n1,\"a \"\"b\"\"\",1.5\n")
	f.Add("prefix,per_minute,first_increment,next_increment,priority\n44,0.0333,60,1,-3\n")
	f.Fuzz(func(t *testing.T, in string) {
		rates, err := ParseCSV(strings.NewReader(in))
		if err != nil {
			var ce *CSVError
			if !errors.As(err, &ce) || len(ce.Rows) == 0 || rates != nil {
				t.Fatalf("got %v rates and %v, want nil and a *CSVError with rows", rates, err)
			}
			return
		}
		var buf bytes.Buffer
		if err := WriteCSV(&buf, rates); err != nil {
			t.Fatal(err)
		}
		again, err := ParseCSV(&buf)
		if err != nil {
			t.Fatalf("re-parsing written csv: %v", err)
		}
		if len(again) != len(rates) || (len(rates) > 0 && !reflect.DeepEqual(again, rates)) {
			t.Fatalf("round trip changed %+v into %+v", rates, again)
		}
	})
}

// TestRateReaderBounds checks the two bounds that keep a RateReader's
// memory constant: at most MaxRowErrors bad rows are kept (the rest
// counted), and an overlong record ends the file as malformed.
func TestRateReaderBounds(t *testing.T) {
	var in strings.Builder
	in.WriteString("prefix,per_minute\n")
	for range MaxRowErrors + 50 {
		in.WriteString("0,1\n")
	}
	in.WriteString("4930,0.01\n")
	rr := NewRateReader(strings.NewReader(in.String()))
	good := 0
	for rr.Next() {
		good++
	}
	var ce *CSVError
	if !errors.As(rr.Err(), &ce) {
		t.Fatalf("got %v, want a *CSVError", rr.Err())
	}
	if good != 1 || len(ce.Rows) != MaxRowErrors || ce.Omitted != 50 || ce.Bad() != MaxRowErrors+50 {
		t.Errorf("got %d good, %d listed, %d omitted; want 1, %d, 50", good, len(ce.Rows), ce.Omitted, MaxRowErrors)
	}
	if !strings.HasPrefix(ce.Error(), fmt.Sprintf("rating: %d bad row(s)", MaxRowErrors+50)) {
		t.Errorf("got message %q", ce.Error())
	}

	long := "prefix,per_minute,description\n4930,0.01,short\n4931,0.01,\"" + strings.Repeat("x\n", MaxRecordBytes) + "\"\n"
	rr = NewRateReader(strings.NewReader(long))
	good = 0
	for rr.Next() {
		good++
	}
	if !errors.As(rr.Err(), &ce) || good != 1 || len(ce.Rows) != 1 || ce.Rows[0].Line != 3 ||
		!strings.Contains(ce.Rows[0].Message, "longer than") {
		t.Errorf("overlong record: got %d good, %v", good, rr.Err())
	}
}

// TestRateReaderSkipsBadRows reads every good row of a file with bad ones
// and reports the bad ones at the end, with their lines.
func TestRateReaderSkipsBadRows(t *testing.T) {
	rr := NewRateReader(strings.NewReader("prefix,per_minute\n4930,0.01\n04930,1\n4931,0.02\n4932\n"))
	var got []string
	for rr.Next() {
		got = append(got, fmt.Sprintf("%d:%s", rr.Line(), rr.Rate().Prefix))
	}
	var ce *CSVError
	if fmt.Sprint(got) != "[2:4930 4:4931]" || !errors.As(rr.Err(), &ce) || fmt.Sprint(ce.Lines()) != "[3 5]" {
		t.Errorf("got %v, %v", got, rr.Err())
	}
}
