package privacy_test

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/dialplan"
	"callbridge/privacy"
	"callbridge/rating"
	"callbridge/routing"
)

const (
	testAccount = "8b1c3a5e-2f7d-4c11-9d0e-5a6b7c8d9e0f"
	testBinding = "0f1e2d3c-4b5a-4697-8877-665544332211"
	testCallID  = "6a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
)

// staticLine answers every lookup with one XB line: X 4930100100 bound to
// B 4917022222, through the number's gateway "numbergw".
type staticLine struct{}

func (staticLine) Line(_ context.Context, x callbridge.Number) (*dialplan.Line, error) {
	b := &callbridge.Binding{ID: testBinding, AccountID: testAccount, Mode: callbridge.ModeXB, X: "4930100100", B: "4917022222",
		Status: callbridge.StatusActive, ExpiresAt: time.Now().Add(time.Hour), CallerDisplay: callbridge.DisplayX}
	return &dialplan.Line{X: "4930100100", AccountID: testAccount, Gateway: "numbergw", Enabled: true, Bindings: []*callbridge.Binding{b}}, nil
}

func form() []byte {
	return []byte(url.Values{
		"section": {"dialplan"}, "Hunt-Destination-Number": {"4930100100"}, "Hunt-Context": {"public"},
		"Unique-ID": {testCallID}, "Caller-Caller-ID-Number": {"4930555000"},
	}.Encode())
}

