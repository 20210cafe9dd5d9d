//go:build realswitch

package realswitch_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"callbridge"
	"callbridge/internal/wait"
	"callbridge/realswitch"
)

// TestCarrierGatewayPinged: the carrier gateway pings its proxy (OPTIONS
// every 30 s, freeswitch-conf's carrier.xml) and FreeSWITCH refuses every
// leg with DESTINATION_OUT_OF_ORDER once a ping goes unanswered. The
// carrier sipp answers: after the first ping the gateway is still UP and
// legs still go out.
func TestCarrierGatewayPinged(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pinged := regexp.MustCompile(`PingTime\s+([0-9.]+)`)
	var status string
	wait.ForState(t, "the carrier gateway's first ping", func() (bool, string) {
		out, err := env.Switch.API(ctx, "sofia status gateway carrier")
		if err != nil {
			t.Fatal(err)
		}
		if m := pinged.FindStringSubmatch(out); m != nil && m[1] != "0.00" {
			status = regexp.MustCompile(`(?m)^Status\s+(\S+)`).FindString(out)
			return true, ""
		}
		return false, "\n" + out
	}, wait.Within(90*time.Second), wait.Every(time.Second))
	if !regexp.MustCompile(`UP$`).MatchString(status) {
		t.Errorf("after its first ping the carrier gateway is %q, want UP", status)
	}
	acct := newAccount(t, ctx)
	cb, err := acct.CreateCallback(ctx, realswitch.CallbackRequest{A: realswitch.Number(150, realswitch.Busy), B: realswitch.Number(151, realswitch.Answer)})
	if err != nil {
		t.Fatal(err)
	}
	o := ended(t, ctx, acct, cb.ID)
	o.check(t, callbridge.CallbackFailed, callbridge.ReasonABusy)
}
