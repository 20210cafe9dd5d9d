package tour

import (
	"context"
	"fmt"
	"time"
)

// carrierFailover is the tour's carrier-routing step: a second carrier,
// "cheap", whose buy deck undercuts "carrier" but which answers every call
// with 503 (the simulator runs it so: fsim --gateway cheap:refuse); a
// route plan for the account that tries the cheapest carrier first; a
// callback whose legs fail over from cheap to carrier; its history and
// its CDRs, the connected legs priced from carrier's buy deck and the
// failed attempts unanswered at zero cost. The plan is removed at the
// end, so what follows the tour routes as before.
func (t *tour) carrierFailover(ctx context.Context) error {
	t.step("Carrier routing: the cheapest carrier first, the next one when it refuses")
	var buy struct{ ID string }
	if err := t.call(ctx, "POST", "/v1/rate-decks", true, map[string]any{
		"gateway": "cheap", "name": "Carrier B (cheap)", "currency": "USD", "time_zone": "UTC"}, 201, &buy); err != nil {
		return err
	}
	if err := t.call(ctx, "POST", "/v1/rate-decks/"+buy.ID+"/rates?mode=replace", true,
		"prefix,description,per_minute,first_increment,next_increment\n1,US termination,0.002,6,6\n", 200, nil); err != nil {
		return err
	}
	t.say("buy deck %s for gateway cheap: 0.002 USD/min, cheaper than carrier's 0.006 (the simulator's cheap answers 503)", buy.ID)
	var plan struct{ ID string }
	if err := t.call(ctx, "POST", "/v1/admin/route-plans", true, map[string]any{
		"name": "Demo Shop routes", "account_id": t.accountID, "time_zone": "UTC", "currency": "USD", "max_attempts": 2}, 201, &plan); err != nil {
		return err
	}
	routes := "prefix,description,strategy,gateways\n" +
		"1555777,Failover demo,least_cost,cheap;carrier\n" +
		",Everything else,priority,carrier\n"
	if err := t.call(ctx, "POST", "/v1/admin/route-plans/"+plan.ID+"/routes?mode=replace", true, routes, 200, nil); err != nil {
		return err
	}
	t.say("route plan %s for the account: 1555777 least_cost cheap;carrier, everything else through carrier", plan.ID)

	var res struct {
		Resolution struct {
			Prefix     string `json:"prefix"`
			Candidates []struct {
				Gateway   string `json:"gateway"`
				Kept      bool   `json:"kept"`
				Reason    string `json:"reason"`
				PerMinute int64  `json:"per_minute_micros"`
			} `json:"candidates"`
		} `json:"resolution"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := t.call(ctx, "GET", "/v1/admin/routes/resolve?number=15557770001&account_id="+t.accountID, true, nil, 200, &res); err != nil {
			return err
		}
		if c := res.Resolution.Candidates; len(c) == 2 && c[0].Gateway == "cheap" && c[0].Kept {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the route plan is not in force after 10 s: %+v", res.Resolution)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for i, c := range res.Resolution.Candidates {
		t.say("  resolve +15557770001: %d. %-8s %s/min (%s)", i+1, c.Gateway, micros(c.PerMinute), c.Reason)
	}

	var cb struct {
		ID, Status, Reason string
		Events             []struct {
			Type, Leg, Gateway, Cause, Detail string
			GatewayAttempt                    int   `json:"gateway_attempt"`
			SIPStatus                         int   `json:"sip_status"`
			DurationMS                        int64 `json:"duration_ms"`
		} `json:"events"`
	}
	if err := t.call(ctx, "POST", "/v1/callbacks", false, map[string]any{"a": "15557770001", "b": "15557770002"}, 202, &cb); err != nil {
		return err
	}
	t.say("POST /v1/callbacks → 202 %s", cb.ID)
	deadline = time.Now().Add(60 * time.Second)
	for cb.Status != "completed" && cb.Status != "failed" {
		if time.Now().After(deadline) {
			return fmt.Errorf("callback %s still %s after 60s", cb.ID, cb.Status)
		}
		time.Sleep(300 * time.Millisecond)
		if err := t.call(ctx, "GET", "/v1/callbacks/"+cb.ID, false, nil, 200, &cb); err != nil {
			return err
		}
	}
	t.say("the attempts in its history (GET /v1/callbacks/{id}):")
	for _, e := range cb.Events {
		switch e.Type {
		case "gateway_attempt":
			t.say("  leg %s attempt %d via %-8s %-25s sip %3d after %5d ms: %s", e.Leg, e.GatewayAttempt, e.Gateway, e.Cause, e.SIPStatus, e.DurationMS, e.Detail)
		case "failover":
			t.say("  leg %s failover: %s", e.Leg, e.Detail)
		}
	}
	t.say("final: %s %s", cb.Status, cb.Reason)

	var cdrs struct {
		CDRs []struct {
			Leg, Gateway string
			Attempt      int    `json:"attempt"`
			HangupCause  string `json:"hangup_cause"`
			BillMS       int64  `json:"bill_ms"`
			Sell         int64  `json:"sell_micros"`
			Buy          int64  `json:"buy_micros"`
			BuyDeck      string `json:"buy_deck_id"`
		} `json:"cdrs"`
	}
	if err := t.waitCDRs(ctx, "/v1/admin/accounts/"+t.accountID+"/cdrs?callback_id="+cb.ID, true, &cdrs, func() int { return len(cdrs.CDRs) }); err != nil {
		return err
	}
	t.say("its CDRs: one per attempt; the connected legs priced from carrier's buy deck")
	t.say("%-4s %-8s %-8s %-25s %8s %10s %10s", "LEG", "ATTEMPT", "GATEWAY", "CAUSE", "BILL_S", "SELL_USD", "BUY_USD")
	for _, c := range cdrs.CDRs {
		t.say("%-4s %-8d %-8s %-25s %8.3f %10s %10s", c.Leg, c.Attempt, c.Gateway, c.HangupCause, float64(c.BillMS)/1000, micros(c.Sell), micros(c.Buy))
	}
	if err := t.call(ctx, "DELETE", "/v1/admin/route-plans/"+plan.ID, true, nil, 204, nil); err != nil {
		return err
	}
	t.say("route plan %s removed: the account's calls leave through carrier again", plan.ID)
	return nil
}
