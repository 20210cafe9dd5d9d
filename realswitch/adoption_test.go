//go:build realswitch

package realswitch_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/realswitch"
)

// TestAdoptionAfterKill: the controller is killed (SIGKILL) while a
// callback is bridged, and restarted on the same address, as the same
// owner. Restarted after B has hung up, it adopts the callback and ends
// it; restarted at once, it adopts the live call, and DELETE then hangs up
// both legs. Either way the history shows the adoption and each leg has
// exactly one CDR. It kills the controller, so it runs on an Env of its
// own.
func TestAdoptionAfterKill(t *testing.T) {
	t.Parallel()
	own := startOwn(t, realswitch.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	acct, err := own.NewAccount(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}

	// bridgedThenKilled places a callback, waits until it is bridged and
	// kills the controller.
	bridgedThenKilled := func(a, b string) *callbridge.Callback {
		t.Helper()
		cb, err := acct.CreateCallback(ctx, realswitch.CallbackRequest{A: a, B: b})
		if err != nil {
			t.Fatal(err)
		}
		if cb, err = acct.WaitCallback(ctx, cb.ID, realswitch.Status(callbridge.CallbackBridged)); err != nil {
			t.Fatal(err)
		}
		own.Controller.Kill()
		return cb
	}

	t.Run("restarted after the call ended", func(t *testing.T) {
		a, b := realswitch.Number(540, realswitch.Answer), realswitch.Number(541, realswitch.Hold(3))
		cb := bridgedThenKilled(a, b)
		callB, err := own.Carrier.WaitCall(ctx, realswitch.Digits(b), realswitch.Call.Ended)
		if err != nil {
			t.Fatal(err)
		}
		talk, _ := callB.Talk()
		t.Logf("B hung up after %v while no controller ran", talk.Round(time.Millisecond))
		if err := own.StartController(); err != nil {
			t.Fatal(err)
		}
		if cb, err = acct.WaitCallback(ctx, cb.ID, realswitch.Ended); err != nil {
			t.Fatal(err)
		}
		if cb.Status != callbridge.CallbackCompleted {
			t.Errorf("status %s %s, want completed", cb.Status, cb.Reason)
		}
		adopted(t, cb)
		hungUpBySwitch(ctx, t, own, "A", a)
		oneCDRPerLeg(ctx, t, own, acct, cb)
	})

	t.Run("restarted at once", func(t *testing.T) {
		a, b := realswitch.Number(542, realswitch.Answer), realswitch.Number(543, realswitch.Answer)
		cb := bridgedThenKilled(a, b)
		if err := own.StartController(); err != nil {
			t.Fatal(err)
		}
		cb, err := acct.WaitCallback(ctx, cb.ID, func(cb *callbridge.Callback) bool { return adoption(cb) != "" })
		if err != nil {
			t.Fatal(err)
		}
		if cb.Status != callbridge.CallbackBridged {
			t.Errorf("adopted callback is %s %s, want still bridged", cb.Status, cb.Reason)
		}
		adopted(t, cb)
		if _, err := acct.CancelCallback(ctx, cb.ID); err != nil {
			t.Fatal(err)
		}
		if cb, err = acct.WaitCallback(ctx, cb.ID, realswitch.Ended); err != nil {
			t.Fatal(err)
		}
		t.Logf("after DELETE: %s %s", cb.Status, cb.Reason)
		hungUpBySwitch(ctx, t, own, "A", a)
		hungUpBySwitch(ctx, t, own, "B", b)
		oneCDRPerLeg(ctx, t, own, acct, cb)
	})
}

// adoption returns the detail of the callback's reconciled event that
// records its adoption, "" when there is none.
func adoption(cb *callbridge.Callback) string {
	for _, e := range cb.Events {
		if e.Type == callbridge.EventReconciled && strings.HasPrefix(e.Detail, "adopted by ") {
			return e.Detail
		}
	}
	return ""
}

func adopted(t *testing.T, cb *callbridge.Callback) {
	t.Helper()
	d := adoption(cb)
	if d == "" {
		t.Errorf("history has no adoption: %s", history(cb))
		return
	}
	t.Logf("history: %s", d)
}

func history(cb *callbridge.Callback) string {
	var b strings.Builder
	for _, e := range cb.Events {
		fmt.Fprintf(&b, "\n  %s %s %s %s %s", e.Type, e.Status, e.Leg, e.Reason, e.Detail)
	}
	return b.String()
}

// hungUpBySwitch checks the carrier saw FreeSWITCH end the leg to number
// with a BYE.
func hungUpBySwitch(ctx context.Context, t *testing.T, env *realswitch.Env, leg, number string) {
	t.Helper()
	c, err := env.Carrier.WaitCall(ctx, realswitch.Digits(number), realswitch.Call.Ended)
	if err != nil {
		t.Errorf("leg %s: %v", leg, err)
		return
	}
	bye, ok := c.Bye()
	if !ok || bye.Sent {
		t.Errorf("leg %s: no BYE from FreeSWITCH (BYE %v, sent by the carrier %v)", leg, ok, bye.Sent)
		return
	}
	talk, _ := c.Talk()
	t.Logf("leg %s: FreeSWITCH hung up with a BYE after %v of talk", leg, talk.Round(time.Millisecond))
}

// oneCDRPerLeg waits for the callback's CDRs and checks there is exactly
// one for each of its legs, and still one a moment later.
func oneCDRPerLeg(ctx context.Context, t *testing.T, env *realswitch.Env, acct *realswitch.Client, cb *callbridge.Callback) {
	t.Helper()
	count := func() (map[string][]*callbridge.CDR, error) {
		cdrs, err := env.Admin.AccountCDRs(ctx, acct.AccountID, url.Values{"callback_id": {cb.ID}})
		by := map[string][]*callbridge.CDR{}
		for _, c := range cdrs {
			by[c.UUID] = append(by[c.UUID], c)
		}
		return by, err
	}
	var by map[string][]*callbridge.CDR
	for {
		var err error
		if by, err = count(); err != nil {
			t.Fatal(err)
		}
		if len(by) >= len(cb.Legs) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("CDRs of %d legs, want %d", len(by), len(cb.Legs))
		case <-time.After(200 * time.Millisecond):
		}
	}
	time.Sleep(3 * time.Second) // a second CDR of a leg would show by now
	by, err := count()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range cb.Legs {
		cdrs := by[l.UUID]
		if len(cdrs) != 1 {
			t.Errorf("leg %s (%s): %d CDRs, want 1", l.Leg, l.UUID, len(cdrs))
			continue
		}
		c := cdrs[0]
		t.Logf("leg %s CDR: cause %s q850 %d, bill %d ms, duration %d ms", l.Leg, c.HangupCause, c.Q850, c.BillMS, c.DurationMS)
	}
	if len(by) != len(cb.Legs) {
		t.Errorf("CDRs of %d channels, want the %d legs", len(by), len(cb.Legs))
	}
}
