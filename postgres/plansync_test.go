package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
	"callbridge/rating"
	"callbridge/routing"
)

func TestPlanSync(t *testing.T) {
	db := newRouteDB(t)
	ctx := context.Background()
	staged := &routing.PlanInfo{Name: "staged", TimeZone: "UTC", Currency: "EUR"}
	if err := postgres.NewRoutePlanService(db).CreateRoutePlan(ctx, staged); err != nil {
		t.Fatal(err)
	}
	carrier := &rating.DeckInfo{Gateway: "carrier-a", Name: "buy", Currency: "EUR", TimeZone: "UTC", Precision: 6}
	if err := postgres.NewRateDeckService(db).CreateRateDeck(ctx, carrier); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.NewRateDeckService(db).ImportRates(ctx, carrier.ID, rating.NewRateReader(strings.NewReader("prefix,per_minute\n49,0.01\n")), false); err != nil {
		t.Fatal(err)
	}
	decks, _ := pgtest.RunDeckSync(t, db, nil)
	plans, _ := pgtest.RunPlanSync(t, db, decks, nil)
	if !plans.Ready() || plans.Plan(staged.ID) == nil || plans.For("") != nil {
		t.Fatal("after the first load: want the staged plan and no default")
	}

	// Another writer (as another controller would) creates the default
	// plan and imports its routes: the notifications bring them here.
	def := &routing.PlanInfo{Name: "default", Default: true, TimeZone: "UTC", Currency: "EUR"}
	if err := postgres.NewRoutePlanService(db).CreateRoutePlan(ctx, def); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.NewRoutePlanService(db).ImportRoutes(ctx, def.ID, routing.NewRouteReader(strings.NewReader(
		"prefix,strategy,gateways\n49,least_cost,carrier-a;carrier-b\n")), false); err != nil {
		t.Fatal(err)
	}
	wait.ForState(t, "the imported default plan", func() (bool, string) {
		if p := plans.For(""); p != nil {
			return p.Info().Version == 2, p.String()
		}
		return false, "no default plan"
	})
	var res routing.Resolution
	plans.Resolve(&res, "", "4930123", time.Now(), routing.Sources{Prices: decks})
	if a := res.Attempts(); len(a) != 1 || a[0].Gateway != "carrier-a" || a[0].PerMinute != 10_000 || res.Candidates[1].Reason != routing.ReasonNoBuyDeck {
		t.Errorf("got %+v", res)
	}
	wait.ForState(t, "the table built", func() (bool, string) { return plans.Refresh(decks, time.Now()) == 0, "tables still stale" })

	if err := postgres.NewRoutePlanService(db).DeleteRoutePlan(ctx, def.ID); err != nil {
		t.Fatal(err)
	}
	wait.ForState(t, "the deleted plan gone", func() (bool, string) { return plans.For("") == nil && plans.Plan(def.ID) == nil, "still there" })
}
