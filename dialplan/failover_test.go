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

// TestFailoverPostDialBudget: with two gateways or more the budget bounds
// the whole sequential bridge: the caller's leg is hung up NO_ANSWER
// when it runs out (a sched_hangup right before the bridge), unless the
// call was answered (sched_cancel on answer, set before a prepaid cap's
// own execute_on_answer so that it cancels only the budget: FreeSWITCH
// runs them in the order they were set). One gateway's leg_timeout is the
// budget already; without a budget nothing changes.
func TestFailoverPostDialBudget(t *testing.T) {
	req := &Request{Destination: testX, DestinationRaw: testX, Caller: testA, Context: "public", UniqueID: testBinding}
	routed := Decide(req, line(binding(callbridge.ModeAXB, testA, testB)), testNow)
	const cancel = `<action application="set" data="execute_on_answer_post_dial=sched_cancel"/>`
	for _, tt := range []struct {
		name     string
		gateways []string
		budget   time.Duration
		capped   bool
		want     string // the sched_hangup action; "" for none
	}{
		{"two gateways", []string{"cheap", "dear"}, 12500 * time.Millisecond, false, `<action application="sched_hangup" data="+12 NO_ANSWER"/>`},
		{"under a second", []string{"cheap", "dear"}, 300 * time.Millisecond, false, `<action application="sched_hangup" data="+1 NO_ANSWER"/>`},
		{"prepaid", []string{"cheap", "dear", "last"}, 40 * time.Second, true, `<action application="sched_hangup" data="+40 NO_ANSWER"/>`},
		{"one gateway", []string{"cheap"}, 12 * time.Second, true, ""},
		{"no budget", []string{"cheap", "dear"}, 0, true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := routed.Failover(tt.gateways, carrierCauses)
			d.PostDial = tt.budget
			if tt.capped {
				d.MaxDuration = 30 * time.Second
			}
			out, err := Render(nil, req, d, &Options{})
			if err != nil {
				t.Fatal(err)
			}
			checkDocument(t, out)
			s := string(out)
			if tt.want == "" {
				if strings.Contains(s, "sched_cancel") || strings.Contains(s, `application="sched_hangup"`) {
					t.Errorf("document times the bridge:\n%s", s)
				}
				return
			}
			hangup, bridge := strings.Index(s, tt.want), strings.Index(s, `<action application="bridge"`)
			if hangup < 0 || bridge < 0 || !strings.HasPrefix(strings.TrimLeft(s[hangup+len(tt.want):], " \n"), `<action application="bridge"`) {
				t.Errorf("document lacks %s right before the bridge:\n%s", tt.want, s)
			}
			c, capAt := strings.Index(s, cancel), strings.Index(s, `data="execute_on_answer=sched_hangup`)
			if c < 0 || c > hangup {
				t.Errorf("document lacks %s before the budget:\n%s", cancel, s)
			}
			if tt.capped && (capAt < 0 || capAt < c) {
				t.Errorf("the prepaid cap's execute_on_answer (at %d) is not set after the budget's cancellation (at %d):\n%s", capAt, c, s)
			}
		})
	}
	for _, bad := range []time.Duration{-time.Second, time.Hour + time.Second} {
		d := routed.Failover([]string{"cheap", "dear"}, carrierCauses)
		d.PostDial = bad
		if out, err := Render([]byte("x"), req, d, &Options{}); err == nil || string(out) != "x" {
			t.Errorf("budget %v: rendered %q, %v; want an error and dst unchanged", bad, out, err)
		}
	}
}
