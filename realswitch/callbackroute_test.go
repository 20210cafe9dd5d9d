//go:build realswitch

package realswitch_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/internal/wait"
	"callbridge/realswitch"
)

// TestCallbackRoutePlan proves callback legs through an account's route
// plan on FreeSWITCH 1.10.12, with the carriers of startCarrierPlan.
//
//   - The cheapest carrier refuses: each leg is originated again by the
//     controller through backup and the callback completes; the history
//     shows both attempts of each leg (gateway, cause, SIP status); the
//     CDRs show each attempt, the refused one unanswered at no cost, the
//     connected one priced from backup's buy deck.
//   - The cheaper carrier answers: it carries each leg, alone.
//   - The callee is busy (486): B ends busy and is never tried on the
//     other carrier.
func TestCallbackRoutePlan(t *testing.T) {
	t.Parallel()
	// Scenario 720's and 721's legs go through refuser then backup, the
	// others' through carrier then backup: least_cost orders each route
	// from the buy decks, whatever order the route lists.
	ctx, own, acct := startCarrierPlan(t,
		"4930072,refused first,least_cost,backup;refuser,all,00:00,24:00,0",
		"49300722,cheaper answers,least_cost,backup;carrier,all,00:00,24:00,0",
		"49300723,cheaper answers,least_cost,backup;carrier,all,00:00,24:00,0",
		"49300724,busy callee,least_cost,backup;carrier,all,00:00,24:00,0",
		"49300725,busy callee,least_cost,backup;carrier,all,00:00,24:00,0")

	// run places a callback and returns it ended, with its attempts as
	// "leg:gateway#n cause sip detail" and its CDRs by leg and attempt,
	// once wantCDRs are stored.
	run := func(t *testing.T, a, b string, wantCDRs int) (*callbridge.Callback, string, map[string]*callbridge.CDR) {
		t.Helper()
		cb, err := acct.CreateCallback(ctx, realswitch.CallbackRequest{A: a, B: b})
		if err != nil {
			t.Fatal(err)
		}
		if cb, err = acct.WaitCallback(ctx, cb.ID, realswitch.Ended); err != nil {
			t.Fatal(err)
		}
		var tries []string
		for _, e := range cb.Events {
			switch e.Type {
			case callbridge.EventGatewayAttempt:
				tries = append(tries, fmt.Sprintf("%s:%s#%d %s %d %s", e.Leg, e.Gateway, e.GatewayAttempt, e.Cause, e.SIPStatus, e.Detail))
				t.Logf("leg %s attempt %d via %s: %s, cause %q, SIP %d, %d ms after its placement", e.Leg, e.GatewayAttempt, e.Gateway, e.Detail, e.Cause, e.SIPStatus, e.DurationMS)
			case callbridge.EventFailover:
				t.Logf("leg %s failover: %s", e.Leg, e.Detail)
			}
		}
		byKey := map[string]*callbridge.CDR{}
		wait.ForState(t, "the CDRs of callback "+cb.ID, func() (bool, string) {
			cdrs, err := own.Admin.AccountCDRs(ctx, acct.AccountID, url.Values{"callback_id": {cb.ID}})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cdrs {
				byKey[fmt.Sprintf("%s%d", c.Leg, c.Attempt)] = c
			}
			return len(cdrs) >= wantCDRs, fmt.Sprintf("%d CDRs, want %d", len(cdrs), wantCDRs)
		}, wait.Every(200*time.Millisecond))
		for k, c := range byKey {
			t.Logf("CDR %s: %s gateway %q cause %s q850 %d bill %d ms buy %d (%s) sell %d", k, c.UUID, c.Gateway, c.HangupCause, c.Q850, c.BillMS, c.Buy, c.BuyDeckID, c.Sell)
		}
		return cb, strings.Join(tries, "; "), byKey
	}

	t.Run("cheapest refuses: fails over", func(t *testing.T) {
		a, b := realswitch.Number(720, realswitch.Answer), realswitch.Number(721, realswitch.Hold(2))
		cb, tries, cdrs := run(t, a, b, 4)
		if cb.Status != callbridge.CallbackCompleted {
			t.Errorf("callback %s/%s, want completed", cb.Status, cb.Reason)
		}
		want := "a:refuser#1 NORMAL_TEMPORARY_FAILURE 503 carrier failure; a:backup#2  0 answered; " +
			"b:refuser#1 NORMAL_TEMPORARY_FAILURE 503 carrier failure; b:backup#2  0 answered"
		if tries != want {
			t.Errorf("attempts:\n got %s\nwant %s", tries, want)
		}
		for _, l := range cb.Legs {
			if l.Gateway != "backup" || l.AnsweredAt == nil {
				t.Errorf("leg %s: gateway %q answered %v, want backup, answered", l.Leg, l.Gateway, l.AnsweredAt)
			}
		}
		for _, leg := range []string{"a", "b"} {
			first, second := cdrs[leg+"1"], cdrs[leg+"2"]
			if first == nil || second == nil {
				t.Fatalf("leg %s: CDRs %v, want attempts 1 and 2", leg, cdrs)
			}
			if first.Gateway != "refuser" || first.HangupCause != "NORMAL_TEMPORARY_FAILURE" || first.Q850 != 41 || first.Answered() || first.Buy != 0 || first.Sell != 0 {
				t.Errorf("leg %s attempt 1: gateway %s cause %s q850 %d answered %v buy %d sell %d; want refuser, NORMAL_TEMPORARY_FAILURE 41, unanswered, free",
					leg, first.Gateway, first.HangupCause, first.Q850, first.Answered(), first.Buy, first.Sell)
			}
			// backup's deck: 0.030/min per second = 500 µ/s.
			if want := 500 * ((second.BillMS + 999) / 1000); second.Gateway != "backup" || !second.Answered() || second.Buy != want || second.BuyDeckID == "" {
				t.Errorf("leg %s attempt 2: gateway %s answered %v bill %d buy %d; want backup, answered, %d from backup's deck", leg, second.Gateway, second.Answered(), second.BillMS, second.Buy, want)
			}
		}
		for _, n := range []string{a, b} {
			if !dialled(t, own, "refuser", n) || !dialled(t, own, "backup", n) {
				t.Errorf("%s: refuser dialled %v, backup dialled %v; want both", n, dialled(t, own, "refuser", n), dialled(t, own, "backup", n))
			}
		}
	})

	t.Run("cheaper answers: used alone", func(t *testing.T) {
		a, b := realswitch.Number(722, realswitch.Answer), realswitch.Number(723, realswitch.Hold(2))
		cb, tries, cdrs := run(t, a, b, 2)
		if cb.Status != callbridge.CallbackCompleted {
			t.Errorf("callback %s/%s, want completed", cb.Status, cb.Reason)
		}
		if want := "a:carrier#1  0 answered; b:carrier#1  0 answered"; tries != want {
			t.Errorf("attempts:\n got %s\nwant %s", tries, want)
		}
		for _, leg := range []string{"a", "b"} {
			// carrier's deck: 0.012/min = 200 µ/s.
			c := cdrs[leg+"1"]
			if c == nil {
				t.Fatalf("leg %s: no CDR of attempt 1 in %v", leg, cdrs)
			}
			if want := 200 * ((c.BillMS + 999) / 1000); c.Gateway != "carrier" || !c.Answered() || c.Buy != want {
				t.Errorf("leg %s: gateway %s answered %v buy %d; want carrier, answered, %d", leg, c.Gateway, c.Answered(), c.Buy, want)
			}
		}
		for _, n := range []string{a, b} {
			if dialled(t, own, "backup", n) {
				t.Errorf("backup was dialled for %s too", n)
			}
		}
	})

	t.Run("busy callee: no failover", func(t *testing.T) {
		a, b := realswitch.Number(724, realswitch.Answer), realswitch.Number(725, realswitch.Busy)
		cb, tries, cdrs := run(t, a, b, 2)
		if cb.Status != callbridge.CallbackFailed || cb.Reason != callbridge.ReasonBBusy {
			t.Errorf("callback %s/%s, want failed/b_busy", cb.Status, cb.Reason)
		}
		if want := "a:carrier#1  0 answered; b:carrier#1 USER_BUSY 486 stop"; tries != want {
			t.Errorf("attempts:\n got %s\nwant %s", tries, want)
		}
		if c := cdrs["b1"]; c == nil || c.Gateway != "carrier" || c.HangupCause != "USER_BUSY" || c.Answered() || c.Buy != 0 {
			t.Errorf("B's CDR %+v, want carrier, USER_BUSY, unanswered, free", c)
		}
		if dialled(t, own, "backup", b) {
			t.Errorf("backup was dialled after the callee was busy")
		}
	})
}
