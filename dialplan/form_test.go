package dialplan

import (
	"errors"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"

	"callbridge"
)

// viaParseQuery is the reference ParseForm must agree with.
func viaParseQuery(body string, rules callbridge.NumberRules) (*Request, error) {
	form, _ := url.ParseQuery(body)
	return ParseRequest(form, rules)
}

// sameParse fails t unless ParseForm and the reference agree on body.
func sameParse(t *testing.T, body string, rules callbridge.NumberRules) {
	t.Helper()
	want, werr := viaParseQuery(body, rules)
	got, gerr := ParseForm([]byte(body), rules)
	if !errors.Is(gerr, werr) || (werr == nil && gerr != nil) {
		t.Fatalf("ParseForm(%q) error %v, want %v", body, gerr, werr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseForm(%q) = %+v, want %+v", body, got, want)
	}
}

func rawFixtureForm(t testing.TB) string {
	t.Helper()
	raw, err := os.ReadFile("testdata/xml-curl-dialplan-request.txt")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(raw))
}

func TestParseFormMatchesParseQuery(t *testing.T) {
	rules := callbridge.NumberRules{CountryCode: "49", TrunkPrefix: "0"}
	fixture := rawFixtureForm(t)
	withDest := strings.Replace(fixture, "Hunt-Destination-Number=5551234", "Hunt-Destination-Number=%2B4930100100", 1)
	tests := []struct {
		name string
		body string
	}{
		{"fixture", fixture},
		{"fixture routed", withDest},
		{"empty", ""},
		{"only section", "section=dialplan"},
		{"directory", strings.Replace(fixture, "section=dialplan", "section=directory", 1)},
		{"duplicate section, first wins", "section=directory&" + fixture},
		{"escaped key", strings.Replace(withDest, "Unique-ID=", "Unique%2DID=", 1)},
		{"plus in value", "section=dialplan&Hunt-Destination-Number=%2B49+30+100100&Hunt-Context=public&Unique-ID=5c9a4dc0-67dc-4464-b4fe-ea2894d7dce0"},
		{"semicolon pair skipped", "section=dialplan;x=1&" + withDest},
		{"bad escape pair skipped", "Hunt-Destination-Number=%zz&" + withDest},
		{"bad escape in key skipped", "Hunt-Destination%2=1&" + withDest},
		{"empty first value", "Hunt-Destination-Number=&" + withDest},
		{"key without value", "section&" + withDest},
		{"long destination", strings.Replace(withDest, "%2B4930100100", strings.Repeat("1", 5000), 1)},
		{"long hostname", strings.Replace(withDest, "FreeSWITCH-Hostname=vm", "FreeSWITCH-Hostname="+strings.Repeat("h", 3000), 1)},
		{"long caller", strings.Replace(withDest, "Caller-Caller-ID-Number=sipp", "Caller-Caller-ID-Number=1"+strings.Repeat("%30", 2000), 1)},
		{"long core uuid", strings.Replace(withDest, "Core-UUID=", "Core-UUID="+strings.Repeat("a", 1100), 1)},
		{"long key", strings.Repeat("k", 200) + "=1&" + withDest},
		{"too many fields", strings.Repeat("a=1&", maxFormFields) + withDest},
		{"nul and high bytes", "section=dialplan&Hunt-Destination-Number=%00%ff&" + withDest},
		{"injection", strings.Replace(withDest, "Hunt-Context=public", "Hunt-Context=%22%3E%3Cx%3E", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { sameParse(t, tt.body, rules) })
	}
}

// FuzzParseForm checks that the one-pass parser agrees with ParseRequest
// over url.ParseQuery for any body, so hostile input is as harmless as it
// was.
func FuzzParseForm(f *testing.F) {
	f.Add(rawFixtureForm(f))
	f.Add("section=dialplan&Hunt-Destination-Number=%2B4930100100&Hunt-Context=public&Unique-ID=" + testBinding)
	f.Add("section=dialplan&Hunt%2DDestination-Number=4930100100&Hunt-Context=p%22%3E&Unique-ID=x;y")
	f.Add("section=dialplan&section=directory&Hunt-Destination-Number=(030)+100-100&&=&%")
	rules := callbridge.NumberRules{CountryCode: "49", TrunkPrefix: "0"}
	f.Fuzz(func(t *testing.T, body string) {
		sameParse(t, body, rules)
	})
}

func BenchmarkParseForm(b *testing.B) {
	body := []byte(strings.Replace(rawFixtureForm(b), "Hunt-Destination-Number=5551234", "Hunt-Destination-Number=4930100100", 1))
	rules := callbridge.NumberRules{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseForm(body, rules); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseQueryRequest(b *testing.B) {
	body := strings.Replace(rawFixtureForm(b), "Hunt-Destination-Number=5551234", "Hunt-Destination-Number=4930100100", 1)
	rules := callbridge.NumberRules{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := viaParseQuery(body, rules); err != nil {
			b.Fatal(err)
		}
	}
}
