//go:build realswitch

package realswitch_test

import (
	"strconv"
	"testing"
	"time"

	"callbridge"
	"callbridge/esl/freeswitch"
	"callbridge/realswitch"
)

// TestBindingPostDialBudget proves on FreeSWITCH 1.10.12 that a route
// plan's post-dial budget (6 s here) bounds the whole sequential bridge of
// a binding call, not each attempt, and stops counting once the call is
// answered. The route tries carrier, then backup.
//
//   - Both carriers ring 4 s, then refuse 503 (a failover cause): the
//     second attempt would end at about 8 s, but the caller's leg is hung
//     up NO_ANSWER at the budget, cancelling the second attempt; the
//     caller hears the first carrier's 503; the CDRs show both attempts.
//   - The first carrier answers and the callee hangs up after 9 s: the
//     call is not cut at the budget.
//   - A prepaid account granted 10 s: the call is answered, outlives the
//     budget and is cut at its grant (ALLOTTED_TIMEOUT): the budget's
//     cancellation on answer spares the prepaid cap, scheduled on answer
//     too.
//   - The same grant (10 s, both legs priced) when refuser refuses the
//     first attempt 503 and backup answers the second: cut at the grant,
//     counted from the answer, not at the budget; the refused attempt's
//     CDR is free, the two billed legs' CDRs spend the top-up (at most
//     one increment a leg past it) and end the reservation.
func TestBindingPostDialBudget(t *testing.T) {
	t.Parallel()
	const budget = 6 * time.Second
	route := "4930074,post-dial budget,least_cost,backup;carrier,all,00:00,24:00,0"
	// Scenario 743's callees go through refuser (the cheapest, refusing
	// every INVITE 503) then backup.
	failover := "49300743,refused first,least_cost,backup;refuser,all,00:00,24:00,0"
	terms := map[string]any{"post_dial_ms": budget.Milliseconds()}
	ctx, own, acct := startCarrierPlanWith(t, terms, route, failover)

	// Each prepaid account sells as acct does (0.06/min, 1 s increments:
	// 1,000 µ a second a leg, both legs priced): its 20,000 µ pay for
	// 10 s. One account a subtest, so that neither call's reservation
	// holds the money of the other.
	const topup, perSecond = 20_000, 1_000
	newPrepaid := func(name string) *realswitch.Client {
		c, err := own.Admin.CreateAccount(ctx, realswitch.AccountRequest{Name: t.Name() + " " + name, ServiceNumber: "+49 30 1234567", Currency: "EUR", Prepaid: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateSellDeck(ctx, "sell", "prefix,per_minute,first_increment,next_increment\n49,0.06,1,1\n"); err != nil {
			t.Fatal(err)
		}
		if err := own.Admin.Topup(ctx, c.AccountID, topup, "realswitch-postdial"); err != nil {
			t.Fatal(err)
		}
		createPlan(ctx, t, own, c, terms, route, failover)
		return c
	}
	prepaid, prepaidFailover := newPrepaid("prepaid"), newPrepaid("prepaid failover")

	// call binds x (XB) to b for acct, dials x and returns the final
	// status the caller got, FreeSWITCH's CHANNEL_HANGUP_COMPLETE of the
	// inbound leg and of each attempt in order, once the binding's
	// wantLegs CDRs (inbound included) are stored.
	call := func(t *testing.T, acct *realswitch.Client, x, b string, wantLegs int) (int, freeswitch.Event, []freeswitch.Event, []*callbridge.CDR) {
		t.Helper()
		final, cdrs := callBinding(ctx, t, own, acct, realswitch.Number(749, "999"), x, b, 60*time.Second, wantLegs)
		var inbound string
		attempt := map[string]int{}
		for _, c := range cdrs {
			t.Logf("CDR %s leg %s attempt %d gateway %q cause %s duration %d ms bill %d ms", c.UUID, c.Leg, c.Attempt, c.Gateway, c.HangupCause, c.DurationMS, c.BillMS)
			switch c.Leg {
			case callbridge.LegInbound:
				inbound = c.UUID
			case callbridge.LegOutbound:
				attempt[c.UUID] = c.Attempt
			}
		}
		a, err := own.Switch.Hangup(ctx, inbound)
		if err != nil {
			t.Fatal(err)
		}
		legs, err := own.Switch.Attempts(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range legs {
			if n := attempt[l.Get("Unique-ID")]; n != i+1 {
				t.Errorf("leg %s, attempt %d of the bridge: its CDR says attempt %d", l.Get("Unique-ID"), i+1, n)
			}
		}
		return final, a, legs, cdrs
	}

	t.Run("budget spent across attempts", func(t *testing.T) {
		t.Parallel()
		status, a, legs, _ := call(t, acct, realswitch.Number(745, "901"), realswitch.Number(740, realswitch.RingRefuse(4)), 3)
		if len(legs) != 2 {
			t.Fatalf("%d attempts, want 2", len(legs))
		}
		first, second := legs[0], legs[1]
		start := usec(t, first, "Caller-Channel-Created-Time")
		end := usec(t, a, "Caller-Channel-Hangup-Time")
		t.Logf("caller got %d; inbound %s after %v from the first attempt; attempt 1 %s %s after %v; attempt 2 %s %s, began %v, ended %v",
			status, a.Get("Hangup-Cause"), end.Sub(start),
			first.Var("sip_gateway_name"), first.Get("Hangup-Cause"), usec(t, first, "Caller-Channel-Hangup-Time").Sub(start),
			second.Var("sip_gateway_name"), second.Get("Hangup-Cause"), usec(t, second, "Caller-Channel-Created-Time").Sub(start), usec(t, second, "Caller-Channel-Hangup-Time").Sub(start))
		// NO_ANSWER alone would be SIP 480, but sofia answers the caller
		// with the SIP failure of the last attempt that had one
		// (last_bridge_proto_specific_hangup_cause, mod_sofia's
		// sofia_on_hangup): carrier's 503.
		if status != 503 || a.Get("Hangup-Cause") != "NO_ANSWER" || a.Var("last_bridge_proto_specific_hangup_cause") != "sip:503" {
			t.Errorf("the caller got %d, its leg ended %s (last bridge %s); want 503 relayed from carrier's refusal, NO_ANSWER",
				status, a.Get("Hangup-Cause"), a.Var("last_bridge_proto_specific_hangup_cause"))
		}
		// The scheduler fires to the whole second: at the budget give or
		// take one, well before the second attempt's refusal (8 s).
		if d := end.Sub(start); d < budget-1500*time.Millisecond || d > budget+1500*time.Millisecond {
			t.Errorf("the call ended %v after the bridge began, want about the %v budget", d, budget)
		}
		if first.Var("sip_gateway_name") != "carrier" || first.Get("Hangup-Cause") != "NORMAL_TEMPORARY_FAILURE" || first.Var("sip_term_status") != "503" {
			t.Errorf("attempt 1: gateway %s cause %s sip %s; want carrier NORMAL_TEMPORARY_FAILURE 503", first.Var("sip_gateway_name"), first.Get("Hangup-Cause"), first.Var("sip_term_status"))
		}
		if second.Var("sip_gateway_name") != "backup" || second.Get("Hangup-Cause") != "ORIGINATOR_CANCEL" || second.Var("billmsec") != "0" {
			t.Errorf("attempt 2: gateway %s cause %s billmsec %s; want backup ORIGINATOR_CANCEL (cancelled while ringing) 0",
				second.Var("sip_gateway_name"), second.Get("Hangup-Cause"), second.Var("billmsec"))
		}
	})

	t.Run("answered: the budget stops", func(t *testing.T) {
		t.Parallel()
		status, a, legs, _ := call(t, acct, realswitch.Number(746, "901"), realswitch.Number(741, realswitch.Hold(9)), 2)
		if len(legs) != 1 {
			t.Fatalf("%d attempts, want 1", len(legs))
		}
		talk := usec(t, a, "Caller-Channel-Hangup-Time").Sub(usec(t, a, "Caller-Channel-Answered-Time"))
		t.Logf("caller got %d; inbound %s after %v answered; attempt 1 %s %s", status, a.Get("Hangup-Cause"), talk, legs[0].Var("sip_gateway_name"), legs[0].Get("Hangup-Cause"))
		if status != 200 || a.Get("Hangup-Cause") != "NORMAL_CLEARING" || talk < 8*time.Second {
			t.Errorf("the caller got %d, its leg ended %s after %v answered; want 200, NORMAL_CLEARING after the callee's 9 s, past the %v budget", status, a.Get("Hangup-Cause"), talk, budget)
		}
	})

	t.Run("prepaid: cut at the grant, not the budget", func(t *testing.T) {
		t.Parallel()
		status, a, legs, _ := call(t, prepaid, realswitch.Number(747, "901"), realswitch.Number(742, realswitch.Hold(20)), 2)
		if len(legs) != 1 {
			t.Fatalf("%d attempts, want 1", len(legs))
		}
		talk := usec(t, a, "Caller-Channel-Hangup-Time").Sub(usec(t, a, "Caller-Channel-Answered-Time"))
		t.Logf("caller got %d; inbound %s after %v answered (max %s ms); attempt 1 %s %s", status, a.Get("Hangup-Cause"), talk, a.Var(callbridge.VarMaxMS), legs[0].Var("sip_gateway_name"), legs[0].Get("Hangup-Cause"))
		if a.Var(callbridge.VarMaxMS) != "10000" {
			t.Errorf("granted %s ms, want 10000", a.Var(callbridge.VarMaxMS))
		}
		// Whole seconds, fired by a scheduler that runs once a second.
		if status != 200 || a.Get("Hangup-Cause") != "ALLOTTED_TIMEOUT" || talk < 8500*time.Millisecond || talk > 11500*time.Millisecond {
			t.Errorf("the caller got %d, its leg ended %s after %v answered; want 200, ALLOTTED_TIMEOUT at the 10 s grant", status, a.Get("Hangup-Cause"), talk)
		}
	})

	t.Run("prepaid failover: cut at the grant, not the budget", func(t *testing.T) {
		t.Parallel()
		status, a, legs, cdrs := call(t, prepaidFailover, realswitch.Number(748, "901"), realswitch.Number(743, realswitch.Hold(20)), 3)
		if len(legs) != 2 {
			t.Fatalf("%d attempts, want 2", len(legs))
		}
		first, second := legs[0], legs[1]
		start := usec(t, first, "Caller-Channel-Created-Time")
		answered := usec(t, a, "Caller-Channel-Answered-Time")
		end := usec(t, a, "Caller-Channel-Hangup-Time")
		talk := end.Sub(answered)
		t.Logf("caller got %d; inbound answered %v and ended %s %v after the first attempt began, %v answered (max %s ms); attempt 1 %s %s sip %s after %v; attempt 2 %s %s, answered %v, ended %v",
			status, answered.Sub(start), a.Get("Hangup-Cause"), end.Sub(start), talk, a.Var(callbridge.VarMaxMS),
			first.Var("sip_gateway_name"), first.Get("Hangup-Cause"), first.Var("sip_term_status"), usec(t, first, "Caller-Channel-Hangup-Time").Sub(start),
			second.Var("sip_gateway_name"), second.Get("Hangup-Cause"), usec(t, second, "Caller-Channel-Answered-Time").Sub(start), usec(t, second, "Caller-Channel-Hangup-Time").Sub(start))
		// Both legs priced at 1,000 µ/s: the 20,000 µ pay for 10 s.
		if a.Var(callbridge.VarMaxMS) != "10000" {
			t.Errorf("granted %s ms, want 10000", a.Var(callbridge.VarMaxMS))
		}
		if first.Var("sip_gateway_name") != "refuser" || first.Get("Hangup-Cause") != "NORMAL_TEMPORARY_FAILURE" || first.Var("sip_term_status") != "503" || first.Var("billmsec") != "0" {
			t.Errorf("attempt 1: gateway %s cause %s sip %s billmsec %s; want refuser NORMAL_TEMPORARY_FAILURE 503, unanswered",
				first.Var("sip_gateway_name"), first.Get("Hangup-Cause"), first.Var("sip_term_status"), first.Var("billmsec"))
		}
		if second.Var("sip_gateway_name") != "backup" || second.Get("Caller-Channel-Answered-Time") == "0" {
			t.Errorf("attempt 2: gateway %s answered at %s; want backup, answered", second.Var("sip_gateway_name"), second.Get("Caller-Channel-Answered-Time"))
		}
		// The grant counts from the answer, whole seconds fired by a
		// scheduler that runs once a second; the budget (6 s from the
		// bridge) would have cut the call about 4 s earlier.
		if status != 200 || a.Get("Hangup-Cause") != "ALLOTTED_TIMEOUT" || talk < 8500*time.Millisecond || talk > 11500*time.Millisecond {
			t.Errorf("the caller got %d, its leg ended %s after %v answered; want 200, ALLOTTED_TIMEOUT at the 10 s grant", status, a.Get("Hangup-Cause"), talk)
		}
		if d := end.Sub(start); d < budget+2*time.Second {
			t.Errorf("the call ended %v after the bridge began: cut near the %v budget", d, budget)
		}

		// The CDRs: the refused attempt free, the inbound leg and the
		// answered attempt each sold at 1,000 µ/s.
		var inbound *callbridge.CDR
		out := map[int]*callbridge.CDR{}
		var sell int64
		for _, c := range cdrs {
			sell += c.Sell
			switch c.Leg {
			case callbridge.LegInbound:
				inbound = c
			case callbridge.LegOutbound:
				out[c.Attempt] = c
			}
		}
		c1, c2 := out[1], out[2]
		if inbound == nil || c1 == nil || c2 == nil {
			t.Fatalf("CDRs %v, want the inbound leg and attempts 1 and 2", cdrs)
		}
		if c1.Gateway != "refuser" || c1.HangupCause != "NORMAL_TEMPORARY_FAILURE" || c1.Answered() || c1.Buy != 0 || c1.Sell != 0 || c1.OtherUUID != inbound.UUID {
			t.Errorf("attempt 1's CDR: gateway %s cause %s answered %v buy %d sell %d other %s; want refuser, NORMAL_TEMPORARY_FAILURE, unanswered, free, linked to %s",
				c1.Gateway, c1.HangupCause, c1.Answered(), c1.Buy, c1.Sell, c1.OtherUUID, inbound.UUID)
		}
		// backup's deck: 0.030/min per second = 500 µ/s.
		secs := func(c *callbridge.CDR) int64 { return (c.BillMS + 999) / 1000 }
		if c2.Gateway != "backup" || !c2.Answered() || c2.Buy != 500*secs(c2) || c2.Sell != perSecond*secs(c2) || c2.OtherUUID != inbound.UUID {
			t.Errorf("attempt 2's CDR: gateway %s answered %v bill %d ms buy %d sell %d other %s; want backup, answered, buy %d, sell %d, linked to %s",
				c2.Gateway, c2.Answered(), c2.BillMS, c2.Buy, c2.Sell, c2.OtherUUID, 500*secs(c2), perSecond*secs(c2), inbound.UUID)
		}
		if inbound.Sell != perSecond*secs(inbound) {
			t.Errorf("inbound CDR: bill %d ms sell %d, want %d", inbound.BillMS, inbound.Sell, perSecond*secs(inbound))
		}

		// The money: the inbound CDR ended the reservation (callBinding
		// returned once every CDR was stored) and the ledger took what
		// the CDRs sold, at most one increment a leg past the top-up: the
		// hangup is due at a whole second 10 s after the one of the
		// answer and the scheduler looks every 0.5 s, so a leg talks
		// under 10.5 s and bills at most 11.
		bal, err := prepaidFailover.Balance(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("balance %+v after CDRs selling %d (inbound %d ms, attempt 2 %d ms)", bal, sell, inbound.BillMS, c2.BillMS)
		if bal.Reserved != 0 || bal.Balance != topup-sell || bal.Balance < -2*perSecond {
			t.Errorf("balance %d reserved %d after a top-up of %d and CDRs selling %d: want %d, nothing reserved, not below -%d",
				bal.Balance, bal.Reserved, topup, sell, topup-sell, 2*perSecond)
		}
	})
}

// usec is the time in header h of e, in microseconds since the epoch as
// FreeSWITCH writes its *-Time headers.
func usec(t *testing.T, e freeswitch.Event, h string) time.Time {
	t.Helper()
	n, err := strconv.ParseInt(e.Get(h), 10, 64)
	if err != nil || n == 0 {
		t.Fatalf("%s of %s: %q", h, e.Get("Unique-ID"), e.Get(h))
	}
	return time.UnixMicro(n)
}
