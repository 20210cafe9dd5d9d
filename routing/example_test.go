package routing_test

import (
	"fmt"
	"time"

	"callbridge/rating"
	"callbridge/routing"
)

// Example is the engine's loop for one outbound leg: resolve with the
// live gateway view, claim each attempt with Begin, dial, classify how it
// ended, End it (which feeds the breaker), and ask Next whether to fail
// over. Here the cheaper carrier answers 503 and the other connects.
func Example() {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	deck := func(gw string, perMinute int64) *rating.Deck {
		d, _ := rating.NewDeck(rating.DeckInfo{ID: "buy-" + gw, Gateway: gw, Name: gw, Currency: "EUR", TimeZone: "Europe/Berlin", Precision: 6}, berlin,
			[]rating.Rate{{Prefix: "49", PerMinute: perMinute, FirstIncrement: 60, NextIncrement: 60, Days: rating.AllDays, Until: rating.Midnight}})
		return d
	}
	var decks rating.Registry // kept current by postgres.DeckSync in serve
	decks.Replace([]*rating.Deck{deck("cheap", 5_000), deck("solid", 9_000)}, decks.Mark())

	plan, _ := routing.NewPlan(routing.PlanInfo{ID: "p", Name: "default", Default: true, TimeZone: "Europe/Berlin", Currency: "EUR"}, berlin,
		[]routing.Route{{Prefix: "49", Strategy: routing.LeastCost, Days: rating.AllDays, Until: rating.Midnight,
			Gateways: []routing.Target{{Gateway: "solid"}, {Gateway: "cheap"}}}})
	var plans routing.Plans // kept current by postgres.PlanSync in serve
	plans.Replace([]*routing.Plan{plan}, plans.Mark())
	plans.Refresh(&decks, time.Now())

	var gateways routing.Gateways // SetSofia from the switch's gateway state
	gateways.Breaker = routing.BreakerConfig{Failures: 3, Cooldown: 30 * time.Second}

	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	var res routing.Resolution
	used := plans.Resolve(&res, "acc-1", "4930123456", now, routing.Sources{Prices: &decks, Health: &gateways})
	hangups := map[string]struct {
		cause string
		sip   int
	}{"cheap": {"NORMAL_TEMPORARY_FAILURE", 503}, "solid": {"NORMAL_CLEARING", 200}}

	c, ok := res.Attempts()[0], true
	for tried := 0; ok; {
		if r := gateways.Begin(c.Gateway, now); !r.Kept() {
			fmt.Println(c.Gateway, "refused:", r) // skip it: try the next
		} else {
			h := hangups[c.Gateway] // dial sofia/gateway/<c.Gateway>/<number>, wait for the hangup
			v := used.Policy().Classify(h.cause, h.sip)
			gateways.End(c.Gateway, now, v == routing.Failover)
			fmt.Printf("%s (%d µ/min): %s %d -> %s\n", c.Gateway, c.PerMinute, h.cause, h.sip, v)
			if v == routing.Stop {
				break
			}
		}
		tried++
		c, ok = res.Next(tried, routing.Failover, 2_000)
	}
	// Output:
	// cheap (5000 µ/min): NORMAL_TEMPORARY_FAILURE 503 -> failover
	// solid (9000 µ/min): NORMAL_CLEARING 200 -> stop
}
