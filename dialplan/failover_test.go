package dialplan

import (
	"bytes"
	"strings"
	"testing"

	"callbridge"
)

// carrierCauses are the causes that say a carrier could not carry a call,
// as FreeSWITCH 1.10.12 reported them (realswitch/failover_test.go): a
// carrier's 503 is NORMAL_TEMPORARY_FAILURE, its 408
// RECOVERY_ON_TIMER_EXPIRE, a gateway whose ping failed GATEWAY_DOWN.
var carrierCauses = []string{"NORMAL_TEMPORARY_FAILURE", "GATEWAY_DOWN", "NO_ROUTE_DESTINATION", "RECOVERY_ON_TIMER_EXPIRE", "DESTINATION_OUT_OF_ORDER"}

// TestFailoverOneGateway: one gateway through Failover renders exactly the
// bridge of a plain route, so wiring Failover with the configured gateway
// changes nothing on the wire.
func TestFailoverOneGateway(t *testing.T) {
	req := &Request{Destination: testX, DestinationRaw: testX, Caller: testA, Context: "public", UniqueID: testBinding}
	d := Decide(req, line(binding(callbridge.ModeAXB, testA, testB)), testNow)
	plain, err := Render(nil, req, d, &Options{})
	if err != nil {
		t.Fatal(err)
	}
	one, err := Render(nil, req, d.Failover([]string{d.Gateway}, carrierCauses), &Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain, one) {
		t.Errorf("one gateway through Failover:\n%s\nplain route:\n%s", one, plain)
	}
}

// TestFailoverBridge checks the sequential bridge: every gateway in order,
// the failover causes in fail_on_single_reject (negated), the call ending
// with the last attempt's cause (continue_on_fail=false) and the caller
// hung up after the bridge.
func TestFailoverBridge(t *testing.T) {
	req := &Request{Destination: testX, DestinationRaw: testX, Caller: testA, Context: "public", UniqueID: testBinding}
	d := Decide(req, line(binding(callbridge.ModeAXB, testA, testB)), testNow)
	out, err := Render(nil, req, d.Failover([]string{"cheap", "dear"}, carrierCauses), &Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkDocument(t, out)
	s := string(out)
	for _, want := range []string{
		`data="hangup_after_bridge=true"`,
		`data="continue_on_fail=false"`,
		",leg_timeout=30,fail_on_single_reject=&apos;!NORMAL_TEMPORARY_FAILURE,GATEWAY_DOWN,NO_ROUTE_DESTINATION,RECOVERY_ON_TIMER_EXPIRE,DESTINATION_OUT_OF_ORDER&apos;,callbridge_leg=outbound,",
		"&apos;}sofia/gateway/cheap/4917022222|sofia/gateway/dear/4917022222\"/>",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("document lacks %s:\n%s", want, s)
		}
	}
	if n := strings.Count(s, `application="bridge"`); n != 1 {
		t.Errorf("%d bridge actions, want 1", n)
	}
}

// TestFailoverRefusal: a refusal stays a refusal.
func TestFailoverRefusal(t *testing.T) {
	d := Decision{Reason: ReasonNoBinding, X: testX}
	if got := d.Failover([]string{"a", "b"}, carrierCauses); got.Gateways != nil || got.Gateway != "" {
		t.Errorf("got %+v, want the refusal unchanged", got)
	}
}

// TestCausesDistinct: every cause is listed once, and only NONE is found
// inside another cause's name (which checkFailover guards against).
func TestCausesDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range fsCauses {
		if seen[c] {
			t.Errorf("%s listed twice", c)
		}
		seen[c] = true
		for _, o := range fsCauses {
			if o != c && strings.Contains(o, c) && c != "NONE" {
				t.Errorf("%s is inside %s", c, o)
			}
		}
	}
}
