//go:build realswitch

package realswitch_test

import (
	"context"
	"testing"
	"time"

	"callbridge/realswitch"
)

// TestInboundUnknownNumber: a carrier's call to a number no account owns
// is refused with 404 (UNALLOCATED_NUMBER) by the controller's dialplan.
func TestInboundUnknownNumber(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := realswitch.Dial(ctx, env.Switch.ExternalSIP, "+4915199990000", realswitch.Number(140, realswitch.Answer), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := c.Final(); !ok || f.Status != 404 {
		t.Errorf("final answer %d (%v), want 404", f.Status, ok)
	}
}
