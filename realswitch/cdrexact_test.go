//go:build realswitch

package realswitch_test

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"testing"
	"time"

	"callbridge"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/realswitch"
)

// TestCDRExactWhileControllerDown: the controller is killed while a
// callback is bridged and B hangs up while none runs. FreeSWITCH keeps B's
// CDR record (callbridge.CDRHook); the restarted controller collects it,
// so B's CDR has the talk time sipp measured and the cause FreeSWITCH
// reported, not an estimate running until the restart. It kills the
// controller, so it runs on an Env of its own.
func TestCDRExactWhileControllerDown(t *testing.T) {
	t.Parallel()
	own := startOwn(t, realswitch.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	acct, err := own.NewAccount(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a, b := realswitch.Number(170, realswitch.Answer), realswitch.Number(171, realswitch.Hold(3))
	cb, err := acct.CreateCallback(ctx, realswitch.CallbackRequest{A: a, B: b})
	if err != nil {
		t.Fatal(err)
	}
	if cb, err = acct.WaitCallback(ctx, cb.ID, realswitch.Status(callbridge.CallbackBridged)); err != nil {
		t.Fatal(err)
	}
	own.Controller.Kill()
	callB, err := own.Carrier.WaitCall(ctx, realswitch.Digits(b), realswitch.Call.Ended)
	if err != nil {
		t.Fatal(err)
	}
	talk, _ := callB.Talk()
	// An estimate would bill these seconds too.
	time.Sleep(5 * time.Second)
	if err := own.StartController(); err != nil {
		t.Fatal(err)
	}
	if cb, err = acct.WaitCallback(ctx, cb.ID, realswitch.Ended); err != nil {
		t.Fatal(err)
	}
	var legB string
	for _, l := range cb.Legs {
		if l.Leg == callbridge.LegB {
			legB = l.UUID
		}
	}
	fs, err := own.Switch.Hangup(ctx, legB)
	if err != nil {
		t.Fatal(err)
	}
	c := waitCDR(ctx, t, own, acct, cb.ID, legB)
	t.Logf("B: sipp talk %v; FreeSWITCH billmsec %s cause %s q850 %s; CDR bill %d ms cause %s q850 %d flags %v",
		talk.Round(time.Millisecond), fs.Var("billmsec"), fs.Get("Hangup-Cause"), fs.Var("hangup_cause_q850"),
		c.BillMS, c.HangupCause, c.Q850, c.Flags)
	if c.Flags.Has(callbridge.CDREstimated) {
		t.Errorf("B's CDR is estimated")
	}
	if d := time.Duration(c.BillMS)*time.Millisecond - talk; d < -100*time.Millisecond || d > 100*time.Millisecond {
		t.Errorf("B billed %d ms, sipp talked %v: off by %v", c.BillMS, talk, d)
	}
	if strconv.FormatInt(c.BillMS, 10) != fs.Var("billmsec") || c.HangupCause != fs.Get("Hangup-Cause") || strconv.Itoa(c.Q850) != fs.Var("hangup_cause_q850") {
		t.Errorf("CDR bill %d cause %s q850 %d, FreeSWITCH reported %s %s %s", c.BillMS, c.HangupCause, c.Q850,
			fs.Var("billmsec"), fs.Get("Hangup-Cause"), fs.Var("hangup_cause_q850"))
	}
	if c.AccountID != acct.AccountID || c.Callee != realswitch.Digits(b) || c.Gateway != "carrier" {
		t.Errorf("B's CDR: account %s callee %s gateway %s", c.AccountID, c.Callee, c.Gateway)
	}
	oneCDRPerLeg(ctx, t, own, acct, cb)
}

// TestCDRRefusedOriginate: FreeSWITCH refuses B's session (max-sessions
// 1, A holds the only one) and sends only the job's -ERR. B's leg gets its
// CDR at once, with that cause and no duration, and leaves live_channels.
func TestCDRRefusedOriginate(t *testing.T) {
	t.Parallel()
	own := startOwn(t, realswitch.Options{SwitchEnv: map[string]string{"FS_MAX_SESSIONS": "1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	acct, err := own.NewAccount(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a, b := realswitch.Number(172, realswitch.Answer), realswitch.Number(173, realswitch.Answer)
	cb, err := acct.CreateCallback(ctx, realswitch.CallbackRequest{A: a, B: b})
	if err != nil {
		t.Fatal(err)
	}
	if cb, err = acct.WaitCallback(ctx, cb.ID, realswitch.Ended); err != nil {
		t.Fatal(err)
	}
	ended := time.Now()
	var legB *callbridge.CallbackLeg
	for i := range cb.Legs {
		if cb.Legs[i].Leg == callbridge.LegB {
			legB = cb.Legs[i]
		}
	}
	if legB == nil {
		t.Fatalf("callback %s %s has no leg B: %s", cb.Status, cb.Reason, history(cb))
	}
	t.Logf("callback %s %s; B: %s", cb.Status, cb.Reason, legB.HangupCause)
	c := waitCDR(ctx, t, own, acct, cb.ID, legB.UUID)
	t.Logf("B's CDR %v after the callback ended: cause %s duration %d ms bill %d ms flags %v",
		time.Since(ended).Round(time.Millisecond), c.HangupCause, c.DurationMS, c.BillMS, c.Flags)
	if c.HangupCause != legB.HangupCause || c.HangupCause == "UNKNOWN" || c.DurationMS != 0 || c.BillMS != 0 ||
		c.Flags.Has(callbridge.CDREstimated) {
		t.Errorf("B's CDR: cause %s duration %d bill %d flags %v, want the refusal's cause %s, 0, 0, exact",
			c.HangupCause, c.DurationMS, c.BillMS, c.Flags, legB.HangupCause)
	}
	db, err := postgres.Open(ctx, own.DatabaseURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	live, err := postgres.NewCDRStore(db).LiveChannelsByUUID(ctx, []string{legB.UUID})
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 0 {
		t.Errorf("the refused leg is still in live_channels")
	}
}

// waitCDR waits for the CDR of channel id of a callback.
func waitCDR(ctx context.Context, t *testing.T, env *realswitch.Env, acct *realswitch.Client, callback, id string) *callbridge.CDR {
	t.Helper()
	var cdr *callbridge.CDR
	wait.ForState(t, "the CDR of "+id, func() (bool, string) {
		cdrs, err := env.Admin.AccountCDRs(ctx, acct.AccountID, url.Values{"callback_id": {callback}})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cdrs {
			if c.UUID == id {
				cdr = c
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d CDRs of the callback, none of it", len(cdrs))
	}, wait.Every(100*time.Millisecond))
	return cdr
}
