package fswitch

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"callbridge/esl/esltest/internal/call"
)

// Gateway is a sofia gateway of the simulated node: "sofia xmlstatus
// gateway" reports it as FreeSWITCH 1.10.12 does (the replies captured in
// ../testdata/sofia/), an originate through a DOWN gateway fails with
// GATEWAY_DOWN before any channel exists, and SetGatewayStatus changes its
// status as a ping would, firing sofia::gateway_state.
type Gateway struct {
	// Name is the gateway's name (sofia/gateway/NAME/...).
	Name string
	// Proxy is its proxy, host:port (default NAME.invalid).
	Proxy string
	// Status is "UP" (the default) or "DOWN".
	Status string
	// Refuse makes every leg through it fail as a carrier answering 503
	// does (OutcomeFail: NORMAL_TEMPORARY_FAILURE), whatever the number:
	// a carrier that cannot carry calls while its gateway stays UP.
	Refuse bool
}

// gateway is a Gateway's live state.
type gateway struct {
	Gateway
	since    time.Time // last status change
	pings    int       // answered pings counted (pingcount)
	callsOut int       // calls-out
	failed   int       // failed-calls-out
}

// initGateways builds the gateways' state from Config.Gateways.
func (s *Switch) initGateways() {
	s.gws = map[string]*gateway{}
	for _, g := range s.Gateways {
		if g.Proxy == "" {
			g.Proxy = g.Name + ".invalid"
		}
		if g.Status == "" {
			g.Status = "UP"
		}
		gw := &gateway{Gateway: g, since: s.clk.Now()}
		s.gws[g.Name] = gw
		s.gwOrder = append(s.gwOrder, g.Name)
	}
}

// SetGatewayStatus sets gateway name "UP" or "DOWN" as the answer to an
// OPTIONS ping would (200 OK, or 503 Service Unavailable when nothing
// answered), and fires sofia::gateway_state when the status changed.
func (s *Switch) SetGatewayStatus(name, status string) error {
	if status != "UP" && status != "DOWN" {
		return fmt.Errorf("esltest: gateway status %q: want UP or DOWN", status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.gws[name]
	if g == nil {
		return fmt.Errorf("esltest: no gateway %q", name)
	}
	code, phrase := "200", "OK"
	if status == "UP" {
		g.pings = 1
	} else {
		code, phrase = "503", "Service Unavailable"
		g.pings = 0
	}
	if g.Status == status {
		return nil
	}
	g.Status = status
	g.since = s.clk.Now()
	e := s.newEventLocked("CUSTOM", "sofia_reg.c", "sofia_reg_fire_custom_gateway_state_event", 156)
	e.Headers = append([]call.Header{{Name: "Event-Subclass", Value: "sofia::gateway_state"}}, e.Headers...)
	e.Add("Gateway", g.Name)
	e.Add("State", "NOREG")
	e.Add("Ping-Status", status)
	e.Add("Phrase", phrase)
	e.Add("Status", code)
	s.Emit(e)
	return nil
}

// gatewayDownLocked reports whether name is a configured gateway that is
// DOWN (a failed call out), counting a call out on it otherwise.
func (s *Switch) gatewayDownLocked(name string) bool {
	g := s.gws[name]
	if g == nil {
		return false
	}
	if g.Status == "DOWN" {
		g.failed++
		return true
	}
	g.callsOut++
	return false
}

// sofiaAPI answers "sofia xmlstatus gateway [NAME]"; any other sofia
// command is not simulated.
func (s *Switch) sofiaAPI(arg string) string {
	f := strings.Fields(arg)
	if len(f) < 2 || f[0] != "xmlstatus" || f[1] != "gateway" || len(f) > 3 {
		return "-ERR sofia " + arg + " is not simulated\n"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clk.Now()
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="ISO-8859-1"?>` + "\n")
	if len(f) == 3 {
		g := s.gws[f[2]]
		if g == nil {
			return "Invalid Gateway!\n"
		}
		g.write(&b, now)
		return b.String()
	}
	b.WriteString("<gateways>\n")
	for _, name := range s.gwOrder {
		s.gws[name].write(&b, now)
	}
	b.WriteString("</gateways>\n")
	return b.String()
}

// write renders g as FreeSWITCH 1.10.12's xmlstatus does, for an
// IP-authenticated gateway of freeswitch-conf's template (realm
// NAME.test, user callbridge, OPTIONS every 30 s) on the external profile.
func (g *gateway) write(b *strings.Builder, now time.Time) {
	realm := g.Name + ".test"
	pingTime := "0.00"
	if g.pings > 0 {
		pingTime = "1.00"
	}
	next := now.Truncate(time.Second).Add(30 * time.Second).Unix()
	el := func(name, value string) {
		b.WriteString("    <" + name + ">" + value + "</" + name + ">\n")
	}
	b.WriteString("  <gateway>\n")
	el("name", g.Name)
	el("profile", "external")
	el("scheme", "Digest")
	el("realm", realm)
	el("username", "callbridge")
	el("password", "yes")
	el("from", "&lt;sip:callbridge@"+realm+"&gt;")
	el("contact", "&lt;sip:gw+"+g.Name+"@127.0.0.1:5080;transport=udp;gw="+g.Name+"&gt;")
	el("exten", "callbridge")
	el("to", "sip:callbridge@"+g.Proxy)
	el("proxy", "sip:"+g.Proxy)
	el("context", "public")
	el("expires", "600")
	el("freq", "600")
	el("ping", strconv.FormatInt(next, 10))
	el("pingfreq", "30")
	el("pingmin", "1")
	el("pingcount", strconv.Itoa(g.pings))
	el("pingmax", "1")
	el("pingtime", pingTime)
	el("pinging", "0")
	el("state", "NOREG")
	el("status", g.Status)
	uptime := int64(0) // FreeSWITCH counts it only while UP
	if g.Status == "UP" {
		uptime = now.Sub(g.since).Microseconds()
	}
	el("uptime-usec", strconv.FormatInt(uptime, 10))
	el("calls-in", "0")
	el("calls-out", strconv.Itoa(g.callsOut))
	el("failed-calls-in", "0")
	el("failed-calls-out", strconv.Itoa(g.failed))
	b.WriteString("  </gateway>\n")
}

// gatewayRefusesLocked reports whether name is a configured gateway that
// refuses every leg (Gateway.Refuse).
func (s *Switch) gatewayRefusesLocked(name string) bool {
	g := s.gws[name]
	if g == nil || !g.Refuse {
		return false
	}
	g.failed++
	return true
}
