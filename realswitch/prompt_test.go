//go:build realswitch

package realswitch_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"callbridge"
	"callbridge/realswitch"
)

// TestFailurePromptHeard: when B is busy, A hears the whole file
// CALLBRIDGE_PROMPT_B_BUSY names (the harness makes it under FreeSWITCH's
// state directory), then FreeSWITCH hangs A up: the prompt is the only
// audio A is sent, so FreeSWITCH's count of RTP packets to A measures it.
// (With a timer instead, sched_hangup, a loaded node cut the prompt to
// under half a second.)
func TestFailurePromptHeard(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	acct, err := env.NewAccount(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a, b := realswitch.Number(550, realswitch.Answer), realswitch.Number(551, realswitch.Busy)
	cb, err := acct.CreateCallback(ctx, realswitch.CallbackRequest{A: a, B: b})
	if err != nil {
		t.Fatal(err)
	}
	if cb, err = acct.WaitCallback(ctx, cb.ID, realswitch.Ended); err != nil {
		t.Fatal(err)
	}
	if cb.Status != callbridge.CallbackFailed || cb.Reason != callbridge.ReasonBBusy {
		t.Errorf("callback %s %s, want failed b_busy", cb.Status, cb.Reason)
	}
	var legA *callbridge.CallbackLeg
	for _, l := range cb.Legs {
		if l.Leg == callbridge.LegA {
			legA = l
		}
	}
	if legA == nil {
		t.Fatal("no leg A")
	}
	hangup, err := env.Switch.Hangup(ctx, legA.UUID)
	if err != nil {
		t.Fatal(err)
	}
	callA, err := env.Carrier.WaitCall(ctx, realswitch.Digits(a), realswitch.Call.Ended)
	if err != nil {
		t.Fatal(err)
	}
	talk, _ := callA.Talk()
	sent, _ := strconv.Atoi(hangup.Var("rtp_audio_out_packet_count"))
	t.Logf("A: %d RTP packets sent to A by FreeSWITCH in %v of call; hung up %s", sent, talk.Round(time.Millisecond), hangup.Var("hangup_cause"))
	// 50 packets a second, all of the prompt's: FreeSWITCH hangs A up
	// only once it has played (one packet of slack for the stamps).
	if want := int(realswitch.PromptLength/(20*time.Millisecond)) - 1; sent < want {
		t.Errorf("FreeSWITCH sent A %d RTP packets, want the whole prompt, %d: A's prompt was cut", sent, want)
	}
	if bye, ok := callA.Bye(); !ok || bye.Sent {
		t.Errorf("A: want a BYE from FreeSWITCH after the prompt (BYE %v, sent by the carrier %v)", ok, bye.Sent)
	}
}
