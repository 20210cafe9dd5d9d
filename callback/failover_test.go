package callback_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/callback"
	"callbridge/esl/esltest"
	"callbridge/internal/wait"
	"callbridge/rating"
	"callbridge/routing"
)

// carrierPlan is a default least_cost route plan over gateways, each
// priced by its own buy deck at perMinute[i] micro-units a minute.
func carrierPlan(t *testing.T, gateways []string, perMinute []int64) (*routing.Plans, *rating.Registry) {
	t.Helper()
	var decks rating.Registry
	var ds []*rating.Deck
	var targets []routing.Target
	for i, gw := range gateways {
		d, err := rating.NewDeck(rating.DeckInfo{ID: "buy-" + gw, Gateway: gw, Name: gw, Currency: "EUR", TimeZone: "UTC", Precision: 6}, time.UTC,
			[]rating.Rate{{Prefix: "49", PerMinute: perMinute[i], FirstIncrement: 60, NextIncrement: 60, Days: rating.AllDays, Until: rating.Midnight}})
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
		targets = append(targets, routing.Target{Gateway: gw})
	}
	decks.Replace(ds, decks.Mark())
	plan, err := routing.NewPlan(routing.PlanInfo{ID: "p", Name: "default", Default: true, TimeZone: "UTC", Currency: "EUR"}, time.UTC,
		[]routing.Route{{Prefix: "49", Strategy: routing.LeastCost, Days: rating.AllDays, Until: rating.Midnight, Gateways: targets}})
	if err != nil {
		t.Fatal(err)
	}
	var plans routing.Plans
	plans.Replace([]*routing.Plan{plan}, plans.Mark())
	return &plans, &decks
}

// attempts renders a callback's gateway attempts and failovers, A's
// then B's (the simulator's event times run ahead of the database's).
func attempts(cb *callbridge.Callback) string {
	var out []string
	events := slices.Clone(cb.Events)
	slices.SortStableFunc(events, func(x, y *callbridge.CallbackEvent) int { return strings.Compare(x.Leg, y.Leg) })
	for _, e := range events {
		switch e.Type {
		case callbridge.EventGatewayAttempt:
			out = append(out, fmt.Sprintf("%s:%s#%d %s %d %s", e.Leg, e.Gateway, e.GatewayAttempt, e.Cause, e.SIPStatus, e.Detail))
		case callbridge.EventFailover:
			if strings.HasPrefix(e.Detail, "no failover") {
				out = append(out, fmt.Sprintf("%s:%s", e.Leg, e.Detail))
			} else {
				out = append(out, fmt.Sprintf("%s:failover->%s#%d", e.Leg, e.Gateway, e.GatewayAttempt))
			}
		}
	}
	return strings.Join(out, "; ")
}

// TestCallbackFailover places callbacks through a route plan on a
// simulated node whose cheapest carrier answers 503 (or whose gateway is
// down): each leg fails over to the next carrier and connects; a busy
// callee does not fail over; with no carrier left the leg fails as it
// would without routing. Every attempt is in the history, and each
// gateway's claims are ended.
func TestCallbackFailover(t *testing.T) {
	t.Parallel()
	plans, decks := carrierPlan(t, []string{"cheap", "solid", "down"}, []int64{5_000, 9_000, 1_000})
	gateways := &routing.Gateways{}
	env := newCBEnv(t, cbOpts{
		gateways: []esltest.Gateway{{Name: "cheap", Refuse: true}, {Name: "solid"}, {Name: "down", Status: "DOWN"}},
		routes:   callback.PlanRouter(plans, routing.Sources{Prices: decks, Health: gateways}),
		tracker:  callback.LocalGateways{Gateways: gateways},
	})

	id := env.create(`{"a":"4916011111","b":"4914022222","prompt":"ringback"}`)
	cb := env.waitEnded(id)
	if cb.Status != callbridge.CallbackCompleted {
		t.Fatalf("status %s (%s), want completed", cb.Status, cb.Reason)
	}
	// least_cost: down (1 000), cheap (5 000), solid (9 000).
	want := "a:down#1 GATEWAY_DOWN 0 carrier failure; a:failover->cheap#2; " +
		"a:cheap#2 NORMAL_TEMPORARY_FAILURE 503 carrier failure; a:failover->solid#3; a:solid#3  0 answered; " +
		"b:down#1 GATEWAY_DOWN 0 carrier failure; b:failover->cheap#2; " +
		"b:cheap#2 NORMAL_TEMPORARY_FAILURE 503 carrier failure; b:failover->solid#3; b:solid#3  0 answered"
	if got := attempts(cb); got != want {
		t.Errorf("attempts:\n got %s\nwant %s", got, want)
	}
	for _, l := range cb.Legs {
		if l.Gateway != "solid" || l.AnsweredAt == nil {
			t.Errorf("leg %s: gateway %q answered %v, want solid, answered", l.Leg, l.Gateway, l.AnsweredAt)
		}
	}

	// A busy callee is not tried elsewhere.
	id = env.create(`{"a":"4916011112","b":"4917022486","prompt":"ringback"}`)
	cb = env.waitEnded(id)
	if cb.Status != callbridge.CallbackFailed || cb.Reason != callbridge.ReasonBBusy {
		t.Errorf("busy callee: %s/%s, want failed/b_busy", cb.Status, cb.Reason)
	}
	if got, want := attempts(cb), "a:down#1 GATEWAY_DOWN 0 carrier failure; a:failover->cheap#2; a:cheap#2 NORMAL_TEMPORARY_FAILURE 503 carrier failure; a:failover->solid#3; a:solid#3  0 answered; "+
		"b:down#1 GATEWAY_DOWN 0 carrier failure; b:failover->cheap#2; b:cheap#2 NORMAL_TEMPORARY_FAILURE 503 carrier failure; b:failover->solid#3; b:solid#3 USER_BUSY 486 stop"; got != want {
		t.Errorf("busy callee's attempts:\n got %s\nwant %s", got, want)
	}

	// Every claim was ended: no gateway keeps a call.
	wait.For(t, "the gateways' calls to end", func() bool {
		for _, gw := range []string{"cheap", "solid", "down"} {
			if h := gateways.Health(gw, env.clock.Now()); h.Active != 0 {
				return false
			}
		}
		return true
	})
}

