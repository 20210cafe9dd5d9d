package routing

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"callbridge/rating"
)

// readAll reads every good route of a file and the reader's verdict.
func readAll(s string) ([]Route, error) {
	rr := NewRouteReader(strings.NewReader(s))
	var out []Route
	for rr.Next() {
		out = append(out, rr.Route())
	}
	return out, rr.Err()
}

func TestRouteReader(t *testing.T) {
	in := "\uFEFFPrefix,strategy,gateways,days,from,until,priority,description\n" +
		"+4930,least_cost,carrier-a;carrier-b,,,,,Berlin\n" +
		"49,Weighted,carrier-a:70; carrier-b:30,mon-fri,08:00,18:00,0,Germany peak\n" +
		",priority,fallback,all,,,,everything else\n"
	got, err := readAll(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{
		{Prefix: "4930", Description: "Berlin", Strategy: LeastCost, Gateways: []Target{{Gateway: "carrier-a"}, {Gateway: "carrier-b"}},
			Days: rating.AllDays, Until: rating.Midnight},
		{Prefix: "49", Description: "Germany peak", Strategy: Weighted, Gateways: []Target{{"carrier-a", 70}, {"carrier-b", 30}},
			Days: rating.Weekdays, From: 8 * 3600, Until: 18 * 3600},
		{Prefix: "", Description: "everything else", Strategy: Priority, Gateways: []Target{{Gateway: "fallback"}},
			Days: rating.AllDays, Until: rating.Midnight},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestRouteReaderBadRows(t *testing.T) {
	in := "prefix,strategy,gateways,days,priority\n" +
		"49,least_cost,a,,\n" + // line 2: good
		"4x,least_cost,a,,\n" + // 3: prefix
		"49,cheapest,a,,\n" + // 4: strategy
		"49,priority,,,\n" + // 5: gateways
		"49,weighted,a:0,,\n" + // 6: weight
		"49,priority,a;a,,\n" + // 7: twice
		"49,priority,a,mon-fri,hol\n" + // 8: priority
		"49,priority,a,sat-mon,\n" + // 9: days
		"49,priority,a b,,\n" + // 10: gateway name
		"49,priority\n" // 11: field count
	_, err := readAll(in)
	var ce *rating.CSVError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a *rating.CSVError", err)
	}
	var got []string
	for _, r := range ce.Rows {
		got = append(got, r.Column+"@"+strconv.Itoa(r.Line))
	}
	want := []string{"prefix@3", "strategy@4", "gateways@5", "gateways@6", "gateways@7", "priority@8", "days@9", "gateways@10", "@11"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestRouteReaderHeader(t *testing.T) {
	for name, in := range map[string]string{
		"empty":          "",
		"unknown column": "prefix,strategy,gateways,cost\n",
		"twice":          "prefix,prefix,strategy,gateways\n",
		"missing":        "prefix,strategy\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := readAll(in)
			var ce *rating.CSVError
			if !errors.As(err, &ce) || len(ce.Rows) != 1 || ce.Rows[0].Line != 1 {
				t.Errorf("got %v, want line 1 refused", err)
			}
		})
	}
}

func TestRouteReaderBounds(t *testing.T) {
	long := "prefix,strategy,gateways,description\n49,priority,a," + strings.Repeat("x", rating.MaxRecordBytes) + "\n"
	_, err := readAll(long)
	var ce *rating.CSVError
	if !errors.As(err, &ce) || !strings.Contains(ce.Rows[0].Message, "longer than") {
		t.Errorf("got %v, want the overlong row refused", err)
	}
	var b strings.Builder
	b.WriteString("prefix,strategy,gateways\n")
	for range rating.MaxRowErrors + 50 {
		b.WriteString("x,priority,a\n")
	}
	_, err = readAll(b.String())
	if !errors.As(err, &ce) || len(ce.Rows) != rating.MaxRowErrors || ce.Omitted != 50 {
		t.Errorf("got %v, want %d listed and 50 omitted", err, rating.MaxRowErrors)
	}
	rr := NewRouteReader(iotest.ErrReader(io.ErrUnexpectedEOF))
	if rr.Next() || !errors.Is(rr.Err(), io.ErrUnexpectedEOF) {
		t.Errorf("a failing reader: got %v, want it wrapped", rr.Err())
	}
}

func TestCSVRoundTrip(t *testing.T) {
	peak := route("49", Weighted, "a", "b")
	peak.Gateways[0].Weight, peak.Gateways[1].Weight = 3, 1
	peak.Days, peak.From, peak.Until, peak.Priority, peak.Description = rating.Weekdays, 8*3600+30, 18*3600, 2, `quoted, "text"`
	routes := []Route{route("", Priority, "x"), peak, route("4930", LeastCost, "a", "b", "c")}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, routes); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(buf.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if !reflect.DeepEqual(got, routes) {
		t.Errorf("got  %+v\nwant %+v\n%s", got, routes, buf.String())
	}
	buf.Reset()
	if err := WriteCSV(&buf, nil); err != nil || buf.String() != strings.Join(Columns(), ",")+"\n" {
		t.Errorf("no routes: got %q, %v; want the header alone", buf.String(), err)
	}
}

func FuzzRouteReader(f *testing.F) {
	f.Add("prefix,strategy,gateways\n49,priority,a;b:2\n")
	f.Add("prefix,strategy,gateways,days,from,until\n1,weighted,a:1,mon-fri,08:00,24:00\n")
	f.Add("prefix,strategy,gateways\n\"4\n9\",least_cost,a\n")
	f.Fuzz(func(t *testing.T, in string) {
		rr := NewRouteReader(strings.NewReader(in))
		for rr.Next() {
			r := rr.Route()
			if err := r.Validate(); err != nil {
				t.Fatalf("Next returned a route Validate refuses: %v", err)
			}
			for _, g := range r.Gateways {
				if !IsGateway(g.Gateway) {
					t.Fatalf("gateway %q passed", g.Gateway)
				}
			}
		}
	})
}
