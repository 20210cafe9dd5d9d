package routing

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/rating"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func loc(tb testing.TB, zone string) *time.Location {
	tb.Helper()
	l, err := time.LoadLocation(zone)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// newPlan compiles a test plan in Europe/Berlin, EUR; info's zero fields
// get those defaults.
func newPlan(tb testing.TB, info PlanInfo, routes ...Route) *Plan {
	tb.Helper()
	if info.Name == "" {
		info.Name = "test"
	}
	if info.TimeZone == "" {
		info.TimeZone = "Europe/Berlin"
	}
	if info.Currency == "" {
		info.Currency = "EUR"
	}
	p, err := NewPlan(info, loc(tb, info.TimeZone), routes)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// route returns an all-week route.
func route(prefix string, s Strategy, gateways ...string) Route {
	r := Route{Prefix: prefix, Strategy: s, Days: rating.AllDays, Until: rating.Midnight}
	for _, g := range gateways {
		r.Gateways = append(r.Gateways, Target{Gateway: g})
	}
	return r
}

// buyDeck compiles a gateway's buy deck in EUR with 60/60 increments.
func buyDeck(tb testing.TB, gateway, currency string, def *rating.Rate, rates ...rating.Rate) *rating.Deck {
	tb.Helper()
	d, err := rating.NewDeck(rating.DeckInfo{ID: "deck-" + gateway, Gateway: gateway, Name: gateway, Currency: currency,
		TimeZone: "Europe/Berlin", Precision: 6, Default: def, Version: 1}, loc(tb, "Europe/Berlin"), rates)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func buyRate(prefix string, perMinute int64) rating.Rate {
	return rating.Rate{Prefix: prefix, PerMinute: perMinute, FirstIncrement: 60, NextIncrement: 60, Days: rating.AllDays, Until: rating.Midnight}
}

func registry(decks ...*rating.Deck) *rating.Registry {
	var r rating.Registry
	r.Replace(decks, r.Mark())
	return &r
}

func TestNewPlanRefuses(t *testing.T) {
	good := func() (PlanInfo, Route) {
		return PlanInfo{Name: "p", TimeZone: "Europe/Berlin", Currency: "EUR"}, route("49", Priority, "a")
	}
	tests := []struct {
		name   string
		edit   func(*PlanInfo, *Route)
		routes int
		field  string
	}{
		{"no name", func(i *PlanInfo, _ *Route) { i.Name = "" }, 1, "name"},
		{"control character in name", func(i *PlanInfo, _ *Route) { i.Name = "a\x00b" }, 1, "name"},
		{"no zone", func(i *PlanInfo, _ *Route) { i.TimeZone = "" }, 1, "time_zone"},
		{"bad currency", func(i *PlanInfo, _ *Route) { i.Currency = "EURO" }, 1, "currency"},
		{"max attempts", func(i *PlanInfo, _ *Route) { i.MaxAttempts = 11 }, 1, "max_attempts"},
		{"post-dial budget", func(i *PlanInfo, _ *Route) { i.PostDialMS = 999 }, 1, "post_dial_ms"},
		{"account and default", func(i *PlanInfo, _ *Route) { i.AccountID, i.Default = "x", true }, 1, "default"},
		{"callee cause", func(i *PlanInfo, _ *Route) { i.FailoverCauses = []string{"USER_BUSY"} }, 1, "failover_causes"},
		{"callee SIP code", func(i *PlanInfo, _ *Route) { i.FailoverSIPCodes = []int{486} }, 1, "failover_sip_codes"},
		{"letters in prefix", func(_ *PlanInfo, r *Route) { r.Prefix = "4a" }, 1, "prefix"},
		{"leading zero", func(_ *PlanInfo, r *Route) { r.Prefix = "049" }, 1, "prefix"},
		{"prefix too long", func(_ *PlanInfo, r *Route) { r.Prefix = "1234567890123456" }, 1, "prefix"},
		{"strategy", func(_ *PlanInfo, r *Route) { r.Strategy = "cheapest" }, 1, "strategy"},
		{"no gateway", func(_ *PlanInfo, r *Route) { r.Gateways = nil }, 1, "gateways"},
		{"bad gateway", func(_ *PlanInfo, r *Route) { r.Gateways[0].Gateway = "a b" }, 1, "gateways"},
		{"injected gateway", func(_ *PlanInfo, r *Route) { r.Gateways[0].Gateway = "a}|bridge" }, 1, "gateways"},
		{"gateway twice", func(_ *PlanInfo, r *Route) { r.Gateways = append(r.Gateways, Target{Gateway: "a"}) }, 1, "gateways"},
		{"negative weight", func(_ *PlanInfo, r *Route) { r.Gateways[0].Weight = -1 }, 1, "gateways"},
		{"no day", func(_ *PlanInfo, r *Route) { r.Days = 0 }, 1, "days"},
		{"holidays", func(_ *PlanInfo, r *Route) { r.Days = rating.Weekdays | rating.Holidays }, 1, "days"},
		{"band backwards", func(_ *PlanInfo, r *Route) { r.From, r.Until = 18*3600, 8*3600 }, 1, "until"},
		{"same band twice", func(*PlanInfo, *Route) {}, 2, "prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, r := good()
			tt.edit(&info, &r)
			routes := []Route{r}
			if tt.routes == 2 {
				routes = append(routes, r)
			}
			_, err := NewPlan(info, loc(t, "Europe/Berlin"), routes)
			var e *callbridge.Error
			if !errors.As(err, &e) || e.Code != callbridge.EINVALID || e.Field != tt.field {
				t.Errorf("got %v, want EINVALID naming %s", err, tt.field)
			}
		})
	}
	info, r := good()
	if _, err := NewPlan(info, time.UTC, []Route{r}); callbridge.ErrorField(err) != "time_zone" {
		t.Errorf("a location that is not the plan's zone: got %v, want time_zone refused", err)
	}
}

func TestMatch(t *testing.T) {
	peak := route("49", Priority, "peak")
	peak.Days, peak.From, peak.Until = rating.Weekdays, 8*3600, 18*3600
	night := route("49", Priority, "night")
	night.Priority = 1
	p := newPlan(t, PlanInfo{},
		route("", Priority, "anywhere"),
		peak, night,
		route("4930", Priority, "berlin"),
		route("4915", Priority, "mobile"),
		route("1", Priority, "nanp"),
	)
	tests := []struct {
		name   string
		number callbridge.Number
		at     time.Time
		want   string
	}{
		// Monday 2 March 2026; Berlin is UTC+1.
		{"longest prefix", "4930123456", utc("2026-03-02T10:00:00Z"), "4930"},
		{"band in the plan's zone: 08:30 local is peak", "49891234", utc("2026-03-02T07:30:00Z"), "49/peak"},
		{"band in the plan's zone: 07:30 local is not", "49891234", utc("2026-03-02T06:30:00Z"), "49/night"},
		{"18:00 local ends the peak", "49891234", utc("2026-03-02T17:00:00Z"), "49/night"},
		{"weekend", "49891234", utc("2026-03-07T10:00:00Z"), "49/night"},
		{"summer time: 08:30 local is 06:30 UTC", "49891234", utc("2026-06-01T06:30:00Z"), "49/peak"},
		{"catch-all", "33123456", utc("2026-03-02T10:00:00Z"), ""},
		{"a number shorter than its prefix does not match it", "493", utc("2026-03-02T10:00:00Z"), "49/peak"},
		{"non-digits end the walk", "49x30", utc("2026-03-02T10:00:00Z"), "49/peak"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := p.match(tt.number, tt.at)
			got := "<none>"
			if r != nil {
				got = r.Prefix
				if r.Prefix == "49" {
					got += "/" + r.Gateways[0].Gateway
				}
			}
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
	none := newPlan(t, PlanInfo{}, route("49", Priority, "a"))
	if r := none.match("33", utc("2026-03-02T10:00:00Z")); r != nil {
		t.Errorf("no catch-all: got route %q, want none", r.Prefix)
	}
}

func TestPlanDefaultsAndRoutes(t *testing.T) {
	r := route("49", Weighted, "a", "b")
	r.Gateways[1].Weight = 3
	p := newPlan(t, PlanInfo{}, r, route("1", Priority, "b", "c"))
	info := p.Info()
	if info.MaxAttempts != DefaultMaxAttempts || info.PostDialMS != DefaultPostDialMS {
		t.Errorf("got max_attempts %d, post_dial_ms %d; want the defaults", info.MaxAttempts, info.PostDialMS)
	}
	if got := strings.Join(p.Gateways(), ","); got != "b,c,a" {
		t.Errorf("gateways: got %s, want b,c,a (routes in prefix order)", got)
	}
	routes := p.Routes()
	if len(routes) != 2 || routes[0].Prefix != "1" || routes[1].Gateways[0].Weight != 1 || routes[1].Gateways[1].Weight != 3 {
		t.Errorf("routes: got %+v", routes)
	}
	routes[1].Gateways[0].Gateway = "changed"
	if p.Routes()[1].Gateways[0].Gateway != "a" {
		t.Error("Routes returned the plan's own storage")
	}
}

func TestPlanUpdateApply(t *testing.T) {
	base := PlanInfo{ID: "p", AccountID: "a", Name: "n", TimeZone: "UTC", Currency: "EUR", MaxAttempts: 2, PostDialMS: 5000,
		FailoverCauses: []string{"GATEWAY_DOWN"}, FailoverSIPCodes: []int{503}, Version: 4}
	name, none, zero, noCauses := "m", "", 0, []string{}
	for _, tt := range []struct {
		name string
		u    PlanUpdate
		want func(*PlanInfo)
	}{
		{"nothing", PlanUpdate{}, func(*PlanInfo) {}},
		{"name only", PlanUpdate{Name: &name}, func(p *PlanInfo) { p.Name = "m" }},
		{"no account", PlanUpdate{AccountID: &none}, func(p *PlanInfo) { p.AccountID = "" }},
		{"defaults", PlanUpdate{MaxAttempts: &zero, FailoverCauses: &noCauses}, func(p *PlanInfo) { p.MaxAttempts, p.FailoverCauses = 0, []string{} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, want := base, base
			tt.u.Apply(&got)
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
			if empty := tt.u.Empty(); empty != (tt.name == "nothing") {
				t.Errorf("Empty: got %v", empty)
			}
		})
	}
}
