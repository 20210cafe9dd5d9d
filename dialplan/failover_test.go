package dialplan

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"callbridge"
)

// carrierCauses are the causes that say a carrier could not carry a call,
// as FreeSWITCH 1.10.12 reported them (realswitch/failover_test.go): a
// carrier's 503 is NORMAL_TEMPORARY_FAILURE, its 408
// RECOVERY_ON_TIMER_EXPIRE, a gateway whose ping failed GATEWAY_DOWN.
var carrierCauses = []string{"NORMAL_TEMPORARY_FAILURE", "GATEWAY_DOWN", "NO_ROUTE_DESTINATION", "RECOVERY_ON_TIMER_EXPIRE", "DESTINATION_OUT_OF_ORDER"}

// TestFailoverOneGateway: one gateway through Failover renders the bridge
// of a plain route with only the attempt's own variables added (gateway,
// attempt 1): a plan that keeps one gateway changes nothing else on the
// wire.
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
	tagged := bytes.Replace(plain, []byte("}sofia/gateway/"), []byte("}[callbridge_gateway=carrier-1,callbridge_attempt=1]sofia/gateway/"), 1)
	if !bytes.Equal(tagged, one) {
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
		"&apos;}[callbridge_gateway=cheap,callbridge_attempt=1]sofia/gateway/cheap/4917022222|[callbridge_gateway=dear,callbridge_attempt=2]sofia/gateway/dear/4917022222\"/>",
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

// TestFailoverPostDial: the plan's post-dial budget bounds every attempt's
// ring time when it is shorter than the ring timeout, never below 1 s.
func TestFailoverPostDial(t *testing.T) {
	req := &Request{Destination: testX, DestinationRaw: testX, Caller: testA, Context: "public", UniqueID: testBinding}
	d := Decide(req, line(binding(callbridge.ModeAXB, testA, testB)), testNow).Failover([]string{"cheap", "dear"}, carrierCauses)
	for _, tt := range []struct {
		budget time.Duration
		want   string
	}{
		{0, ",leg_timeout=30,"},
		{12 * time.Second, ",leg_timeout=12,"},
		{12500 * time.Millisecond, ",leg_timeout=12,"},
		{90 * time.Second, ",leg_timeout=30,"},
		{300 * time.Millisecond, ",leg_timeout=1,"},
	} {
		d.PostDial = tt.budget
		out, err := Render(nil, req, d, &Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), tt.want) {
			t.Errorf("budget %s: document lacks %s", tt.budget, tt.want)
		}
	}
}

// TestRefusalNoCarrier: a plan with no carrier left refuses with 503's
// cause, attributed to the account.
func TestRefusalNoCarrier(t *testing.T) {
	req := &Request{Destination: testX, DestinationRaw: testX, Caller: testA, Context: "public", UniqueID: testBinding}
	d := Decide(req, line(binding(callbridge.ModeAXB, testA, testB)), testNow).Refuse(ReasonNoCarrier)
	out, err := Render(nil, req, d, &Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkDocument(t, out)
	for _, want := range []string{`data="callbridge_refusal=no_carrier"`, `application="hangup" data="SERVICE_UNAVAILABLE"`, `callbridge_account=`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("document lacks %s:\n%s", want, out)
		}
	}
}
