package cdr

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"callbridge"
	"callbridge/dialplan"
	"callbridge/esl/esltest"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/privacy"
	"callbridge/rating"
	"callbridge/routing"
)

// bindingLine is one XB binding of the test account: X 4930990001 to
// 4930016020 (the simulator's script answers it).
type bindingLine struct{ acc string }

func (l bindingLine) Line(_ context.Context, x callbridge.Number) (*dialplan.Line, error) {
	b := &callbridge.Binding{ID: "0f1e2d3c-4b5a-4697-8877-665544332211", AccountID: l.acc, Mode: callbridge.ModeXB, X: x, B: "4930016020",
		Status: callbridge.StatusActive, ExpiresAt: time.Now().Add(time.Hour), CallerDisplay: callbridge.DisplayX}
	return &dialplan.Line{X: x, AccountID: l.acc, Gateway: "numbergw", Enabled: true, Bindings: []*callbridge.Binding{b}}, nil
}

// TestCDRBindingAttempts: a binding call routed by a least-cost plan whose
// cheaper carrier refuses with 503 connects through the other; the CDRs
// show both attempts, numbered and linked to the caller's leg, the failed
// one unanswered at zero cost, the connected one priced from its own
// gateway's buy deck; OnAttempt reports each attempt's outcome, which
// opens the refusing carrier's breaker.
func TestCDRBindingAttempts(t *testing.T) {
	// The dialplan server answers with privacy.Routing, configured below
	// before the first call.
	var cfg *privacy.Routing
	var acc string
	dp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Write(cfg.Answer(r.Context(), nil, body, bindingLine{acc}, time.Now, slog.New(slog.DiscardHandler)))
	}))
	defer dp.Close()
	e := newTestEnv(t, func(s *esltest.Server) {
		s.Gateways = []esltest.Gateway{{Name: "cheap", Refuse: true}, {Name: "solid"}}
		s.Script = &esltest.Script{Rules: []esltest.Rule{{Prefix: "4930016020", RingMS: 100, Outcome: esltest.OutcomeAnswer, TalkMS: 2000}}}
		s.DialplanURL = dp.URL
	})
	acc = e.acc
	sell := e.decks.AccountDeck(e.acc, time.Now())
	buy := func(gw string, perMinute int64) *rating.Deck {
		d, err := rating.NewDeck(rating.DeckInfo{ID: "buy-" + gw, Gateway: gw, Name: gw, Currency: "EUR", TimeZone: "UTC", Precision: 6, Version: 1},
			time.UTC, []rating.Rate{{Prefix: "49", PerMinute: perMinute, FirstIncrement: 1, NextIncrement: 1, Days: rating.AllDays, Until: rating.Midnight}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	e.decks.Replace([]*rating.Deck{sell, buy("cheap", 30_000), buy("solid", 90_000)}, e.decks.Mark())
	plan, err := routing.NewPlan(routing.PlanInfo{ID: "p", Name: "default", Default: true, TimeZone: "UTC", Currency: "EUR"}, time.UTC,
		[]routing.Route{{Prefix: "49", Strategy: routing.LeastCost, Days: rating.AllDays, Until: rating.Midnight,
			Gateways: []routing.Target{{Gateway: "solid"}, {Gateway: "cheap"}}}})
	if err != nil {
		t.Fatal(err)
	}
	plans := &routing.Plans{}
	plans.Replace([]*routing.Plan{plan}, plans.Mark())
	gateways := &routing.Gateways{Breaker: routing.BreakerConfig{Failures: 1, Cooldown: time.Hour}}
	cfg = &privacy.Routing{Carriers: &privacy.Carriers{Plans: plans, Prices: e.decks, Health: gateways}}

	var mu sync.Mutex
	var outcomes []string
	e.start(t, e.spool, func(c *Config) {
		c.OnAttempt = func(c *callbridge.CDR) {
			mu.Lock()
			outcomes = append(outcomes, c.Gateway+":"+c.HangupCause)
			mu.Unlock()
			gateways.Record(c.Gateway, c.EndAt, plan.Policy().Classify(c.HangupCause, c.SIPStatus) == routing.Failover)
		}
	})
	ctx := context.Background()
	a, err := e.sim.Inbound(ctx, "4930555000", "4930990001")
	if err != nil {
		t.Fatal(err)
	}
	wait.For(t, "3 CDRs", func() bool { return e.count(t) == 3 })
	store := postgres.NewCDRStore(e.db)
	list, _, err := store.CDRs(ctx, e.acc, callbridge.CDRFilter{BindingID: "0f1e2d3c-4b5a-4697-8877-665544332211"})
	if err != nil {
		t.Fatal(err)
	}
	byAttempt := map[int]*callbridge.CDR{}
	for _, c := range list {
		if c.Leg == callbridge.LegOutbound {
			byAttempt[c.Attempt] = c
		}
	}
	first, second := byAttempt[1], byAttempt[2]
	if len(byAttempt) != 2 || first == nil || second == nil {
		t.Fatalf("outbound CDRs by attempt: %v, want attempts 1 and 2", byAttempt)
	}
	if first.Gateway != "cheap" || first.HangupCause != "NORMAL_TEMPORARY_FAILURE" || first.Answered() || first.Buy != 0 || first.Sell != 0 ||
		!first.Flags.Has(callbridge.CDRUnanswered) || first.OtherUUID != a {
		t.Errorf("attempt 1: %+v; want cheap, NORMAL_TEMPORARY_FAILURE, unanswered, zero cost, linked to %s", first, a)
	}
	if second.Gateway != "solid" || !second.Answered() || second.OtherUUID != a || second.BuyDeckID != "buy-solid" ||
		second.Buy != 1500*((second.BillMS+999)/1000) || second.BillMS <= 0 {
		t.Errorf("attempt 2: gateway %s answered %v other %s deck %s buy %d bill %d; want solid, answered, linked to %s, priced from buy-solid at 1500 per second",
			second.Gateway, second.Answered(), second.OtherUUID, second.BuyDeckID, second.Buy, second.BillMS, a)
	}
	mu.Lock()
	got := outcomes
	mu.Unlock()
	if len(got) != 2 || got[0] != "cheap:NORMAL_TEMPORARY_FAILURE" || got[1] != "solid:NORMAL_CLEARING" {
		t.Errorf("OnAttempt saw %v, want cheap's refusal then solid's call", got)
	}
	if h := gateways.Health("cheap", time.Now()); h.Breaker != routing.BreakerOpen {
		t.Errorf("cheap's breaker is %s after its 503, want open (1 failure opens it here)", h.Breaker)
	}
	if h := gateways.Health("solid", time.Now()); h.Breaker != routing.BreakerClosed {
		t.Errorf("solid's breaker is %s, want closed", h.Breaker)
	}
}
