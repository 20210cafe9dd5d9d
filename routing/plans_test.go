package routing

import (
	"sync"
	"testing"
	"time"

	"callbridge/rating"
)

func TestPlans(t *testing.T) {
	at := utc("2026-03-02T10:00:00Z")
	def := newPlan(t, PlanInfo{ID: "def", Default: true, Version: 1}, route("49", Priority, "d"))
	own := newPlan(t, PlanInfo{ID: "own", AccountID: "acc", Version: 1}, route("49", Priority, "o"))
	staged := newPlan(t, PlanInfo{ID: "staged", Version: 1}, route("49", Priority, "s"))
	var ps Plans
	if ps.Ready() || ps.For("acc") != nil {
		t.Fatal("an empty set is ready or has plans")
	}
	ps.Replace([]*Plan{def, own, staged}, ps.Mark())
	mark := ps.Mark()
	if !ps.Ready() {
		t.Fatal("not ready after Replace")
	}
	first := func(account string) string {
		var res Resolution
		if ps.Resolve(&res, account, "4912", at, Sources{}) == nil {
			return "<no plan>"
		}
		return res.Attempts()[0].Gateway
	}
	tests := []struct{ account, want string }{{"acc", "o"}, {"other", "d"}, {"", "d"}}
	for _, tt := range tests {
		if got := first(tt.account); got != tt.want {
			t.Errorf("account %q: got %s, want %s", tt.account, got, tt.want)
		}
	}

	// A new version moves the account's plan; an older one is refused.
	own2 := newPlan(t, PlanInfo{ID: "own", AccountID: "acc2", Version: 2}, route("49", Priority, "o2"))
	if !ps.Put(own2) || ps.Put(own) {
		t.Fatal("Put: want the new version taken and the old one refused")
	}
	if got := first("acc"); got != "d" {
		t.Errorf("after the plan moved: got %s, want the default's d", got)
	}
	if got := first("acc2"); got != "o2" {
		t.Errorf("the plan's new account: got %s, want o2", got)
	}
	ps.Remove("def")
	if got := first("acc"); got != "<no plan>" {
		t.Errorf("after the default was removed: got %s", got)
	}
	if ps.Put(def) {
		t.Error("a removed plan came back")
	}
	// A reload read before these writes does not undo them.
	ps.Replace([]*Plan{def, own, staged}, mark)
	if ps.Plan("def") != nil || ps.Plan("own") != own2 || ps.Plan("staged") != staged {
		t.Error("Replace undid later writes")
	}
}

func TestPlansRefresh(t *testing.T) {
	at := utc("2026-03-02T10:00:00Z")
	reg := registry(buyDeck(t, "a", "EUR", nil, buyRate("49", 10_000)), buyDeck(t, "b", "EUR", nil, buyRate("49", 20_000)))
	p := newPlan(t, PlanInfo{ID: "p", Default: true, Version: 1}, route("49", LeastCost, "b", "a"))
	var ps Plans
	ps.Replace([]*Plan{p}, ps.Mark())
	if n := ps.Refresh(reg, at); n != 1 {
		t.Fatalf("first refresh built %d tables, want 1", n)
	}
	if n := ps.Refresh(reg, at.Add(time.Hour)); n != 0 {
		t.Errorf("nothing changed: built %d tables, want 0", n)
	}
	var res Resolution
	ps.Resolve(&res, "", "4912", at, Sources{Prices: reg})
	if got, want := summary(&res), "a:ok:10000 b:ok:20000 | "; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	cheaper, err := rating.NewDeck(rating.DeckInfo{ID: "deck-b", Gateway: "b", Name: "b", Currency: "EUR", TimeZone: "Europe/Berlin",
		Precision: 6, Version: 2}, loc(t, "Europe/Berlin"), []rating.Rate{buyRate("49", 1_000)})
	if err != nil {
		t.Fatal(err)
	}
	reg.Put(cheaper)
	// Before the refresh the table falls back to the plan: the answer is
	// already the new one.
	ps.Resolve(&res, "", "4912", at, Sources{Prices: reg})
	if got, want := summary(&res), "b:ok:1000 a:ok:10000 | "; got != want {
		t.Errorf("stale table: got %s, want %s", got, want)
	}
	if n := ps.Refresh(reg, at); n != 1 {
		t.Errorf("after a deck changed: built %d tables, want 1", n)
	}
	ps.Resolve(&res, "", "4912", at, Sources{Prices: reg})
	if got, want := summary(&res), "b:ok:1000 a:ok:10000 | "; got != want {
		t.Errorf("rebuilt table: got %s, want %s", got, want)
	}
}

func TestPlansConcurrent(t *testing.T) {
	at := utc("2026-03-02T10:00:00Z")
	reg := registry(buyDeck(t, "a", "EUR", nil, buyRate("49", 10_000)))
	var ps Plans
	ps.Replace(nil, ps.Mark())
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			var res Resolution
			for range 200 {
				ps.Resolve(&res, "", "4912", at, Sources{Prices: reg})
				if i == 0 {
					ps.Refresh(reg, at)
				}
			}
		})
	}
	for v := range int64(50) {
		ps.Put(newPlan(t, PlanInfo{ID: "p", Default: true, Version: v + 1}, route("49", LeastCost, "a")))
	}
	wg.Wait()
	var res Resolution
	ps.Resolve(&res, "", "4912", at, Sources{Prices: reg})
	if len(res.Attempts()) != 1 {
		t.Errorf("got %s", summary(&res))
	}
}
