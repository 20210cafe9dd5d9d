package dialplan

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"callbridge"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const (
	testX       = "4930100100"
	testA       = "4917011111"
	testB       = "4917022222"
	testC       = "4917033333"
	testAccount = "8b1c3a5e-2f7d-4c11-9d0e-5a6b7c8d9e0f"
	testBinding = "0f1e2d3c-4b5a-4697-8877-665544332211"
)

var testNow = time.Date(2026, 11, 21, 23, 37, 4, 0, time.UTC)

// fixtureForm returns the form real FreeSWITCH 1.10.12 posted, with the
// destination and caller replaced.
func fixtureForm(t testing.TB, dest, caller string) url.Values {
	t.Helper()
	body, err := os.ReadFile("testdata/xml-curl-dialplan-request.txt")
	if err != nil {
		t.Fatal(err)
	}
	form, err := url.ParseQuery(strings.TrimSpace(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Hunt-Destination-Number", "Caller-Destination-Number"} {
		form.Set(k, dest)
	}
	for _, k := range []string{"Hunt-Caller-ID-Number", "Caller-Caller-ID-Number"} {
		form.Set(k, caller)
	}
	return form
}

func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "callbridge" || p == "callbridge/dialplan" {
			continue
		}
		if strings.Contains(strings.SplitN(p, "/", 2)[0], ".") {
			t.Errorf("dialplan depends on %s; want the standard library and callbridge only", p)
		}
		if strings.HasPrefix(p, "callbridge/") {
			t.Errorf("dialplan depends on %s; want the root package only", p)
		}
	}
}

