//go:build realswitch

package realswitch_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/internal/wait"
	"callbridge/realswitch"
)

// TestBindingRoutePlan proves binding calls through an account's route
// plan on FreeSWITCH 1.10.12, with the carriers of startCarrierPlan.
//
//   - The cheapest carrier refuses: the call connects through the other;
//     the CDRs show both attempts, numbered and linked to the caller's
//     leg, the refused one unanswered at no cost, the connected one
//     priced from backup's buy deck.
//   - The cheaper carrier answers: it carries the call, alone.
//   - The callee is busy (486): the call ends busy, never tried on the
//     other carrier.
func TestBindingRoutePlan(t *testing.T) {
	t.Parallel()
	// Scenario 700's callees go through refuser then backup, 701's and
	// 702's through carrier then backup: least_cost orders each route
	// from the buy decks, whatever order the route lists.
	ctx, own, acct := startCarrierPlan(t,
		"49300700,refused first,least_cost,backup;refuser,all,00:00,24:00,0",
		"49300701,cheaper answers,least_cost,backup;carrier,all,00:00,24:00,0",
		"49300702,busy callee,least_cost,backup;carrier,all,00:00,24:00,0")

	// call binds x (XB) to b, dials x and returns the final status the
	// caller got and the binding's outbound CDRs by attempt, once all
	// wantLegs CDRs (inbound included) are stored.
	call := func(t *testing.T, x, b string, wantLegs int) (int, map[int]*callbridge.CDR, string) {
		t.Helper()
		final, cdrs := callBinding(ctx, t, own, acct, realswitch.Number(709, "999"), x, b, 2*time.Second, wantLegs)
		out, inbound := map[int]*callbridge.CDR{}, ""
		for _, c := range cdrs {
			t.Logf("CDR %s leg %s attempt %d gateway %q other %s cause %s bill %d ms buy %d (%s) sell %d",
				c.UUID, c.Leg, c.Attempt, c.Gateway, c.OtherUUID, c.HangupCause, c.BillMS, c.Buy, c.BuyDeckID, c.Sell)
			switch c.Leg {
			case callbridge.LegOutbound:
				out[c.Attempt] = c
			case callbridge.LegInbound:
				inbound = c.UUID
			}
		}
		return final, out, inbound
	}

	t.Run("cheapest refuses: fails over", func(t *testing.T) {
		b := realswitch.Number(700, realswitch.Hold(2))
		status, attempts, inbound := call(t, realswitch.Number(703, "901"), b, 3)
		if status != 200 {
			t.Errorf("the caller got %d, want 200", status)
		}
		first, second := attempts[1], attempts[2]
		if first == nil || second == nil {
			t.Fatalf("attempts %v, want 1 and 2", attempts)
		}
		if first.Gateway != "refuser" || first.HangupCause != "NORMAL_TEMPORARY_FAILURE" || first.Answered() || first.Buy != 0 || first.Sell != 0 || first.OtherUUID != inbound {
			t.Errorf("attempt 1: gateway %s cause %s answered %v buy %d sell %d other %s; want refuser, NORMAL_TEMPORARY_FAILURE, unanswered, free, linked to %s",
				first.Gateway, first.HangupCause, first.Answered(), first.Buy, first.Sell, first.OtherUUID, inbound)
		}
		// backup's deck: 0.030/min per second = 500 µ/s.
		if want := 500 * ((second.BillMS + 999) / 1000); second.Gateway != "backup" || !second.Answered() || second.BillMS < 1500 || second.Buy != want || second.OtherUUID != inbound {
			t.Errorf("attempt 2: gateway %s answered %v bill %d buy %d other %s; want backup, answered, about 2 s, %d from backup's deck, linked to %s",
				second.Gateway, second.Answered(), second.BillMS, second.Buy, second.OtherUUID, want, inbound)
		}
		if _, err := own.Carriers["refuser"].WaitCall(ctx, realswitch.Digits(b), realswitch.Call.Ended); err != nil {
			t.Errorf("refuser never saw the call: %v", err)
		}
	})

	t.Run("cheaper answers: used alone", func(t *testing.T) {
		b := realswitch.Number(701, realswitch.Hold(2))
		status, attempts, inbound := call(t, realswitch.Number(704, "901"), b, 2)
		c := attempts[1]
		if status != 200 || len(attempts) != 1 || c == nil {
			t.Fatalf("caller got %d, attempts %v; want 200 and one attempt", status, attempts)
		}
		// carrier's deck: 0.012/min = 200 µ/s.
		if want := 200 * ((c.BillMS + 999) / 1000); c.Gateway != "carrier" || !c.Answered() || c.Buy != want || c.OtherUUID != inbound {
			t.Errorf("attempt 1: gateway %s answered %v buy %d other %s; want carrier, answered, %d, linked to %s", c.Gateway, c.Answered(), c.Buy, c.OtherUUID, want, inbound)
		}
		if dialled(t, own, "backup", b) {
			t.Errorf("backup was dialled too")
		}
	})

	t.Run("busy callee: no failover", func(t *testing.T) {
		b := realswitch.Number(702, realswitch.Busy)
		status, attempts, _ := call(t, realswitch.Number(705, "901"), b, 2)
		c := attempts[1]
		if status != 486 || len(attempts) != 1 || c == nil {
			t.Fatalf("caller got %d, attempts %v; want 486 and one attempt", status, attempts)
		}
		if c.Gateway != "carrier" || c.HangupCause != "USER_BUSY" || c.Answered() || c.Buy != 0 {
			t.Errorf("attempt 1: gateway %s cause %s; want carrier, USER_BUSY, unanswered, free", c.Gateway, c.HangupCause)
		}
		if dialled(t, own, "backup", b) {
			t.Errorf("backup was dialled after the callee was busy")
		}
	})

	// The operator's usage report by carrier: refuser 1 attempt, ASR 0;
	// backup and carrier as carried.
	var rep callbridge.UsageReport
	today := time.Now().UTC().Format(time.DateOnly)
	tomorrow := time.Now().UTC().Add(24 * time.Hour).Format(time.DateOnly)
	if err := own.Admin.Do(ctx, "GET", "/v1/admin/accounts/"+acct.AccountID+"/reports/usage?group_by=carrier&from="+today+"&to="+tomorrow, nil, 200, &rep); err != nil {
		t.Fatal(err)
	}
	rows := map[string]callbridge.UsageRow{}
	for _, r := range rep.Rows {
		rows[r.Key] = r
		if r.ASR != nil {
			t.Logf("carrier %s: attempts %d answered %d ASR %.4f margin %d", r.Key, r.Attempts, r.Answered, *r.ASR, r.Margin)
		}
	}
	if r := rows["refuser"]; r.Attempts != 1 || r.ASR == nil || *r.ASR != 0 || r.Buy != 0 {
		t.Errorf("refuser's row %+v, want 1 attempt, ASR 0, no cost", r)
	}
	if r := rows["carrier"]; r.Attempts != 2 || r.ASR == nil || *r.ASR != 0.5 || r.Margin <= 0 {
		t.Errorf("carrier's row %+v, want 2 attempts, ASR 0.5, a margin", r)
	}
	if r := rows["backup"]; r.Attempts != 1 || r.ASR == nil || *r.ASR != 1 || r.Margin <= 0 {
		t.Errorf("backup's row %+v, want 1 attempt, ASR 1, a margin", r)
	}
}

