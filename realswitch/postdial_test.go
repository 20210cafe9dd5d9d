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
func TestBindingPostDialBudget(t *testing.T) {
	t.Parallel()
	const budget = 6 * time.Second
	route := "4930074,post-dial budget,least_cost,backup;carrier,all,00:00,24:00,0"
	terms := map[string]any{"post_dial_ms": budget.Milliseconds()}
	ctx, own, acct := startCarrierPlanWith(t, terms, route)

	// The prepaid account sells as acct does (0.06/min, 1 s increments:
	// 1,000 µ a second a leg, both legs priced): 20,000 µ pay for 10 s.
	prepaid, err := own.Admin.CreateAccount(ctx, realswitch.AccountRequest{Name: t.Name() + " prepaid", ServiceNumber: "+49 30 1234567", Currency: "EUR", Prepaid: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prepaid.CreateSellDeck(ctx, "sell", "prefix,per_minute,first_increment,next_increment\n49,0.06,1,1\n"); err != nil {
		t.Fatal(err)
	}
	if err := own.Admin.Topup(ctx, prepaid.AccountID, 20_000, "realswitch-postdial"); err != nil {
		t.Fatal(err)
	}
	createPlan(ctx, t, own, prepaid, terms, route)

	// call binds x (XB) to b for acct, dials x and returns the final
	// status the caller got, FreeSWITCH's CHANNEL_HANGUP_COMPLETE of the
	// inbound leg and of each attempt in order, once the binding's
	// wantLegs CDRs (inbound included) are stored.
	call := func(t *testing.T, acct *realswitch.Client, x, b string, wantLegs int) (int, freeswitch.Event, []freeswitch.Event) {
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
		return final, a, legs
	}

	t.Run("budget spent across attempts", func(t *testing.T) {
		t.Parallel()
		status, a, legs := call(t, acct, realswitch.Number(745, "901"), realswitch.Number(740, realswitch.RingRefuse(4)), 3)
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
		status, a, legs := call(t, acct, realswitch.Number(746, "901"), realswitch.Number(741, realswitch.Hold(9)), 2)
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
		status, a, legs := call(t, prepaid, realswitch.Number(747, "901"), realswitch.Number(742, realswitch.Hold(20)), 2)
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