// carriersFor builds route plans and buy decks: "cheap" 5000 µ/min and
// "solid" 9000 µ/min to 49, least_cost, plus policy terms.
func carriersFor(t testing.TB, info routing.PlanInfo, gateways []routing.Target) (*privacy.Carriers, *routing.Gateways) {
	t.Helper()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	deck := func(gw string, perMinute int64) *rating.Deck {
		d, err := rating.NewDeck(rating.DeckInfo{ID: "buy-" + gw, Gateway: gw, Name: gw, Currency: "EUR", TimeZone: "Europe/Berlin", Precision: 6}, berlin,
			[]rating.Rate{{Prefix: "49", PerMinute: perMinute, FirstIncrement: 60, NextIncrement: 60, Days: rating.AllDays, Until: rating.Midnight}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	decks := &rating.Registry{}
	decks.Replace([]*rating.Deck{deck("cheap", 5_000), deck("solid", 9_000), deck("spare", 12_000)}, decks.Mark())
	info.ID, info.Name, info.TimeZone, info.Currency = "plan-1", "test", "Europe/Berlin", "EUR"
	plan, err := routing.NewPlan(info, berlin, []routing.Route{{Prefix: "49", Strategy: routing.LeastCost, Days: rating.AllDays, Until: rating.Midnight, Gateways: gateways}})
	if err != nil {
		t.Fatal(err)
	}
	plans := &routing.Plans{}
	plans.Replace([]*routing.Plan{plan}, plans.Mark())
	gws := &routing.Gateways{Breaker: routing.BreakerConfig{Failures: 1, Cooldown: time.Hour}}
	return &privacy.Carriers{Plans: plans, Prices: decks, Health: gws}, gws
}

func answer(t *testing.T, cfg *privacy.Routing) string {
	t.Helper()
	return string(cfg.Answer(context.Background(), nil, form(), staticLine{}, time.Now, slog.New(slog.DiscardHandler)))
}

// TestCarriersRoute: binding calls follow the account's plan: the cheaper
// carrier first, failover on the plan's carrier causes only, the budget
// as each attempt's timeout and over all of them, every attempt tagged with its gateway and
// number; the plan's MaxAttempts cuts the list; a gateway whose breaker
// is open is skipped; no carrier left refuses the call; no plan keeps
// the number's gateway exactly as before.
func TestCarriersRoute(t *testing.T) {
	two := []routing.Target{{Gateway: "solid"}, {Gateway: "cheap"}}
	t.Run("least cost with failover", func(t *testing.T) {
		c, _ := carriersFor(t, routing.PlanInfo{Default: true, PostDialMS: 20_000}, two)
		doc := answer(t, &privacy.Routing{Carriers: c, Options: dialplan.Options{RingTimeout: 45 * time.Second}})
		for _, want := range []string{
			"[callbridge_gateway=cheap,callbridge_attempt=1]sofia/gateway/cheap/4917022222|[callbridge_gateway=solid,callbridge_attempt=2]sofia/gateway/solid/4917022222\"/>",
			"fail_on_single_reject=&apos;!NORMAL_TEMPORARY_FAILURE,GATEWAY_DOWN,NO_ROUTE_DESTINATION,RECOVERY_ON_TIMER_EXPIRE,DESTINATION_OUT_OF_ORDER&apos;",
			",leg_timeout=20,",
			// The budget over both attempts, NO_ANSWER when spent.
			`<action application="sched_hangup" data="+20 NO_ANSWER"/>`,
		} {
			if !strings.Contains(doc, want) {
				t.Errorf("document lacks %s:\n%s", want, doc)
			}
		}
		_, bridge, _ := strings.Cut(doc, `application="bridge"`)
		for _, never := range []string{"USER_BUSY", "NO_ANSWER", "CALL_REJECTED", "UNALLOCATED_NUMBER", "numbergw"} {
			if strings.Contains(bridge, never) {
				t.Errorf("bridge holds %s:\n%s", never, doc)
			}
		}
	})
	t.Run("plan causes", func(t *testing.T) {
		c, _ := carriersFor(t, routing.PlanInfo{Default: true, FailoverCauses: []string{"GATEWAY_DOWN"}}, two)
		doc := answer(t, &privacy.Routing{Carriers: c})
		if !strings.Contains(doc, "fail_on_single_reject=&apos;!GATEWAY_DOWN&apos;") || !strings.Contains(doc, ",leg_timeout=30,") {
			t.Errorf("want failover on GATEWAY_DOWN only and the ring timeout:\n%s", doc)
		}
	})
	t.Run("causes FreeSWITCH does not know", func(t *testing.T) {
		c, _ := carriersFor(t, routing.PlanInfo{Default: true, FailoverCauses: []string{"NOT_A_CAUSE", "GATEWAY_DOWN"}}, two)
		doc := answer(t, &privacy.Routing{Carriers: c})
		if !strings.Contains(doc, "fail_on_single_reject=&apos;!GATEWAY_DOWN&apos;") || strings.Contains(doc, "NOT_A_CAUSE") {
			t.Errorf("want the unknown cause left out:\n%s", doc)
		}
		c, _ = carriersFor(t, routing.PlanInfo{Default: true, FailoverCauses: []string{"NOT_A_CAUSE"}}, two)
		doc = answer(t, &privacy.Routing{Carriers: c})
		if !strings.Contains(doc, "}[callbridge_gateway=cheap,callbridge_attempt=1]sofia/gateway/cheap/4917022222\"/>") || strings.Contains(doc, "fail_on_single_reject") {
			t.Errorf("without a known cause, want the first gateway alone:\n%s", doc)
		}
	})
	t.Run("max attempts", func(t *testing.T) {
		c, _ := carriersFor(t, routing.PlanInfo{Default: true, MaxAttempts: 1}, append(two, routing.Target{Gateway: "spare"}))
		doc := answer(t, &privacy.Routing{Carriers: c})
		if !strings.Contains(doc, "}[callbridge_gateway=cheap,callbridge_attempt=1]sofia/gateway/cheap/4917022222\"/>") || strings.Contains(doc, "solid") {
			t.Errorf("want one attempt through cheap:\n%s", doc)
		}
	})
	t.Run("open breaker skipped", func(t *testing.T) {
		c, gws := carriersFor(t, routing.PlanInfo{Default: true}, two)
		gws.Record("cheap", time.Now(), true)
		doc := answer(t, &privacy.Routing{Carriers: c})
		if !strings.Contains(doc, "}[callbridge_gateway=solid,callbridge_attempt=1]sofia/gateway/solid/4917022222\"/>") || strings.Contains(doc, "gateway/cheap") {
			t.Errorf("want solid only:\n%s", doc)
		}
	})
	t.Run("no carrier", func(t *testing.T) {
		c, gws := carriersFor(t, routing.PlanInfo{Default: true}, two)
		gws.SetSofia("cheap", routing.SofiaDown)
		gws.SetSofia("solid", routing.SofiaDown)
		doc := answer(t, &privacy.Routing{Carriers: c})
		if !strings.Contains(doc, `callbridge_refusal=no_carrier`) || !strings.Contains(doc, `data="SERVICE_UNAVAILABLE"`) || strings.Contains(doc, `application="bridge"`) {
			t.Errorf("want a no_carrier refusal:\n%s", doc)
		}
	})
	t.Run("another account's plan", func(t *testing.T) {
		c, _ := carriersFor(t, routing.PlanInfo{AccountID: "someone-else"}, two)
		withPlans := answer(t, &privacy.Routing{Carriers: c})
		without := answer(t, &privacy.Routing{})
		if withPlans != without || !strings.Contains(without, "}sofia/gateway/numbergw/4917022222\"/>") {
			t.Errorf("without a plan of its own or a default one, want the number's gateway as before:\n%s\nwithout plans:\n%s", withPlans, without)
		}
	})
}

// BenchmarkAnswerRoutePlan is /fs/dialplan's work for a binding call
// routed by a least-cost plan over two gateways (resolution, failover
// bridge, XML), against BenchmarkAnswerNoPlan, the number's gateway.
func BenchmarkAnswerRoutePlan(b *testing.B) {
	c, _ := carriersFor(b, routing.PlanInfo{Default: true}, []routing.Target{{Gateway: "solid"}, {Gateway: "cheap"}})
	benchmarkAnswer(b, &privacy.Routing{Carriers: c})
}

// BenchmarkAnswerNoPlan is BenchmarkAnswerRoutePlan without plans.
func BenchmarkAnswerNoPlan(b *testing.B) {
	benchmarkAnswer(b, &privacy.Routing{})
}

func benchmarkAnswer(b *testing.B, cfg *privacy.Routing) {
	body, logger, ctx := form(), slog.New(slog.DiscardHandler), context.Background()
	var out []byte
	b.ReportAllocs()
	for b.Loop() {
		out = cfg.Answer(ctx, out[:0], body, staticLine{}, time.Now, logger)
	}
	if !strings.Contains(string(out), `application="bridge"`) {
		b.Fatalf("no bridge:\n%s", out)
	}
}
