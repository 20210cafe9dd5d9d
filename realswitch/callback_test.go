//go:build realswitch

package realswitch_test

import (
	"context"
	"testing"
	"time"

	"callbridge"
	"callbridge/realswitch"
)

func TestCallbackCompleted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	acct, err := env.NewAccount(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a, b := realswitch.Number(1, realswitch.Answer), realswitch.Number(1, realswitch.Hold(4))
	cb, err := acct.CreateCallback(ctx, realswitch.CallbackRequest{A: a, B: b})
	if err != nil {
		t.Fatal(err)
	}
	cb, err = acct.WaitCallback(ctx, cb.ID, realswitch.Ended)
	if err != nil {
		t.Fatal(err)
	}
	if cb.Status != callbridge.CallbackCompleted {
		t.Errorf("status %s %s, want completed", cb.Status, cb.Reason)
	}
	callB, err := env.Carrier.WaitCall(ctx, realswitch.Digits(b), realswitch.Call.Ended)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := callB.Talk(); !ok || d < 3900*time.Millisecond || d > 4500*time.Millisecond {
		t.Errorf("B talked %v (%v) as sipp saw it, want 4 s", d, ok)
	}
}

// TestInboundUnknownNumber: a call to a number nobody owns is refused
// with 404 by the controller's dialplan.
func TestInboundUnknownNumber(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := realswitch.Dial(ctx, env.Switch.ExternalSIP, "+4915199990000", realswitch.Number(2, realswitch.Answer), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := c.Final(); !ok || f.Status != 404 {
		t.Errorf("final answer %d (%v), want 404", f.Status, ok)
	}
}