// TestCallbackFailoverExhausted: when every carrier refuses, the leg
// fails as it would without a route plan (node_unavailable for a 503),
// with each attempt and the refusal to fail over again in the history.
func TestCallbackFailoverExhausted(t *testing.T) {
	t.Parallel()
	plans, decks := carrierPlan(t, []string{"cheap", "other"}, []int64{5_000, 9_000})
	gateways := &routing.Gateways{}
	env := newCBEnv(t, cbOpts{
		gateways: []esltest.Gateway{{Name: "cheap", Refuse: true}, {Name: "other", Refuse: true}},
		routes:   callback.PlanRouter(plans, routing.Sources{Prices: decks, Health: gateways}),
		tracker:  callback.LocalGateways{Gateways: gateways},
	})
	id := env.create(`{"a":"4916011113","b":"4916022222"}`)
	cb := env.waitEnded(id)
	if cb.Status != callbridge.CallbackFailed || cb.Reason != callbridge.ReasonNodeUnavailable {
		t.Errorf("%s/%s, want failed/node_unavailable", cb.Status, cb.Reason)
	}
	want := "a:cheap#1 NORMAL_TEMPORARY_FAILURE 503 carrier failure; a:failover->other#2; " +
		"a:other#2 NORMAL_TEMPORARY_FAILURE 503 carrier failure; a:no failover: no gateway left"
	if got := attempts(cb); got != want {
		t.Errorf("attempts:\n got %s\nwant %s", got, want)
	}
}

// TestCallbackRouteAtPlacement: B's route is resolved when B is placed,
// not when the callback was claimed. The cheapest carrier's gateway goes
// down (sofia) while A is called: B goes straight through the carrier
// that is up at B's time, as its first attempt, with no attempt through
// the gateway that was cheapest when A was placed.
func TestCallbackRouteAtPlacement(t *testing.T) {
	t.Parallel()
	plans, decks := carrierPlan(t, []string{"cheap", "solid"}, []int64{5_000, 9_000})
	gateways := &routing.Gateways{}
	env := newCBEnv(t, cbOpts{
		gateways: []esltest.Gateway{{Name: "cheap"}, {Name: "solid"}},
		routes:   callback.PlanRouter(plans, routing.Sources{Prices: decks, Health: gateways}),
		tracker:  callback.LocalGateways{Gateways: gateways},
		onStatus: func(s callbridge.CallbackStatus) {
			if s == callbridge.CallbackAAnswered {
				// Between A's answer and B's placement.
				gateways.SetSofia("cheap", routing.SofiaDown)
			}
		},
	})
	id := env.create(`{"a":"4916011111","b":"4914022222","prompt":"ringback"}`)
	cb := env.waitEnded(id)
	if cb.Status != callbridge.CallbackCompleted {
		t.Fatalf("status %s (%s), want completed", cb.Status, cb.Reason)
	}
	if got, want := attempts(cb), "a:cheap#1  0 answered; b:solid#1  0 answered"; got != want {
		t.Errorf("attempts:\n got %s\nwant %s", got, want)
	}
	if got := env.commandsWith("originate ", "callbridge_leg=b,", "sofia/gateway/cheap/"); got != 0 {
		t.Errorf("B originated %d times through cheap, want 0", got)
	}
	for _, l := range cb.Legs {
		if want := map[string]string{"a": "cheap", "b": "solid"}[l.Leg]; l.Gateway != want {
			t.Errorf("leg %s: gateway %q, want %q", l.Leg, l.Gateway, want)
		}
	}
}

