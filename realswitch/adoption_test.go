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
	"callbridge/internal/wait"
	"callbridge/postgres"
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
// one for each of its legs, once nothing is left that could write a
// second: no record FreeSWITCH keeps of a leg (the pipeline deletes it
// after committing its CDR) and no live row the sweep could estimate.
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
	db, err := postgres.Open(ctx, env.DatabaseURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ids []string
	for _, l := range cb.Legs {
		ids = append(ids, l.UUID)
	}
	wait.ForState(t, "a CDR of every leg and no source of another", func() (bool, string) {
		by, err := count()
		if err != nil {
			t.Fatal(err)
		}
		if len(by) < len(cb.Legs) {
			return false, fmt.Sprintf("CDRs of %d legs, want %d", len(by), len(cb.Legs))
		}
		kept, err := env.Switch.API(ctx, "hash_dump db "+callbridge.CDRHookRealm)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if strings.Contains(kept, id) {
				return false, "FreeSWITCH still keeps the record of leg " + id
			}
		}
		live, err := postgres.NewCDRStore(db).LiveChannelsByUUID(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		return len(live) == 0, fmt.Sprintf("%d legs still live in the database", len(live))
	}, wait.Every(200*time.Millisecond))
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
