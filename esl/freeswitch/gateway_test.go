package freeswitch

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"callbridge/esl/internal/wire"
)

// sofiaFixture returns the body of a frame captured from FreeSWITCH
// 1.10.12 (esl/testdata/sofia/NAME, shared with esl's simulator tests),
// checking its Content-Length.
func sofiaFixture(tb testing.TB, name string) (headers, body string) {
	tb.Helper()
	raw, err := os.ReadFile("../testdata/sofia/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	headers, body, ok := strings.Cut(string(raw), "\n\n")
	if !ok {
		tb.Fatalf("%s: no blank line after the headers", name)
	}
	var n int
	for _, h := range strings.Split(headers, "\n") {
		if v, ok := strings.CutPrefix(h, "Content-Length: "); ok {
			if n, err = parseInt(v); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if n != len(body) {
		tb.Fatalf("%s: Content-Length %d, body %d bytes", name, n, len(body))
	}
	return headers, body
}

func parseInt(s string) (int, error) { return strconv.Atoi(s) }

// TestParseGatewayStatusFixtures reads the replies of a real FreeSWITCH
// 1.10.12 with three gateways of freeswitch-conf's template: carrier and
// backup answering OPTIONS, dead pointed at a port nothing listens on,
// DOWN after its first ping; then, once something answered there, UP.
func TestParseGatewayStatusFixtures(t *testing.T) {
	_, body := sofiaFixture(t, "xmlstatus-gateway.txt")
	gws, err := ParseGatewayStatus(body)
	if err != nil {
		t.Fatal(err)
	}
	// FreeSWITCH lists them in its hash's order, not the files'.
	wants := []struct{ name, proxy, status string }{{"dead", "sip:127.0.0.1:45099", "DOWN"}, {"carrier", "sip:127.0.0.1:45061", "UP"}, {"backup", "sip:127.0.0.1:45062", "UP"}}
	if len(gws) != len(wants) {
		t.Fatalf("got %d gateways, want %d: %+v", len(gws), len(wants), gws)
	}
	for i, w := range wants {
		g := gws[i]
		if g.Name != w.name || g.Proxy != w.proxy || g.Status != w.status || g.State != "NOREG" || g.Profile != "external" {
			t.Errorf("gateway %d = %+v, want %s %s %s NOREG external", i, g, w.name, w.proxy, w.status)
		}
		if g.Up() != (w.status == "UP") || (g.Uptime > 0) != g.Up() {
			t.Errorf("%s: Up() = %v, uptime %v with status %s (FreeSWITCH counts uptime only while UP)", g.Name, g.Up(), g.Uptime, g.Status)
		}
		if g.PingInterval != 30*time.Second || !g.NextPing.Equal(time.Unix(1796544745, 0)) || g.NextPing.Location() != time.UTC {
			t.Errorf("%s: ping every %v, next %v; want 30s, 1796544745 UTC", g.Name, g.PingInterval, g.NextPing)
		}
	}
	if gws[0].PingTime != 0 || gws[1].PingTime != 1240*time.Microsecond {
		t.Errorf("ping times %v %v, want 0 (none answered) and 1.24ms", gws[0].PingTime, gws[1].PingTime)
	}

	_, body = sofiaFixture(t, "xmlstatus-gateway-up.txt")
	if gws, err = ParseGatewayStatus(body); err != nil {
		t.Fatal(err)
	}
	// After two calls refused while dead was DOWN, one carrier call its
	// carrier refused with 408 and two calls through backup.
	if g := gws[0]; g.Name != "dead" || !g.Up() || g.PingTime != 1370*time.Microsecond || g.CallsOut != 0 || g.FailedCallsOut != 2 {
		t.Errorf("dead after an answered ping: %+v, want UP with a 1.37 ms ping, 0 calls out, 2 failed", g)
	}
	if g := gws[1]; g.Name != "carrier" || g.CallsOut != 1 || g.FailedCallsOut != 1 {
		t.Errorf("carrier: %+v, want 1 call out, 1 failed", g)
	}
	if g := gws[2]; g.Name != "backup" || g.CallsOut != 2 || g.FailedCallsOut != 0 {
		t.Errorf("backup: %+v, want 2 calls out, none failed", g)
	}

	_, body = sofiaFixture(t, "xmlstatus-gateway-carrier.txt")
	if gws, err = ParseGatewayStatus(body); err != nil {
		t.Fatal(err)
	}
	if len(gws) != 1 || gws[0].Name != "carrier" || !gws[0].Up() || gws[0].PingTime != 1240*time.Microsecond {
		t.Errorf("one gateway: %+v", gws)
	}

	_, body = sofiaFixture(t, "xmlstatus-gateway-unknown.txt")
	if _, err := ParseGatewayStatus(body); !errors.Is(err, ErrUnknownGateway) {
		t.Errorf("unknown gateway: got %v, want ErrUnknownGateway", err)
	}
}

func TestParseGatewayStatusRefuses(t *testing.T) {
	for _, body := range []string{
		"",
		"-ERR no reply\n",
		"<gateways><gateway><name>x</name></gateway></gateways>",
		"<gateways><gateway><name>x</name><state>NOREG</state><status>UP</status><calls-out>-1</calls-out></gateway></gateways>",
		"<gateways><gateway><name>x</name><state>NOREG</state><status>UP</status><pingtime>fast</pingtime></gateway></gateways>",
		"<profiles/>",
		"text <gateways/>",
		"<gateways><gateway>",
	} {
		if gws, err := ParseGatewayStatus(body); err == nil {
			t.Errorf("ParseGatewayStatus(%q) = %+v, want an error", body, gws)
		}
	}
	if gws, err := ParseGatewayStatus("<?xml version=\"1.0\"?>\n<gateways>\n</gateways>\n"); err != nil || len(gws) != 0 {
		t.Errorf("no gateways: %v %v", gws, err)
	}
}

func TestSofiaXMLStatusGatewayCommand(t *testing.T) {
	if got := SofiaXMLStatusGateways().String(); got != "sofia xmlstatus gateway" {
		t.Errorf("got %q", got)
	}
	cmd, err := SofiaXMLStatusGateway("backup.1")
	if err != nil || cmd.String() != "sofia xmlstatus gateway backup.1" {
		t.Errorf("got %q, %v", cmd.String(), err)
	}
	for _, bad := range []string{"", "a b", "a\nb", "x;y", "-x", "gw|x"} {
		if _, err := SofiaXMLStatusGateway(bad); err == nil {
			t.Errorf("gateway name %q accepted", bad)
		}
	}
}

// TestParseGatewayStateFixtures reads the sofia::gateway_state events a
// real FreeSWITCH 1.10.12 sent when gateway dead's ping failed and, later,
// was answered.
func TestParseGatewayStateFixtures(t *testing.T) {
	tests := []struct {
		file string
		want GatewayState
	}{
		{"gateway-state-down.txt", GatewayState{Gateway: "dead", State: "NOREG", PingStatus: "DOWN", SIPStatus: 503, Phrase: "Service Unavailable"}},
		{"gateway-state-up.txt", GatewayState{Gateway: "dead", State: "NOREG", PingStatus: "UP", SIPStatus: 200, Phrase: "OK"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, body := sofiaFixture(t, tt.file)
			var p wire.Parser
			h, text, err := p.Plain([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			e := ReceivedEvent("fs1", h, text, time.Now())
			got, ok := ParseGatewayState(e)
			if !ok || got != tt.want {
				t.Errorf("got %+v %v, want %+v", got, ok, tt.want)
			}
			e.Name = ChannelCreate
			if _, ok := ParseGatewayState(e); ok {
				t.Error("a CHANNEL_CREATE read as a gateway state")
			}
		})
	}
}

// TestParseOriginateCauses reads originate_causes as FreeSWITCH 1.10.12 set
// it on the caller's leg: after a 503 from the first gateway and a bridge
// through the second, and after a bridge whose first gateway was DOWN
// (no leg, not listed).
func TestParseOriginateCauses(t *testing.T) {
	tests := []struct {
		in   string
		want []OriginateAttempt
	}{
		{"ARRAY::93ce4420-ff1a-4c14-b9fc-b306eac0636b;NORMAL_TEMPORARY_FAILURE|:1aa9de38-c2ff-42af-8697-8e3ea4c662de;NONE", []OriginateAttempt{
			{"93ce4420-ff1a-4c14-b9fc-b306eac0636b", "NORMAL_TEMPORARY_FAILURE"}, {"1aa9de38-c2ff-42af-8697-8e3ea4c662de", "NONE"}}},
		{"d176ab60-e8e8-4d4c-a385-5cff20a52d26;NONE", []OriginateAttempt{{"d176ab60-e8e8-4d4c-a385-5cff20a52d26", "NONE"}}},
		{"", nil},
		{"ARRAY::x;NONE|:d176ab60-e8e8-4d4c-a385-5cff20a52d26;bad cause|:d176ab60-e8e8-4d4c-a385-5cff20a52d26", nil},
	}
	for _, tt := range tests {
		got := ParseOriginateCauses(tt.in)
		if len(got) != len(tt.want) {
			t.Errorf("ParseOriginateCauses(%q) = %v, want %v", tt.in, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("ParseOriginateCauses(%q)[%d] = %v, want %v", tt.in, i, got[i], tt.want[i])
			}
		}
	}
}

func FuzzParseGatewayStatus(f *testing.F) {
	for _, name := range []string{"xmlstatus-gateway.txt", "xmlstatus-gateway-carrier.txt", "xmlstatus-gateway-unknown.txt"} {
		_, body := sofiaFixture(f, name)
		f.Add(body)
	}
	f.Add("<gateways><gateway><name>x</name><state>S</state><status>UP</status><pingtime>1e308</pingtime></gateway></gateways>")
	f.Fuzz(func(t *testing.T, body string) {
		gws, err := ParseGatewayStatus(body)
		if err != nil {
			return
		}
		for _, g := range gws {
			if g.Name == "" || g.Status == "" || g.State == "" || g.PingTime < 0 || g.CallsOut < 0 {
				t.Fatalf("accepted %+v", g)
			}
		}
	})
}

func FuzzParseOriginateCauses(f *testing.F) {
	f.Add("ARRAY::93ce4420-ff1a-4c14-b9fc-b306eac0636b;NORMAL_TEMPORARY_FAILURE|:1aa9de38-c2ff-42af-8697-8e3ea4c662de;NONE")
	f.Fuzz(func(t *testing.T, v string) {
		for _, a := range ParseOriginateCauses(v) {
			if checkUUID("uuid", a.UUID) != nil || checkCause("cause", a.Cause) != nil {
				t.Fatalf("accepted %+v", a)
			}
		}
	})
}