// TestCallbackAdoptedFailover: controller 1 places A through the
// cheapest carrier and stops while A rings; controller 2 adopts the
// call, counts A's attempt against cheap's gateway from then on, and
// when cheap fails A (NORMAL_TEMPORARY_FAILURE), A fails over to the next
// carrier as attempt 2: the history shows both attempts.
func TestCallbackAdoptedFailover(t *testing.T) {
	t.Parallel()
	plans, decks := carrierPlan(t, []string{"cheap", "solid"}, []int64{5_000, 9_000})
	first, second := &routing.Gateways{}, &routing.Gateways{}
	opts := func(owner string, g *routing.Gateways) cbOpts {
		return cbOpts{owner: owner, speed: 1, gateways: []esltest.Gateway{{Name: "cheap"}, {Name: "solid"}},
			routes:  callback.PlanRouter(plans, routing.Sources{Prices: decks, Health: g}),
			tracker: callback.LocalGateways{Gateways: g}}
	}
	env := newCBEnv(t, opts("ctl-1", first))
	// A rings (up to 120 s) until the test fails it.
	id := env.create(`{"a":"4913011111","b":"4914022222","ring_timeout_a":120}`)
	wait.For(t, "A ringing through cheap", func() bool {
		a := env.leg(env.get(id), "a")
		return a != nil && a.RingingAt != nil
	})
	env.stopEngine()
	if _, err := env.db.Exec(`UPDATE callbacks SET lease_until = now() - interval '1 second' WHERE owner = 'ctl-1' AND lease_until IS NOT NULL`); err != nil {
		t.Fatal(err)
	}
	env.startEngine(opts("ctl-2", second))
	wait.For(t, "adoption", func() bool {
		return slices.ContainsFunc(env.get(id).Events, func(e *callbridge.CallbackEvent) bool { return e.Type == callbridge.EventReconciled })
	})
	if h := second.Health("cheap", env.clock.Now()); h.Active != 1 {
		t.Errorf("cheap's calls on controller 2 after the adoption: %d, want 1 (A's attempt)", h.Active)
	}

	a := env.leg(env.get(id), "a")
	if a.Gateway != "cheap" {
		t.Fatalf("A's gateway %q before the failure, want cheap", a.Gateway)
	}
	if err := env.fs.Hangup(a.UUID, "NORMAL_TEMPORARY_FAILURE"); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "A placed again through solid", func() bool {
		a := env.leg(env.get(id), "a")
		return a.Gateway == "solid" && a.RingingAt != nil
	})
	if got, want := attempts(env.get(id)), "a:cheap#1 NORMAL_TEMPORARY_FAILURE 503 carrier failure; a:failover->solid#2"; got != want {
		t.Errorf("attempts:\n got %s\nwant %s", got, want)
	}
	if h := second.Health("cheap", env.clock.Now()); h.Active != 0 {
		t.Errorf("cheap's calls after the failover: %d, want 0", h.Active)
	}
	if code, _, raw := env.do("DELETE", "/v1/callbacks/"+id, ""); code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", code, raw)
	}
	cb := env.waitEnded(id)
	if cb.Status != callbridge.CallbackFailed || cb.Reason != callbridge.ReasonCancelled {
		t.Errorf("%s/%s, want failed/cancelled", cb.Status, cb.Reason)
	}
	created := 0
	for _, e := range cb.Events {
		if e.Type == callbridge.EventLegCreated && e.Leg == "a" {
			created++
			if want := map[int]string{1: "cheap", 2: "solid"}[created]; e.Gateway != want || e.GatewayAttempt != created {
				t.Errorf("A's placement %d: %s#%d, want %s#%d", created, e.Gateway, e.GatewayAttempt, want, created)
			}
		}
	}
	if created != 2 {
		t.Errorf("A placed %d times, want 2", created)
	}
	wait.For(t, "the gateways' calls to end", func() bool {
		return second.Health("cheap", env.clock.Now()).Active == 0 && second.Health("solid", env.clock.Now()).Active == 0
	})
}
