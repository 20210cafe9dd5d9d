package flow

import (
	"slices"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/routing"
)

// testRoute is a route plan's answer for a leg: cheap, then solid, then
// spare, at most 3 attempts in 60 s.
func testRoute(t *testing.T, gateways ...string) Route {
	t.Helper()
	p, err := routing.NewPolicy(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if gateways == nil {
		gateways = []string{"cheap", "solid"}
	}
	return Route{Planned: true, Plan: "default", Gateways: gateways, MaxAttempts: 3, Budget: time.Minute, Policy: p}
}

func sipHangup(d time.Duration, uuid, cause string, sip int) []step {
	return at(d, EventHangup{UUID: uuid, At: t0.Add(d), Cause: cause, SIP: sip})
}

// TestNextFailover drives routed legs through their carrier attempts:
// which endings fail over to the next gateway, and which end the leg as
// they would without a route plan.
func TestNextFailover(t *testing.T) {
	logTransitions(t)
	const (
		originateA1 = "originate a uuid= timeout=30s limit=1h0m0s via=cheap#1"
		originateA2 = "originate a uuid= timeout=30s limit=1h0m0s again via=solid#2"
		a503        = "save leg=a/ua hangup=+1s cause=NORMAL_TEMPORARY_FAILURE +leg_hangup(a):NORMAL_TEMPORARY_FAILURE" +
			" +gateway_attempt(a)[cheap#1 NORMAL_TEMPORARY_FAILURE 503 1000ms]:carrier failure"
		endCheapFailed = "end_attempt a ua cheap failed=true"
		failoverA      = "failover a cheap->solid#2 NORMAL_TEMPORARY_FAILURE sip=503"
		saveFailoverA  = "save +failover(a)[solid#2 NORMAL_TEMPORARY_FAILURE 503 0ms]:cheap failed (NORMAL_TEMPORARY_FAILURE, SIP 503); trying solid, attempt 2 of 2"
	)
	routed := func(gateways ...string) func(*State, *testing.T) {
		return func(s *State, t *testing.T) {
			s.A.Route, s.B.Route = testRoute(t, gateways...), testRoute(t, gateways...)
		}
	}
	placed := steps(at(0, EventPlaced{Leg: "a", UUID: "ua"}, EventSeen{UUID: "ua"}))
	tests := []struct {
		name   string
		route  func(*State, *testing.T)
		cfg    func(*Config)
		given  []step
		when   []step
		phase  Phase
		status callbridge.CallbackStatus
		reason callbridge.FailReason
		acts   []string
	}{
		{name: "A goes through the first gateway", route: routed(), when: start, phase: PhaseCallingA, status: "calling_a",
			acts: []string{"acquire", originateA1}},
		{name: "A: 503 fails over to the next gateway", route: routed(), given: steps(start, placed),
			when: sipHangup(time.Second, "ua", "NORMAL_TEMPORARY_FAILURE", 503), phase: PhaseCallingA, status: "calling_a",
			acts: []string{a503, endCheapFailed, failoverA, saveFailoverA,
				"originate a uuid= timeout=30s limit=1h0m0s again via=solid#2"}},
		{name: "A: 503 then the next gateway answers", route: routed(),
			given: steps(start, placed, sipHangup(time.Second, "ua", "NORMAL_TEMPORARY_FAILURE", 503), at(time.Second, EventPlaced{Leg: "a", UUID: "ua2"})),
			when:  at(4*time.Second, EventSeen{UUID: "ua2"}, EventAnswered{UUID: "ua2", At: t0.Add(4 * time.Second)}),
			phase: PhaseCallingB, status: "calling_b",
			acts: []string{"save leg=a/ua2 answered=+4s +leg_answered(a) +gateway_attempt(a)[solid#2  0 3000ms]:answered",
				saveAAnswered, "prompt ua2 /s/ringback.wav ringback", "originate b uuid= timeout=20s limit=1h0m0s status=calling_b via=cheap#1"}},
		{name: "A: busy does not fail over", route: routed(), given: steps(start, placed),
			when: sipHangup(time.Second, "ua", "USER_BUSY", 486), phase: PhaseDone, status: "failed", reason: "a_busy",
			acts: []string{"save leg=a/ua hangup=+1s cause=USER_BUSY +leg_hangup(a):USER_BUSY +gateway_attempt(a)[cheap#1 USER_BUSY 486 1000ms]:stop",
				"end_attempt a ua cheap failed=false", `save status=failed reason=a_busy detail="A: USER_BUSY"`, "wait_legs +35s"}},
		{name: "A: no answer does not fail over", route: routed(), given: steps(start, placed),
			when: at(30*time.Second, EventJobFailed{UUID: "ua", Cause: "NO_ANSWER", Detail: "-ERR NO_ANSWER"}), phase: PhaseDone, status: "failed", reason: "a_no_answer",
			acts: []string{"save leg=a/ua hangup=+30s cause=NO_ANSWER +leg_hangup(a):originate: -ERR NO_ANSWER +gateway_attempt(a)[cheap#1 NO_ANSWER 0 30000ms]:stop",
				"end_attempt a ua cheap failed=false", `save status=failed reason=a_no_answer detail="A: NO_ANSWER"`, "wait_legs +1m4s"}},
		{name: "A: a DOWN gateway's -ERR GATEWAY_DOWN fails over", route: routed(), given: start,
			when:  at(0, EventOriginateFailed{Leg: "a", UUID: "ua", Cause: "GATEWAY_DOWN", Detail: "-ERR GATEWAY_DOWN"}),
			phase: PhaseCallingA, status: "calling_a",
			acts: []string{"save leg=a/ua hangup=+0s cause=GATEWAY_DOWN +leg_hangup(a):originate: -ERR GATEWAY_DOWN +gateway_attempt(a)[cheap#1 GATEWAY_DOWN 0 0ms]:carrier failure",
				"end_attempt a ua cheap failed=true", "failover a cheap->solid#2 GATEWAY_DOWN sip=0",
				"save +failover(a)[solid#2 GATEWAY_DOWN 0 0ms]:cheap failed (GATEWAY_DOWN); trying solid, attempt 2 of 2",
				"originate a uuid= timeout=30s limit=1h0m0s again via=solid#2"}},
		{name: "A: a gateway the tracker refuses is skipped", route: routed(), given: start,
			when:  at(0, EventGatewayRefused{Leg: "a", Gateway: "cheap", Reason: "circuit_open"}),
			phase: PhaseCallingA, status: "calling_a",
			acts: []string{"save +gateway_attempt(a)[cheap#1  0 0ms]:skipped: circuit_open",
				"failover a cheap->solid#2 NORMAL_CIRCUIT_CONGESTION sip=0",
				"save +failover(a)[solid#2 NORMAL_CIRCUIT_CONGESTION 0 0ms]:cheap failed (NORMAL_CIRCUIT_CONGESTION); trying solid, attempt 2 of 2",
				"originate a uuid= timeout=30s limit=1h0m0s via=solid#2"}},
		{name: "A: every carrier refuses: the leg's own failure", route: routed(),
			given: steps(start, placed, sipHangup(time.Second, "ua", "NORMAL_TEMPORARY_FAILURE", 503), at(time.Second, EventPlaced{Leg: "a", UUID: "ua2"}, EventSeen{UUID: "ua2"})),
			when:  sipHangup(2*time.Second, "ua2", "NORMAL_TEMPORARY_FAILURE", 503),
			phase: PhaseDone, status: "failed", reason: "node_unavailable",
			acts: []string{"save leg=a/ua2 hangup=+2s cause=NORMAL_TEMPORARY_FAILURE +leg_hangup(a):NORMAL_TEMPORARY_FAILURE +gateway_attempt(a)[solid#2 NORMAL_TEMPORARY_FAILURE 503 1000ms]:carrier failure",
				"end_attempt a ua2 solid failed=true",
				"save +failover(a)[solid#2 NORMAL_TEMPORARY_FAILURE 503 0ms]:no failover: no gateway left",
				`save status=failed reason=node_unavailable detail="A: NORMAL_TEMPORARY_FAILURE"`, "wait_legs +36s"}},
		{name: "A: max attempts reached", route: func(s *State, t *testing.T) {
			s.A.Route = testRoute(t, "cheap", "solid", "spare")
			s.A.Route.MaxAttempts = 1
		}, given: steps(start, placed),
			when:  sipHangup(time.Second, "ua", "NORMAL_TEMPORARY_FAILURE", 503),
			phase: PhaseDone, status: "failed", reason: "node_unavailable",
			acts: []string{a503, endCheapFailed,
				"save +failover(a)[cheap#1 NORMAL_TEMPORARY_FAILURE 503 0ms]:no failover: max attempts (1) reached",
				`save status=failed reason=node_unavailable detail="A: NORMAL_TEMPORARY_FAILURE"`, "wait_legs +35s"}},
		{name: "A: post-dial budget spent", route: func(s *State, t *testing.T) {
			s.A.Route = testRoute(t)
			s.A.Route.Budget = 10 * time.Second
		}, given: steps(start, placed),
			when:  at(12*time.Second, EventHangup{UUID: "ua", At: t0.Add(12 * time.Second), Cause: "RECOVERY_ON_TIMER_EXPIRE", SIP: 408}),
			phase: PhaseDone, status: "failed", reason: "a_no_answer",
			acts: []string{"save leg=a/ua hangup=+12s cause=RECOVERY_ON_TIMER_EXPIRE +leg_hangup(a):RECOVERY_ON_TIMER_EXPIRE +gateway_attempt(a)[cheap#1 RECOVERY_ON_TIMER_EXPIRE 408 12000ms]:carrier failure",
				"end_attempt a ua cheap failed=true",
				"save +failover(a)[cheap#1 RECOVERY_ON_TIMER_EXPIRE 408 0ms]:no failover: post-dial budget 10s spent",
				`save status=failed reason=a_no_answer detail="A: RECOVERY_ON_TIMER_EXPIRE"`, "wait_legs +46s"}},
		{name: "A: the next attempt rings only what is left of the budget", route: func(s *State, t *testing.T) {
			s.A.Route = testRoute(t)
			s.A.Route.Budget = 20 * time.Second
		}, given: steps(start, placed),
			when:  sipHangup(8*time.Second, "ua", "NORMAL_TEMPORARY_FAILURE", 503),
			phase: PhaseCallingA, status: "calling_a",
			acts: []string{"save leg=a/ua hangup=+8s cause=NORMAL_TEMPORARY_FAILURE +leg_hangup(a):NORMAL_TEMPORARY_FAILURE +gateway_attempt(a)[cheap#1 NORMAL_TEMPORARY_FAILURE 503 8000ms]:carrier failure",
				endCheapFailed, failoverA, saveFailoverA, "originate a uuid= timeout=12s limit=1h0m0s again via=solid#2"}},
		{name: "A: a node refusal is placed again through the same gateway", route: routed(), given: start,
			when:  at(0, EventOriginateFailed{Leg: "a", UUID: "ua", Cause: "DESTINATION_OUT_OF_ORDER", Detail: "-ERR DESTINATION_OUT_OF_ORDER"}),
			phase: PhaseCallingA, status: "calling_a",
			acts: []string{"save leg=a/ua hangup=+0s cause=DESTINATION_OUT_OF_ORDER +leg_hangup(a):originate: -ERR DESTINATION_OUT_OF_ORDER +gateway_attempt(a)[cheap#1 DESTINATION_OUT_OF_ORDER 0 0ms]:refused by the node",
				"end_attempt a ua cheap failed=false", "refused a ua DESTINATION_OUT_OF_ORDER n=1 backoff=100ms deadline=+1m0s"}},
		{name: "A: placed again after a node refusal, through the same gateway", route: routed(),
			given: steps(start, at(0, EventOriginateFailed{Leg: "a", UUID: "ua", Cause: "DESTINATION_OUT_OF_ORDER", Detail: "-ERR DESTINATION_OUT_OF_ORDER"})),
			when:  at(200*time.Millisecond, EventRetryDue{Leg: "a"}, EventAcquired{Node: "n1"}),
			phase: PhaseCallingA, status: "calling_a",
			acts: []string{"acquire", "originate a uuid= timeout=30s limit=1h0m0s again via=cheap#1"}},
		{name: "A: no route for the number", route: func(s *State, t *testing.T) {
			s.A.Route = Route{Planned: true, Plan: "default", NoneCause: "NO_ROUTE_DESTINATION"}
		}, when: start, phase: PhaseDone, status: "failed", reason: "a_rejected",
			acts: []string{"acquire", "save +leg_hangup(a):NO_ROUTE_DESTINATION: route plan default has no gateway for the number",
				`save status=failed reason=a_rejected detail="A: NO_ROUTE_DESTINATION"`, "wait_legs +34s"}},
		{name: "A: prepaid failover asks for both grants again", route: routed(), cfg: func(c *Config) { c.PerLeg = true },
			given: steps(at(0, EventStart{}, EventAcquired{Node: "n1"}, EventAuthorized{A: &EventGrant{UUID: "ua", Grant: time.Hour, Reserved: true},
				B: &EventGrant{UUID: "ub", Grant: time.Hour, Reserved: true}}), placed),
			when:  sipHangup(time.Second, "ua", "NORMAL_TEMPORARY_FAILURE", 503),
			phase: PhaseAuthorizing, status: "calling_a",
			acts: []string{a503, endCheapFailed, failoverA, saveFailoverA, "release a ua", "release b ub",
				"authorize both a= b= max=1h0m0s ring_b=20s"}},
		{name: "B: 503 fails over without the prompt again", route: routed(), given: placedB,
			when:  sipHangup(4*time.Second, "ub", "NORMAL_TEMPORARY_FAILURE", 503),
			phase: PhaseCallingB, status: "calling_b",
			acts: []string{"save leg=b/ub hangup=+4s cause=NORMAL_TEMPORARY_FAILURE +leg_hangup(b):NORMAL_TEMPORARY_FAILURE +gateway_attempt(b)[cheap#1 NORMAL_TEMPORARY_FAILURE 503 1000ms]:carrier failure",
				"end_attempt b ub cheap failed=true", "failover b cheap->solid#2 NORMAL_TEMPORARY_FAILURE sip=503",
				"save +failover(b)[solid#2 NORMAL_TEMPORARY_FAILURE 503 0ms]:cheap failed (NORMAL_TEMPORARY_FAILURE, SIP 503); trying solid, attempt 2 of 2",
				"originate b uuid= timeout=20s limit=1h0m0s again via=solid#2"}},
		{name: "B: prepaid failover asks for B's grant again", route: routed(), cfg: func(c *Config) { c.PerLeg = true },
			given: steps(at(0, EventStart{}, EventAcquired{Node: "n1"}, EventAuthorized{A: &EventGrant{UUID: "ua", Grant: time.Hour, Reserved: true},
				B: &EventGrant{UUID: "ub", Grant: time.Hour, Reserved: true}}), placed,
				at(3*time.Second, EventAnswered{UUID: "ua", At: t0.Add(3 * time.Second)}, EventParked{UUID: "ua"}),
				at(3*time.Second, EventPlaced{Leg: "b", UUID: "ub"}, EventSeen{UUID: "ub"})),
			when:  sipHangup(4*time.Second, "ub", "NORMAL_TEMPORARY_FAILURE", 503),
			phase: PhaseAuthorizingB, status: "calling_b",
			acts: []string{"save leg=b/ub hangup=+4s cause=NORMAL_TEMPORARY_FAILURE +leg_hangup(b):NORMAL_TEMPORARY_FAILURE +gateway_attempt(b)[cheap#1 NORMAL_TEMPORARY_FAILURE 503 1000ms]:carrier failure",
				"end_attempt b ub cheap failed=true", "failover b cheap->solid#2 NORMAL_TEMPORARY_FAILURE sip=503",
				"save +failover(b)[solid#2 NORMAL_TEMPORARY_FAILURE 503 0ms]:cheap failed (NORMAL_TEMPORARY_FAILURE, SIP 503); trying solid, attempt 2 of 2",
				"release b ub", "authorize b b= max=1h0m0s"}},
		{name: "B: no route for the number", route: func(s *State, t *testing.T) {
			s.B.Route = Route{Planned: true, Plan: "default", NoneCause: "NO_ROUTE_DESTINATION"}
		}, given: steps(start, placed),
			when:  at(3*time.Second, EventAnswered{UUID: "ua", At: t0.Add(3 * time.Second)}, EventParked{UUID: "ua"}),
			phase: PhaseEnded, status: "failed", reason: "b_rejected",
			acts: []string{saveAnsweredA, saveAAnswered, promptA,
				"save +leg_hangup(b):NO_ROUTE_DESTINATION: route plan default has no gateway for the number",
				"failure_prompt ua /s/failed.wav after=4s kill=NORMAL_CLEARING",
				`save status=failed reason=b_rejected detail="B: NO_ROUTE_DESTINATION"`, "wait_legs +37s"}},
		{name: "B: busy does not fail over", route: routed(), given: placedB,
			when: sipHangup(4*time.Second, "ub", "USER_BUSY", 486), phase: PhaseEnded, status: "failed",
			acts: []string{"save leg=b/ub hangup=+4s cause=USER_BUSY +leg_hangup(b):USER_BUSY +gateway_attempt(b)[cheap#1 USER_BUSY 486 1000ms]:stop",
				"end_attempt b ub cheap failed=false", "failure_prompt ua /s/failed.wav after=4s kill=NORMAL_CLEARING",
				`save status=failed reason=b_busy detail="B: USER_BUSY"`, "wait_legs +38s"}},
		{name: "B: the answered attempt ends with the call, not as a failure", route: routed(), given: steps(bridged),
			when:  hangup(20*time.Second, "ub", "NORMAL_CLEARING"),
			phase: PhaseCheckingCancel, status: "bridged",
			acts: []string{"save leg=b/ub hangup=+20s cause=NORMAL_CLEARING +leg_hangup(b):NORMAL_CLEARING",
				"end_attempt b ub cheap failed=false", "kill a ua NORMAL_CLEARING", "check_cancel"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			s := NewState(testCallback(), cfg, false, t0)
			tt.route(&s, t)
			s, _ = drive(t, s, tt.given)
			s, acts := drive(t, s, tt.when)
			if s.Phase != tt.phase {
				t.Errorf("phase %s, want %s", s.Phase, tt.phase)
			}
			if s.Status != tt.status {
				t.Errorf("status %s, want %s", s.Status, tt.status)
			}
			if tt.reason != "" && !slices.Contains(acts, "save status=failed reason="+string(tt.reason)+` detail="`+strings.SplitN(last(acts, "save status="), `detail="`, 2)[1]) {
				t.Errorf("no failure with reason %s in %v", tt.reason, acts)
			}
			if !slices.Equal(acts, tt.acts) {
				t.Errorf("actions:\n  got  %s\n  want %s", strings.Join(acts, "\n       "), strings.Join(tt.acts, "\n       "))
			}
		})
	}
}

// last returns the last action that starts with prefix.
func last(acts []string, prefix string) string {
	for i := len(acts) - 1; i >= 0; i-- {
		if strings.HasPrefix(acts[i], prefix) {
			return acts[i]
		}
	}
	return `detail="`
}