// startCarrierPlan starts an Env of the test's own with three sipp
// carriers and their buy decks for 49: "refuser" (the cheapest, 0.006/min,
// answers every INVITE 503), "carrier" (0.012/min) and "backup" (the
// dearest, 0.030/min), both answering as the number says. It opens an
// account selling 49 at 0.06/min whose route plan "carriers" (UTC, at
// most two attempts a call) has routes, CSV rows without the header. The
// context ends with the test, after 150 s at the latest.
func startCarrierPlan(t *testing.T, routes ...string) (context.Context, *realswitch.Env, *realswitch.Client) {
	t.Helper()
	return startCarrierPlanWith(t, nil, routes...)
}

// startCarrierPlanWith is startCarrierPlan with the plan's terms in terms
// (post_dial_ms...) besides its name, account, zone, currency and
// max_attempts.
func startCarrierPlanWith(t *testing.T, terms map[string]any, routes ...string) (context.Context, *realswitch.Env, *realswitch.Client) {
	t.Helper()
	own := startOwn(t, realswitch.Options{Carriers: []realswitch.CarrierOption{
		{Name: "refuser", CarrierConfig: realswitch.CarrierConfig{Refuse: 503}},
		{Name: "backup"},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	t.Cleanup(cancel)
	acct, err := own.NewAccount(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acct.CreateSellDeck(ctx, "sell", "prefix,per_minute,first_increment,next_increment\n49,0.06,1,1\n"); err != nil {
		t.Fatal(err)
	}
	for gw, perMinute := range map[string]string{"refuser": "0.006", "carrier": "0.012", "backup": "0.030"} {
		if _, err := own.Admin.CreateBuyDeck(ctx, gw, "prefix,per_minute,first_increment,next_increment\n49,"+perMinute+",1,1\n"); err != nil {
			t.Fatal(err)
		}
	}
	createPlan(ctx, t, own, acct, terms, routes...)
	return ctx, own, acct
}

// createPlan gives acct the route plan "carriers" (UTC, at most two
// attempts a call, terms besides) with routes, CSV rows without the
// header, and waits until the controller resolves every route through it.
func createPlan(ctx context.Context, t *testing.T, own *realswitch.Env, acct *realswitch.Client, terms map[string]any, routes ...string) {
	t.Helper()
	plan := map[string]any{"name": "carriers", "account_id": acct.AccountID, "time_zone": "UTC", "currency": "EUR", "max_attempts": 2}
	for k, v := range terms {
		plan[k] = v
	}
	if _, err := own.Admin.CreateRoutePlan(ctx, plan,
		"prefix,description,strategy,gateways,days,from,until,priority\n"+strings.Join(routes, "\n")+"\n"); err != nil {
		t.Fatal(err)
	}
	// The controller compiles the plan and joins it with the decks when
	// their notifications arrive (LISTEN/NOTIFY): wait until it resolves
	// every route's prefix through the plan with every gateway priced.
	for _, r := range routes {
		prefix, _, _ := strings.Cut(r, ",")
		wait.ForState(t, "route "+prefix+" resolved with every gateway priced", func() (bool, string) {
			var got struct {
				Plan struct {
					Name string `json:"name"`
				} `json:"plan"`
				Resolution struct {
					Matched    bool   `json:"matched"`
					Prefix     string `json:"prefix"`
					Candidates []struct {
						Gateway string `json:"gateway"`
						Priced  bool   `json:"priced"`
					} `json:"candidates"`
				} `json:"resolution"`
			}
			q := url.Values{"number": {"+" + prefix + "0"}, "account_id": {acct.AccountID}}
			if err := own.Admin.Do(ctx, "GET", "/v1/admin/routes/resolve?"+q.Encode(), nil, http.StatusOK, &got); err != nil {
				return false, err.Error()
			}
			ok := got.Plan.Name == "carriers" && got.Resolution.Matched && got.Resolution.Prefix == prefix && len(got.Resolution.Candidates) > 0
			for _, c := range got.Resolution.Candidates {
				ok = ok && c.Priced
			}
			return ok, fmt.Sprintf("%+v", got)
		}, wait.Every(50*time.Millisecond))
	}
}

// dialled reports whether the carrier gw of own saw a call to number.
func dialled(t *testing.T, own *realswitch.Env, gw, number string) bool {
	t.Helper()
	calls, err := own.Carriers[gw].Calls()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		if c.Number == realswitch.Digits(number) {
			return true
		}
	}
	return false
}

// callBinding binds x (XB) to b for acct, dials x from caller (hanging up
// after hold unless the far end does) and returns the final status the
// caller got and the binding's CDRs, once wantLegs of them (inbound
// included) are stored.
func callBinding(ctx context.Context, t *testing.T, own *realswitch.Env, acct *realswitch.Client, caller, x, b string, hold time.Duration, wantLegs int) (int, []*callbridge.CDR) {
	t.Helper()
	binding := bind(ctx, t, acct, x, map[string]any{"mode": "XB", "b": b})
	phone, err := realswitch.Dial(ctx, own.Switch.ExternalSIP, caller, x, hold)
	if err != nil {
		t.Fatal(err)
	}
	final, _ := phone.Final()
	var cdrs []*callbridge.CDR
	for len(cdrs) < wantLegs {
		if cdrs, err = own.Admin.AccountCDRs(ctx, acct.AccountID, url.Values{"binding_id": {binding.ID}}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d CDRs, want %d", len(cdrs), wantLegs)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if len(cdrs) != wantLegs {
		t.Errorf("%d CDRs, want %d", len(cdrs), wantLegs)
	}
	return final.Status, cdrs
}