func TestParseRequestFixture(t *testing.T) {
	body, err := os.ReadFile("testdata/xml-curl-dialplan-request.txt")
	if err != nil {
		t.Fatal(err)
	}
	form, err := url.ParseQuery(strings.TrimSpace(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	// The capture dialled 5551234 (7 digits) from caller id "sipp".
	got, err := ParseRequest(form, callbridge.NumberRules{MinDigits: 6})
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	want := &Request{
		Destination:    "5551234",
		DestinationRaw: "5551234",
		Caller:         "",
		Context:        "public",
		UniqueID:       "5c9a4dc0-67dc-4464-b4fe-ea2894d7dce0",
		CoreUUID:       "e480c9d8-62a5-4c98-aa31-4ad628da6215",
		Hostname:       "vm",
	}
	if *got != *want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestParseRequest(t *testing.T) {
	rules := callbridge.NumberRules{CountryCode: "49", TrunkPrefix: "0"}
	tests := []struct {
		name    string
		edit    func(url.Values)
		want    Request
		wantErr error
	}{
		{
			name: "e164 with plus",
			edit: func(f url.Values) {
				f.Set("Hunt-Destination-Number", "+4930100100")
				f.Set("Hunt-Caller-ID-Number", "+4917011111")
			},
			want: Request{Destination: testX, DestinationRaw: "+4930100100", Caller: testA},
		},
		{
			name: "national forms normalised",
			edit: func(f url.Values) {
				f.Set("Hunt-Destination-Number", "030100100")
				f.Set("Hunt-Caller-ID-Number", "017011111")
			},
			want: Request{Destination: testX, DestinationRaw: "030100100", Caller: testA},
		},
		{
			name: "hunt fields win over caller fields",
			edit: func(f url.Values) {
				f.Set("Hunt-Destination-Number", "4930100100")
				f.Set("Caller-Destination-Number", "4930999999")
			},
			want: Request{Destination: testX, DestinationRaw: "4930100100", Caller: testA},
		},
		{
			name: "caller fields when hunt fields are missing",
			edit: func(f url.Values) {
				f.Del("Hunt-Destination-Number")
				f.Del("Hunt-Caller-ID-Number")
				f.Del("Hunt-Context")
				f.Set("Caller-Caller-ID-Number", testB)
			},
			want: Request{Destination: testX, DestinationRaw: testX, Caller: testB},
		},
		{
			name: "withheld caller id leaves caller empty",
			edit: func(f url.Values) {
				f.Set("Hunt-Caller-ID-Number", "anonymous")
				f.Set("Caller-Caller-ID-Number", "anonymous")
			},
			want: Request{Destination: testX, DestinationRaw: testX},
		},
		{
			name: "sip uri caller is not a number",
			edit: func(f url.Values) {
				f.Set("Hunt-Caller-ID-Number", "sip:4917011111@evil")
				f.Set("Caller-Caller-ID-Number", "sip:4917011111@evil")
			},
			want: Request{Destination: testX, DestinationRaw: testX},
		},
		{
			name:    "directory section",
			edit:    func(f url.Values) { f.Set("section", "directory") },
			wantErr: ErrNotDialplan,
		},
		{
			name:    "no section",
			edit:    func(f url.Values) { f.Del("section") },
			wantErr: ErrNotDialplan,
		},
		{
			name:    "destination not a number",
			edit:    func(f url.Values) { f.Set("Hunt-Destination-Number", "x${system(rm)}") },
			wantErr: ErrMalformed,
		},
		{
			name: "destination missing",
			edit: func(f url.Values) {
				f.Del("Hunt-Destination-Number")
				f.Del("Caller-Destination-Number")
			},
			wantErr: ErrMalformed,
		},
		{
			name:    "context with markup",
			edit:    func(f url.Values) { f.Set("Hunt-Context", `public"><x a="`) },
			wantErr: ErrMalformed,
		},
		{
			name:    "unique id not a uuid",
			edit:    func(f url.Values) { f.Set("Unique-ID", "../../etc/passwd") },
			wantErr: ErrMalformed,
		},
		{
			name: "unique id missing",
			edit: func(f url.Values) {
				f.Del("Unique-ID")
				f.Del("Caller-Unique-ID")
			},
			wantErr: ErrMalformed,
		},
		{
			name:    "core uuid hostile",
			edit:    func(f url.Values) { f.Set("Core-UUID", "<x/>") },
			wantErr: ErrMalformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := fixtureForm(t, testX, testA)
			tt.edit(form)
			got, err := ParseRequest(form, rules)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			tt.want.Context = "public"
			tt.want.UniqueID = "5c9a4dc0-67dc-4464-b4fe-ea2894d7dce0"
			tt.want.CoreUUID = "e480c9d8-62a5-4c98-aa31-4ad628da6215"
			tt.want.Hostname = "vm"
			if *got != tt.want {
				t.Errorf("got %+v, want %+v", *got, tt.want)
			}
		})
	}
}

func binding(mode callbridge.BindingMode, a, b callbridge.Number) *callbridge.Binding {
	return &callbridge.Binding{
		ID:            testBinding,
		AccountID:     testAccount,
		Mode:          mode,
		X:             testX,
		A:             a,
		B:             b,
		Status:        callbridge.StatusActive,
		ExpiresAt:     testNow.Add(time.Hour),
		CallerDisplay: callbridge.DisplayX,
	}
}

func line(bs ...*callbridge.Binding) *Line {
	return &Line{X: testX, AccountID: testAccount, Gateway: "carrier-1", Enabled: true, Bindings: bs}
}

func TestDecide(t *testing.T) {
	axb := binding(callbridge.ModeAXB, testA, testB)
	xb := binding(callbridge.ModeXB, "", testB)
	other := binding(callbridge.ModeAXB, testC, "4917044444")
	other.ID = "11111111-2222-4333-8444-555555555555"
	expiring := binding(callbridge.ModeAXB, testA, testB)
	expiring.ExpiresAt = testNow
	justAlive := binding(callbridge.ModeAXB, testA, testB)
	justAlive.ExpiresAt = testNow.Add(time.Nanosecond)
	unbound := binding(callbridge.ModeXB, "", testB)
	unbound.Status = callbridge.StatusUnbound
	showCaller := binding(callbridge.ModeAXB, testA, testB)
	showCaller.CallerDisplay = callbridge.DisplayCaller
	disabled := line(xb)
	disabled.Enabled = false

	type want struct {
		reason    Reason
		binding   *callbridge.Binding
		direction string
		target    callbridge.Number
		present   callbridge.Number
	}
	tests := []struct {
		name   string
		caller callbridge.Number
		line   *Line
		want   want
	}{
		{"axb a calls", testA, line(axb), want{"", axb, callbridge.DirectionAToB, testB, testX}},
		{"axb b calls", testB, line(axb), want{"", axb, callbridge.DirectionBToA, testA, testX}},
		{"axb stranger", testC, line(axb), want{reason: ReasonNotAParty}},
		{"axb withheld caller", "", line(axb), want{reason: ReasonNotAParty}},
		{"axb second pair on same x", testC, line(axb, other), want{"", other, callbridge.DirectionAToB, "4917044444", testX}},
		{"axb caller display caller", testA, line(showCaller), want{"", showCaller, callbridge.DirectionAToB, testB, testA}},
		{"xb anyone", testC, line(xb), want{"", xb, callbridge.DirectionAnyToB, testB, testX}},
		{"xb withheld caller", "", line(xb), want{"", xb, callbridge.DirectionAnyToB, testB, testX}},
		{"xb b calls own x", testB, line(xb), want{"", xb, callbridge.DirectionAnyToB, testB, testX}},
		{"unknown x", testA, nil, want{reason: ReasonUnknownNumber}},
		{"disabled x", testA, disabled, want{reason: ReasonNumberDisabled}},
		{"no binding", testA, line(), want{reason: ReasonNoBinding}},
		{"unbound binding", testA, line(unbound), want{reason: ReasonNoBinding}},
		{"expires exactly now", testA, line(expiring), want{reason: ReasonExpired}},
		{"expires one nanosecond later", testA, line(justAlive), want{"", justAlive, callbridge.DirectionAToB, testB, testX}},
		{"expired and rebound", testB, line(expiring, axb), want{"", axb, callbridge.DirectionBToA, testA, testX}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &Request{Destination: testX, DestinationRaw: testX, Caller: tt.caller, Context: "public", UniqueID: testBinding}
			d := Decide(req, tt.line, testNow)
			got := want{d.Reason, d.Binding, d.Direction, d.Target, d.Present}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if d.Routed() && d.Gateway != "carrier-1" {
				t.Errorf("got gateway %q, want carrier-1", d.Gateway)
			}
		})
	}
}

// doc mirrors the parts of the dialplan document tests look at.
type doc struct {
	XMLName xml.Name `xml:"document"`
	Type    string   `xml:"type,attr"`
	Section struct {
		Name    string `xml:"name,attr"`
		Context struct {
			Name      string `xml:"name,attr"`
			Extension struct {
				Name      string `xml:"name,attr"`
				Condition struct {
					Field      string `xml:"field,attr"`
					Expression string `xml:"expression,attr"`
					Actions    []struct {
						Application string `xml:"application,attr"`
						Data        string `xml:"data,attr"`
					} `xml:"action"`
				} `xml:"condition"`
			} `xml:"extension"`
		} `xml:"context"`
		Result *struct {
			Status string `xml:"status,attr"`
		} `xml:"result"`
	} `xml:"section"`
}

func TestRenderGolden(t *testing.T) {
	axb := binding(callbridge.ModeAXB, testA, testB)
	rec := binding(callbridge.ModeXB, "", testB)
	rec.Record = true
	rec.ExternalID = "order-42"
	opts := &Options{
		RingTimeout: 25 * time.Second,
		RecordDir:   "/srv/recordings",
		Refusals: map[Reason]Refusal{
			ReasonNotAParty: {Cause: "CALL_REJECTED", Announcement: "ivr/ivr-call_rejected.wav"},
		},
	}
	tests := []struct {
		name   string
		dest   string
		caller string
		line   *Line
		opts   *Options
		edit   func(Decision) Decision
	}{
		{"axb-a-to-b", testX, testA, line(axb), &Options{}, nil},
		{"xb-capped", testX, testC, line(binding(callbridge.ModeXB, "", testB)), &Options{}, func(d Decision) Decision {
			d.MaxDuration = 95*time.Second + 900*time.Millisecond
			return d
		}},
		{"xb-failover", testX, testC, line(binding(callbridge.ModeXB, "", testB)), &Options{}, func(d Decision) Decision {
			return d.Failover([]string{"cheap", "backup.1", "last-resort"}, carrierCauses)
		}},
		{"xb-failover-budget-capped", testX, testC, line(binding(callbridge.ModeXB, "", testB)), &Options{}, func(d Decision) Decision {
			d = d.Failover([]string{"cheap", "backup.1"}, carrierCauses)
			d.PostDial = 20*time.Second + 900*time.Millisecond
			d.MaxDuration = 95*time.Second + 900*time.Millisecond
			return d
		}},
		{"refusal-insufficient-funds", testX, testC, line(binding(callbridge.ModeXB, "", testB)), &Options{}, func(d Decision) Decision {
			return d.Refuse(ReasonInsufficientFunds)
		}},
		{"axb-b-to-a", "+" + testX, testB, line(axb), &Options{DialPlus: true}, nil},
		{"xb-record", testX, testC, line(rec), opts, nil},
		{"refusal-not-a-party", testX, testC, line(axb), opts, nil},
		{"refusal-unknown", testX, testA, nil, &Options{}, nil},
		{"refusal-expired", "(030) 100-100", testA, line(func() *callbridge.Binding {
			b := binding(callbridge.ModeAXB, testA, testB)
			b.ExpiresAt = testNow
			return b
		}()), &Options{}, nil},
	}
	rules := callbridge.NumberRules{CountryCode: "49", TrunkPrefix: "0"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := ParseRequest(fixtureForm(t, tt.dest, tt.caller), rules)
			if err != nil {
				t.Fatal(err)
			}
			dec := Decide(req, tt.line, testNow)
			if tt.edit != nil {
				dec = tt.edit(dec)
			}
			got, err := Render(nil, req, dec, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var d doc
			if err := xml.Unmarshal(got, &d); err != nil {
				t.Fatalf("output is not well-formed XML: %v\n%s", err, got)
			}
			golden := filepath.Join("testdata", tt.name+".xml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	var d doc
	if err := xml.Unmarshal(NotFound(), &d); err != nil {
		t.Fatal(err)
	}
	if d.Type != "freeswitch/xml" || d.Section.Name != "result" || d.Section.Result == nil || d.Section.Result.Status != "not found" {
		t.Errorf("got %+v, want a result section with status not found", d)
	}
}

func TestRenderRefusesUnsafeValues(t *testing.T) {
	req := &Request{Destination: testX, DestinationRaw: testX, Caller: testA, Context: "public", UniqueID: testBinding}
	tests := []struct {
		name string
		edit func(*Decision, *Options)
	}{
		{"gateway with dial-string syntax", func(d *Decision, _ *Options) { d.Gateway = "gw,x=${system(id)}" }},
		{"binding id not a uuid", func(d *Decision, _ *Options) {
			b := *d.Binding
			b.ID = "x\"/><action application=\"system\""
			d.Binding = &b
		}},
		{"target not a number", func(d *Decision, _ *Options) { d.Target = "123@evil" }},
		{"account id with quote", func(d *Decision, _ *Options) { d.AccountID = `a"b` }},
		{"announcement with variable", func(_ *Decision, o *Options) {
			o.Refusals = map[Reason]Refusal{ReasonNotAParty: {Cause: "CALL_REJECTED", Announcement: "${system(id)}"}}
		}},
		{"unknown cause", func(_ *Decision, o *Options) {
			o.Refusals = map[Reason]Refusal{ReasonNotAParty: {Cause: "NORMAL_CLEARING&x"}}
		}},
		{"record dir relative", func(_ *Decision, o *Options) { o.RecordDir = "rec" }},
		{"failover gateway with dial-string syntax", func(d *Decision, _ *Options) {
			*d = d.Failover([]string{"carrier", "gw|sofia/gateway/evil"}, carrierCauses)
		}},
		{"failover gateway with brace", func(d *Decision, _ *Options) { *d = d.Failover([]string{"carrier", "gw}x"}, carrierCauses) }},
		{"failover cause unknown", func(d *Decision, _ *Options) {
			*d = d.Failover([]string{"a", "b"}, []string{"NORMAL_TEMPORARY_FAILURE", "X'}evil"})
		}},
		{"failover cause lower case", func(d *Decision, _ *Options) { *d = d.Failover([]string{"a", "b"}, []string{"gateway_down"}) }},
		{"failover cause twice", func(d *Decision, _ *Options) {
			*d = d.Failover([]string{"a", "b"}, []string{"GATEWAY_DOWN", "GATEWAY_DOWN"})
		}},
		// FreeSWITCH finds a cause in the list as a substring: NONE is in
		// IE_NONEXIST.
		{"failover cause hiding another", func(d *Decision, _ *Options) { *d = d.Failover([]string{"a", "b"}, []string{"IE_NONEXIST"}) }},
		{"failover without causes", func(d *Decision, _ *Options) { *d = d.Failover([]string{"a", "b"}, nil) }},
		{"failover gateway twice", func(d *Decision, _ *Options) { *d = d.Failover([]string{"a", "b", "a"}, carrierCauses) }},
		{"failover too many gateways", func(d *Decision, _ *Options) {
			*d = d.Failover([]string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}, carrierCauses)
		}},
		{"failover causes without gateways", func(d *Decision, _ *Options) { d.FailoverCauses = carrierCauses }},
		{"failover first gateway not the gateway", func(d *Decision, _ *Options) {
			*d = d.Failover([]string{"a", "b"}, carrierCauses)
			d.Gateway = "c"
		}},
		{"ring timeout fractional", func(_ *Decision, o *Options) { o.RingTimeout = 1500 * time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(req, line(binding(callbridge.ModeAXB, testA, testB)), testNow)
			o := &Options{}
			tt.edit(&d, o)
			got, err := Render([]byte("keep"), req, d, o)
			if err == nil {
				t.Fatalf("got no error, want one; document:\n%s", got)
			}
			if string(got) != "keep" {
				t.Errorf("got dst %q, want it untouched", got)
			}
		})
	}
}

// checkDocument fails t unless out is a well-formed document that uses only
// the applications callbridge writes and whose data cannot trigger
// FreeSWITCH variable expansion.
func checkDocument(t *testing.T, out []byte) {
	t.Helper()
	var d doc
	if err := xml.Unmarshal(out, &d); err != nil {
		t.Fatalf("output is not well-formed XML: %v\n%s", err, out)
	}
	allowed := map[string]bool{"set": true, "export": true, "bridge": true, "record_session": true, "playback": true, "hangup": true, "sched_hangup": true}
	// The CDR hook is the only constant text with '$' and quotes.
	hook := strings.NewReplacer(
		",execute_on_originate='set api_reporting_hook="+callbridge.CDRHook(callbridge.CDRHookBridgeRef)+"'", "",
		"api_reporting_hook="+callbridge.CDRHook(callbridge.CDRHookSetRef), "",
		callbridge.VarDollar+"=$", "")
	// The failover causes are quoted: upper-case cause names and commas.
	failover := regexp.MustCompile(`,fail_on_single_reject='![A-Z_]+(,[A-Z_]+)*',`)
	for _, a := range d.Section.Context.Extension.Condition.Actions {
		if !allowed[a.Application] {
			t.Fatalf("unexpected application %q", a.Application)
		}
		if strings.ContainsAny(failover.ReplaceAllString(hook.Replace(a.Data), ","), "$\n\r\"'<>&") {
			t.Fatalf("unsafe data %q", a.Data)
		}
	}
}

func FuzzRender(f *testing.F) {
	body, err := os.ReadFile("testdata/xml-curl-dialplan-request.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(strings.TrimSpace(string(body)), testA)
	f.Add("section=dialplan&Hunt-Destination-Number=%2B4930100100&Hunt-Context=public&Unique-ID="+testBinding, "")
	f.Add("section=dialplan&Hunt-Destination-Number=4930100100&Hunt-Context=p%22%3E&Unique-ID=x", "<&>")
	f.Add("section=dialplan&section=directory&Hunt-Destination-Number=(030)+100-100", "\x00\xff")
	rules := callbridge.NumberRules{CountryCode: "49", TrunkPrefix: "0"}
	xb := binding(callbridge.ModeXB, "", testB)
	axb := binding(callbridge.ModeAXB, testA, testB)
	axb.ID = "11111111-2222-4333-8444-555555555555"
	axb.X = testX
	f.Fuzz(func(t *testing.T, body, caller string) {
		form, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		if caller != "" {
			form.Set("Hunt-Caller-ID-Number", caller)
		}
		req, err := ParseRequest(form, rules)
		if err != nil {
			return
		}
		for _, l := range []*Line{nil, line(xb), line(axb)} {
			d := Decide(req, l, testNow)
			opts := &Options{Refusals: map[Reason]Refusal{ReasonNotAParty: {Cause: "CALL_REJECTED", Announcement: "ivr/rejected.wav"}}}
			out, err := Render(nil, req, d, opts)
			if err != nil {
				t.Fatalf("Render of a parsed request: %v", err)
			}
			checkDocument(t, out)
			out, err = Render(nil, req, d.Failover([]string{"cheap", "dear"}, carrierCauses), opts)
			if err != nil {
				t.Fatalf("Render of a parsed request with failover: %v", err)
			}
			checkDocument(t, out)
		}
	})
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "a&b", `"'<>`, "\x00\x1f\t\r\n", "\xff\xfe", "\uFFFE", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := append([]byte(`<a v="`), appendEscaped(nil, s)...)
		out = append(out, `"/>`...)
		var v struct {
			V string `xml:"v,attr"`
		}
		if err := xml.Unmarshal(out, &v); err != nil {
			t.Fatalf("escaped %q is not well-formed: %v: %s", s, err, out)
		}
		if !strings.ContainsRune(s, '\uFFFD') && v.V != s && !strings.Contains(v.V, "\uFFFD") {
			t.Fatalf("got %q, want %q", v.V, s)
		}
	})
}
