package rating_test

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/rating"
)

// TestPricingDoc prices every example of docs/pricing.md and checks the
// answers the document gives, so the rules as written are the rules as
// run. An example is a level-3 section holding, in order, a ```deck block
// (the deck's terms), a ```csv block (its rates, as imported) and a
// ```calls block, one priced call a line:
//
//	number  answered-at(RFC 3339)  billmsec  =>  amount  billed_ms  flags  parts
//
// where flags is "-" or a comma-separated list and parts is the amounts of
// the parts, comma-separated ("-" when none).
func TestPricingDoc(t *testing.T) {
	examples := readPricingDoc(t, "../docs/pricing.md")
	if len(examples) < 8 {
		t.Fatalf("docs/pricing.md has %d examples; want at least 8", len(examples))
	}
	for _, ex := range examples {
		t.Run(ex.title, func(t *testing.T) {
			if ex.deck == nil || ex.csv == "" || len(ex.calls) == 0 {
				t.Fatalf("line %d: an example needs a deck, a csv and a calls block", ex.line)
			}
			info := rating.DeckInfo{AccountID: "doc", Name: ex.title, Currency: "EUR", TimeZone: "UTC", Precision: 6}
			for k, v := range ex.deck {
				if err := setTerm(&info, k, v); err != nil {
					t.Fatalf("deck %s: %v", k, err)
				}
			}
			if err := info.Validate(); err != nil {
				t.Fatalf("deck: %v", err)
			}
			loc, err := time.LoadLocation(info.TimeZone)
			if err != nil {
				t.Fatal(err)
			}
			rates, err := rating.ParseCSV(strings.NewReader(ex.csv))
			if err != nil {
				t.Fatalf("csv: %v", err)
			}
			deck, err := rating.NewDeck(info, loc, rates)
			if err != nil {
				t.Fatalf("NewDeck: %v", err)
			}
			for _, c := range ex.calls {
				r := deck.Price(c.usage)
				var parts []string
				for _, p := range r.Parts() {
					parts = append(parts, rating.FormatMoney(p.Amount))
				}
				got := fmt.Sprintf("%s %d %s %s", rating.FormatMoney(r.Amount), r.BilledMS, orDash(r.Flags.String()), orDash(strings.Join(parts, ",")))
				if got != c.want {
					t.Errorf("line %d: %s at %s for %d ms: got %q, want %q", c.line, c.usage.Number,
						c.usage.Start.Format(time.RFC3339), c.usage.BillMS, got, c.want)
				}
			}
		})
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

type docExample struct {
	title string
	line  int
	deck  map[string]string
	csv   string
	calls []docCall
}

type docCall struct {
	line  int
	usage rating.Usage
	want  string
}

func readPricingDoc(t *testing.T, path string) []*docExample {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		out   []*docExample
		cur   *docExample
		block string // the open fence's info string; "" outside a block
		body  strings.Builder
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case block == "" && strings.HasPrefix(line, "### "):
			cur = &docExample{title: strings.TrimPrefix(line, "### "), line: n}
			out = append(out, cur)
		case block == "" && strings.HasPrefix(line, "```"):
			block = strings.TrimPrefix(line, "```")
			if block == "" {
				block = "text"
			}
			body.Reset()
		case block != "" && line == "```":
			if cur != nil {
				if err := cur.add(block, body.String(), n); err != nil {
					t.Fatalf("%s:%d: %v", path, n, err)
				}
			}
			block = ""
		case block != "":
			body.WriteString(line + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// add records a closed block of the example; end is its closing line.
func (ex *docExample) add(kind, text string, end int) error {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	first := end - len(lines)
	switch kind {
	case "deck":
		ex.deck = map[string]string{}
		for _, l := range lines {
			k, v, ok := strings.Cut(l, ":")
			if !ok {
				return fmt.Errorf("deck line %q is not name: value", l)
			}
			ex.deck[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	case "csv":
		ex.csv = text
	case "calls":
		for i, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), "#") || strings.TrimSpace(l) == "" {
				continue
			}
			in, want, ok := strings.Cut(l, "=>")
			if !ok {
				return fmt.Errorf("calls line %q has no =>", l)
			}
			f := strings.Fields(in)
			if len(f) != 3 {
				return fmt.Errorf("calls line %q: want number, answered-at, billmsec", l)
			}
			at, err := time.Parse(time.RFC3339, f[1])
			if err != nil {
				return err
			}
			ms, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil {
				return err
			}
			ex.calls = append(ex.calls, docCall{line: first + i,
				usage: rating.Usage{Number: callbridge.Number(f[0]), Start: at, BillMS: ms},
				want:  strings.Join(strings.Fields(want), " ")})
		}
	}
	return nil
}

// setTerm sets one deck term of a ```deck block.
func setTerm(info *rating.DeckInfo, name, v string) error {
	var err error
	switch name {
	case "currency":
		info.Currency = v
	case "zone":
		info.TimeZone = v
	case "precision":
		info.Precision, err = strconv.Atoi(v)
	case "rounding":
		info.Rounding = rating.Rounding(v)
	case "short_ms":
		info.ShortMS, err = strconv.ParseInt(v, 10, 64)
	case "holidays":
		info.Holidays = strings.Split(v, ",")
	case "default_per_minute":
		info.Default = defaultRate(info.Default)
		info.Default.PerMinute, err = rating.ParseMoney(v)
	case "default_increments":
		// The deck's terms come from a map: either default_ term may
		// come first.
		info.Default = defaultRate(info.Default)
		a, b, _ := strings.Cut(v, "/")
		var f, n int
		if f, err = strconv.Atoi(a); err == nil {
			n, err = strconv.Atoi(b)
		}
		info.Default.FirstIncrement, info.Default.NextIncrement = int32(f), int32(n)
	default:
		return fmt.Errorf("unknown term")
	}
	return err
}

// defaultRate returns r, or a new whole-week default rate billed per
// minute when r is nil.
func defaultRate(r *rating.Rate) *rating.Rate {
	if r == nil {
		r = &rating.Rate{FirstIncrement: 60, NextIncrement: 60, Days: rating.AllDays, Until: rating.Midnight}
	}
	return r
}
