package esl_test

import (
	"context"
	"encoding/xml"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"callbridge/esl"
	"callbridge/esl/esltest"
	"callbridge/esl/freeswitch"
)

// elementNames lists the element names of an xmlstatus reply in order,
// the first gateway's only: the shape the simulator must reproduce.
func elementNames(t *testing.T, body string) []string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(strings.SplitN(body, "?>", 2)[1]))
	var names []string
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		if se, ok := tok.(xml.StartElement); ok {
			names = append(names, se.Name.Local)
			if se.Name.Local == "failed-calls-out" {
				break
			}
		}
	}
	return names
}

func fixtureBody(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile("testdata/sofia/" + name)
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(string(raw), "\n\n")
	return body
}

// blank replaces the values that differ between two runs (names, ports,
// times, counters) so that the simulator's reply can be compared with
// FreeSWITCH's byte for byte.
var blank = regexp.MustCompile(`>[^<]*<`)

// TestSimulatorGatewayStatusShape holds the simulator's "sofia xmlstatus
// gateway" to the replies captured from FreeSWITCH 1.10.12: the same
// declaration, elements, order and indentation, for the list and for one
// gateway, and the same "Invalid Gateway!" for an unknown one.
func TestSimulatorGatewayStatusShape(t *testing.T) {
	srv := esltest.NewUnstartedServer()
	srv.Gateways = []esltest.Gateway{{Name: "dead", Proxy: "127.0.0.1:45099", Status: "DOWN"}, {Name: "carrier", Proxy: "127.0.0.1:45061"}, {Name: "backup", Proxy: "127.0.0.1:45062"}}
	srv.Start()
	defer srv.Close()
	c, _ := runClient(t, srv)
	ctx := tctx(t)

	real := fixtureBody(t, "xmlstatus-gateway.txt")
	sim, err := c.API(ctx, freeswitch.SofiaXMLStatusGateways())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := blank.ReplaceAllString(sim+"\n", "><"), blank.ReplaceAllString(real, "><"); got != want {
		t.Errorf("simulator:\n%s\nFreeSWITCH:\n%s", sim, real)
	}
	if got, want := elementNames(t, sim), elementNames(t, real); !slices.Equal(got, want) {
		t.Errorf("elements %v, want %v", got, want)
	}
	simGws, err := freeswitch.ParseGatewayStatus(sim)
	if err != nil {
		t.Fatal(err)
	}
	realGws, err := freeswitch.ParseGatewayStatus(real)
	if err != nil {
		t.Fatal(err)
	}
	for i := range realGws {
		s, r := simGws[i], realGws[i]
		if s.Name != r.Name || s.Proxy != r.Proxy || s.Status != r.Status || s.State != r.State || s.Profile != r.Profile || s.PingInterval != r.PingInterval || (s.Uptime > 0) != (r.Uptime > 0) {
			t.Errorf("gateway %d: simulator %+v, FreeSWITCH %+v", i, s, r)
		}
	}

	one, err := freeswitch.SofiaXMLStatusGateway("carrier")
	if err != nil {
		t.Fatal(err)
	}
	sim, err = c.API(ctx, one)
	if err != nil {
		t.Fatal(err)
	}
	real = fixtureBody(t, "xmlstatus-gateway-carrier.txt")
	if got, want := blank.ReplaceAllString(sim+"\n", "><"), blank.ReplaceAllString(real, "><"); got != want {
		t.Errorf("one gateway: simulator:\n%s\nFreeSWITCH:\n%s", sim, real)
	}
	if _, err := c.GatewayStatus(ctx, "nosuch"); !errors.Is(err, freeswitch.ErrUnknownGateway) {
		t.Errorf("unknown gateway: %v, want ErrUnknownGateway", err)
	}
	if got := strings.TrimSpace(fixtureBody(t, "xmlstatus-gateway-unknown.txt")); got != "Invalid Gateway!" {
		t.Errorf("fixture says %q", got)
	}
}

// TestSimulatorGatewayDown: a gateway that goes DOWN fires
// sofia::gateway_state to a client subscribed to that subclass, with the
// headers FreeSWITCH 1.10.12 sends, is reported DOWN, and refuses legs
// with GATEWAY_DOWN; a gateway that refuses fails them with
// NORMAL_TEMPORARY_FAILURE, as a carrier answering 503 does.
func TestSimulatorGatewayDown(t *testing.T) {
	srv := esltest.NewUnstartedServer()
	srv.Gateways = []esltest.Gateway{{Name: "carrier"}, {Name: "backup"}, {Name: "refusing", Refuse: true}}
	srv.Start()
	defer srv.Close()
	c := esl.NewClient(esl.Config{Name: "fs1", Addr: srv.Addr(), Password: "ClueCon", Subclasses: []string{freeswitch.GatewayStateSubclass}})
	sub := c.Subscribe(0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	next(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.SocketConnected })

	if err := srv.SetGatewayStatus("carrier", "DOWN"); err != nil {
		t.Fatal(err)
	}
	e := next(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.Custom })
	gs, ok := freeswitch.ParseGatewayState(e)
	want := freeswitch.GatewayState{Gateway: "carrier", State: "NOREG", PingStatus: "DOWN", SIPStatus: 503, Phrase: "Service Unavailable"}
	if !ok || gs != want {
		t.Errorf("event %v: got %+v, want %+v", e.Headers(), gs, want)
	}
	var names []string
	for k := range e.Headers() {
		names = append(names, k)
	}
	for _, h := range []string{"Event-Subclass", "Event-Name", "Core-UUID", "Event-Sequence", "Gateway", "State", "Ping-Status", "Phrase", "Status"} {
		if !slices.Contains(names, h) {
			t.Errorf("the event lacks %s (FreeSWITCH sends it)", h)
		}
	}
	gws, err := c.GatewayStatuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(gws) != 3 || gws[0].Name != "carrier" || gws[0].Up() || gws[0].Uptime != 0 || !gws[1].Up() {
		t.Errorf("after the DOWN: %+v", gws)
	}
	for _, tt := range []struct{ gw, cause string }{{"carrier", "GATEWAY_DOWN"}, {"refusing", "NORMAL_TEMPORARY_FAILURE"}} {
		job, err := c.Originate(ctx, freeswitch.Originate{Endpoint: freeswitch.Gateway(tt.gw, "4930123456")})
		if err != nil {
			t.Fatal(err)
		}
		_, err = job.Wait(ctx)
		var re *esl.ReplyError
		if !errors.As(err, &re) || re.Cause() != tt.cause {
			t.Errorf("originate through %s: %v, want -ERR %s", tt.gw, err, tt.cause)
		}
	}
	g, err := c.GatewayStatus(ctx, "carrier")
	if err != nil {
		t.Fatal(err)
	}
	if g.CallsOut != 0 || g.FailedCallsOut != 1 {
		t.Errorf("carrier after a refused leg: %d out, %d failed; FreeSWITCH counts 0 and 1", g.CallsOut, g.FailedCallsOut)
	}
	if err := srv.SetGatewayStatus("carrier", "UP"); err != nil {
		t.Fatal(err)
	}
	e = next(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.Custom })
	if gs, _ := freeswitch.ParseGatewayState(e); gs.PingStatus != "UP" || gs.SIPStatus != 200 || gs.Phrase != "OK" {
		t.Errorf("back UP: %+v", gs)
	}
}
