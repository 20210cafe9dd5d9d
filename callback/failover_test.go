package callback_test

import (
	"fmt"
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
