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
		endCheapFailed = "end_attempt a ua cheap failed"
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
				"end_attempt a ua cheap carried", `save status=failed reason=a_busy detail="A: USER_BUSY"`, "wait_legs +35s"}},
		{name: "A: no answer does not fail over", route: routed(), given: steps(start, placed),
			when: at(30*time.Second, EventJobFailed{UUID: "ua", Cause: "NO_ANSWER", Detail: "-ERR NO_ANSWER"}), phase: PhaseDone, status: "failed", reason: "a_no_answer",
			acts: []string{"save leg=a/ua hangup=+30s cause=NO_ANSWER +leg_hangup(a):originate: -ERR NO_ANSWER +gateway_attempt(a)[cheap#1 NO_ANSWER 0 30000ms]:stop",
				"end_attempt a ua cheap carried", `save status=failed reason=a_no_answer detail="A: NO_ANSWER"`, "wait_legs +1m4s"}},
		{name: "A: a DOWN gateway's -ERR GATEWAY_DOWN fails over", route: routed(), given: start,
			when:  at(0, EventOriginateFailed{Leg: "a", UUID: "ua", Cause: "GATEWAY_DOWN", Detail: "-ERR GATEWAY_DOWN"}),
			phase: PhaseCallingA, status: "calling_a",
			acts: []string{"save leg=a/ua hangup=+0s cause=GATEWAY_DOWN +leg_hangup(a):originate: -ERR GATEWAY_DOWN +gateway_attempt(a)[cheap#1 GATEWAY_DOWN 0 0ms]:carrier failure",
				"end_attempt a ua cheap failed", "failover a cheap->solid#2 GATEWAY_DOWN sip=0",
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
				"end_attempt a ua2 solid failed",
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
				"end_attempt a ua cheap failed",
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
				"end_attempt a ua cheap unknown", "refused a ua DESTINATION_OUT_OF_ORDER n=1 backoff=100ms deadline=+1m0s"}},
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
				"end_attempt b ub cheap failed", "failover b cheap->solid#2 NORMAL_TEMPORARY_FAILURE sip=503",
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
				"end_attempt b ub cheap failed", "failover b cheap->solid#2 NORMAL_TEMPORARY_FAILURE sip=503",
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
				"end_attempt b ub cheap carried", "failure_prompt ua /s/failed.wav after=4s kill=NORMAL_CLEARING",
				`save status=failed reason=b_busy detail="B: USER_BUSY"`, "wait_legs +38s"}},
		{name: "B: the answered attempt ends with the call, not as a failure", route: routed(), given: steps(bridged),
			when:  hangup(20*time.Second, "ub", "NORMAL_CLEARING"),
			phase: PhaseCheckingCancel, status: "bridged",
			acts: []string{"save leg=b/ub hangup=+20s cause=NORMAL_CLEARING +leg_hangup(b):NORMAL_CLEARING",
				"end_attempt b ub cheap carried", "kill a ua NORMAL_CLEARING", "check_cancel"}},
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

// TestNextRouteAtPlacement: with the engine resolving routes, each leg's
// route is asked for just before its first placement, which waits for
// it: B's once A has answered, so B goes through whatever the plan
// answers then (here cheap's breaker opened while A rang: solid only).
// Failovers and placements again after a node refusal keep the route.
func TestNextRouteAtPlacement(t *testing.T) {
	logTransitions(t)
	routed := func(c *Config) { c.Routed = true }
	routeA := at(0, EventRouted{Leg: "a", Route: testRoute(t)})
	placedA := steps(start, routeA, at(0, EventPlaced{Leg: "a", UUID: "ua"}, EventSeen{UUID: "ua"}))
	answeredA := steps(placedA, at(3*time.Second, EventAnswered{UUID: "ua", At: t0.Add(3 * time.Second)}, EventParked{UUID: "ua"}))
	tests := []struct {
		name   string
		cfg    func(*Config)
		given  []step
		when   []step
		phase  Phase
		status callbridge.CallbackStatus
		acts   []string
	}{
		{name: "A's route is asked for once it has a node", cfg: routed, when: start, phase: PhaseCallingA, status: "calling_a",
			acts: []string{"acquire", "route a 4930111"}},
		{name: "A is placed through the route's first gateway", cfg: routed, given: start, when: routeA,
			phase: PhaseCallingA, status: "calling_a", acts: []string{"originate a uuid= timeout=30s limit=1h0m0s via=cheap#1"}},
		{name: "A without a plan goes through the single gateway", cfg: routed, given: start, when: at(0, EventRouted{Leg: "a"}),
			phase: PhaseCallingA, status: "calling_a", acts: []string{"originate a uuid= timeout=30s limit=1h0m0s"}},
		{name: "B's route is asked for when A answers, not before", cfg: routed, given: placedA,
			when:  at(3*time.Second, EventAnswered{UUID: "ua", At: t0.Add(3 * time.Second)}, EventParked{UUID: "ua"}),
			phase: PhaseCallingB, status: "a_answered",
			acts: []string{"save leg=a/ua answered=+3s +leg_answered(a) +gateway_attempt(a)[cheap#1  0 3000ms]:answered",
				saveAAnswered, promptA, "route b 4930222"}},
		{name: "B goes through the plan's answer at B's time", cfg: routed, given: answeredA,
			when:  at(3*time.Second, EventRouted{Leg: "b", Route: testRoute(t, "solid")}),
			phase: PhaseCallingB, status: "calling_b",
			acts: []string{"originate b uuid= timeout=20s limit=1h0m0s status=calling_b via=solid#1"}},
		{name: "B: no route for the number at B's time", cfg: routed, given: answeredA,
			when:  at(3*time.Second, EventRouted{Leg: "b", Route: Route{Planned: true, Plan: "default", NoneCause: "NO_ROUTE_DESTINATION"}}),
			phase: PhaseEnded, status: "failed",
			acts: []string{"save +leg_hangup(b):NO_ROUTE_DESTINATION: route plan default has no gateway for the number",
				"failure_prompt ua /s/failed.wav after=4s kill=NORMAL_CLEARING",
				`save status=failed reason=b_rejected detail="B: NO_ROUTE_DESTINATION"`, "wait_legs +37s"}},
		{name: "B is not placed when A hung up while B was routed", cfg: routed, given: steps(answeredA, hangup(3*time.Second, "ua", "NORMAL_CLEARING")),
			when:  at(3*time.Second, EventRouted{Leg: "b", Route: testRoute(t)}),
			phase: PhaseDone, status: "failed", acts: nil},
		{name: "a failover keeps the route: no new resolution", cfg: routed, given: placedA,
			when:  sipHangup(time.Second, "ua", "NORMAL_TEMPORARY_FAILURE", 503),
			phase: PhaseCallingA, status: "calling_a",
			acts: []string{"save leg=a/ua hangup=+1s cause=NORMAL_TEMPORARY_FAILURE +leg_hangup(a):NORMAL_TEMPORARY_FAILURE" +
				" +gateway_attempt(a)[cheap#1 NORMAL_TEMPORARY_FAILURE 503 1000ms]:carrier failure",
				"end_attempt a ua cheap failed", "failover a cheap->solid#2 NORMAL_TEMPORARY_FAILURE sip=503",
				"save +failover(a)[solid#2 NORMAL_TEMPORARY_FAILURE 503 0ms]:cheap failed (NORMAL_TEMPORARY_FAILURE, SIP 503); trying solid, attempt 2 of 2",
				"originate a uuid= timeout=30s limit=1h0m0s again via=solid#2"}},
		{name: "a node refusal is placed again without a new resolution", cfg: routed,
			given: steps(start, routeA, at(0, EventOriginateFailed{Leg: "a", UUID: "ua", Cause: "DESTINATION_OUT_OF_ORDER", Detail: "-ERR DESTINATION_OUT_OF_ORDER"})),
			when:  at(200*time.Millisecond, EventRetryDue{Leg: "a"}, EventAcquired{Node: "n1"}),
			phase: PhaseCallingA, status: "calling_a",
			acts: []string{"acquire", "originate a uuid= timeout=30s limit=1h0m0s again via=cheap#1"}},
		{name: "prepaid: B's route is asked for after B's grant", cfg: func(c *Config) { c.Routed, c.PerLeg = true, true },
			given: steps(at(0, EventStart{}, EventAcquired{Node: "n1"}, EventAuthorized{A: &EventGrant{UUID: "ua", Grant: time.Hour, Reserved: true},
				B: &EventGrant{UUID: "ub", Grant: time.Hour, Reserved: true}}), routeA, at(0, EventPlaced{Leg: "a", UUID: "ua"}, EventSeen{UUID: "ua"}),
				at(3*time.Second, EventAnswered{UUID: "ua", At: t0.Add(3 * time.Second)}, EventParked{UUID: "ua"})),
			when:  at(3*time.Second, EventRouted{Leg: "b", Route: testRoute(t, "solid")}),
			phase: PhaseCallingB, status: "calling_b",
			acts: []string{"originate b uuid=ub timeout=20s limit=1h0m0s cap=1h0m0s status=calling_b via=solid#1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			tt.cfg(&cfg)
			s := NewState(testCallback(), cfg, false, t0)
			s, _ = drive(t, s, tt.given)
			s, acts := drive(t, s, tt.when)
			if s.Phase != tt.phase {
				t.Errorf("phase %s, want %s", s.Phase, tt.phase)
			}
			if s.Status != tt.status {
				t.Errorf("status %s, want %s", s.Status, tt.status)
			}
			if !slices.Equal(acts, tt.acts) {
				t.Errorf("actions:\n  got  %s\n  want %s", strings.Join(acts, "\n       "), strings.Join(tt.acts, "\n       "))
			}
		})
	}
}

// adoptedRouted is a callback adopted in calling_a whose A its
// controller placed through gateway attempts (gateway, start offset from
// t0; "!" marks one skipped), the last of them ringing.
func adoptedRouted(attempts ...string) func(*callbridge.Callback) {
	return func(cb *callbridge.Callback) {
		cb.Status, cb.Node = callbridge.CallbackCallingA, "n1"
		ringing := t0.Add(-2 * time.Second)
		var gw string
		for i, a := range attempts {
			name, off, _ := strings.Cut(a, "@")
			d, _ := time.ParseDuration(off)
			skipped := strings.HasPrefix(name, "!")
			name = strings.TrimPrefix(name, "!")
			at := t0.Add(d)
			if skipped {
				cb.Events = append(cb.Events, &callbridge.CallbackEvent{Type: callbridge.EventGatewayAttempt, Leg: "a", Attempt: 1, At: at,
					Gateway: name, GatewayAttempt: i + 1, Detail: "skipped: circuit_open"})
				continue
			}
			cb.Events = append(cb.Events, &callbridge.CallbackEvent{Type: callbridge.EventLegCreated, Leg: "a", Attempt: 1, At: at,
				Gateway: name, GatewayAttempt: i + 1})
			if i < len(attempts)-1 {
				cb.Events = append(cb.Events, &callbridge.CallbackEvent{Type: callbridge.EventGatewayAttempt, Leg: "a", Attempt: 1, At: at.Add(time.Second),
					Gateway: name, GatewayAttempt: i + 1, Cause: "NORMAL_TEMPORARY_FAILURE", SIPStatus: 503, Detail: "carrier failure"},
					&callbridge.CallbackEvent{Type: callbridge.EventFailover, Leg: "a", Attempt: 1, At: at.Add(time.Second),
						Gateway: "next", GatewayAttempt: i + 2})
			}
			gw = name
		}
		// An earlier attempt of the callback (a retry) does not count.
		cb.Events = append(cb.Events, &callbridge.CallbackEvent{Type: callbridge.EventLegCreated, Leg: "a", Attempt: 0, At: t0.Add(-time.Hour),
			Gateway: "old", GatewayAttempt: 1})
		cb.Legs = []*callbridge.CallbackLeg{{Leg: "a", UUID: "ua", Attempt: 1, Node: "n1", RingingAt: &ringing, Gateway: gw}}
	}
}

// TestNextAdoptedFailover: a leg another controller placed through a
// route plan goes on from the attempt its history records once adopted:
// its open attempt counts against its gateway from the adoption, its plan
// is resolved again, and a carrier failure fails over to the plan's next
// gateway not tried yet, within the plan's attempts and budget counted
// from the first attempt.
func TestNextAdoptedFailover(t *testing.T) {
	logTransitions(t)
	adopt := func(route Route) []step {
		return steps(at(0, EventStart{}, EventRouted{Leg: "a", Route: route}, EventAcquired{Node: "n1"}),
			at(0, EventChannels{Channels: map[string]string{"ua": "RINGING"}}))
	}
	plan := func(gateways ...string) Route { return testRoute(t, gateways...) }
	fail := sipHangup(time.Second, "ua", "NORMAL_TEMPORARY_FAILURE", 503)
	tests := []struct {
		name   string
		cb     func(*callbridge.Callback)
		cfg    func(*Config)
		given  []step
		when   []step
		phase  Phase
		status callbridge.CallbackStatus
		acts   []string
	}{
		{name: "the open attempt is held and the plan resolved again", cb: adoptedRouted("cheap@-10s"),
			when: at(0, EventStart{}), phase: PhaseAdopting, status: "calling_a",
			acts: []string{"hold_attempt a ua cheap", "route a 4930111", "attach n1"}},
		{name: "without a route plan engine, the attempt is held only", cb: adoptedRouted("cheap@-10s"), cfg: func(c *Config) { c.Routed = false },
			when: at(0, EventStart{}), phase: PhaseAdopting, status: "calling_a",
			acts: []string{"hold_attempt a ua cheap", "attach n1"}},
		{name: "a carrier failure fails over to the next gateway not tried", cb: adoptedRouted("cheap@-10s"),
			given: adopt(plan("solid", "cheap", "spare")), when: fail, phase: PhaseCallingA, status: "calling_a",
			acts: []string{"save leg=a/ua hangup=+1s cause=NORMAL_TEMPORARY_FAILURE +leg_hangup(a):NORMAL_TEMPORARY_FAILURE" +
				" +gateway_attempt(a)[cheap#1 NORMAL_TEMPORARY_FAILURE 503 11000ms]:carrier failure",
				"end_attempt a ua cheap failed", "failover a cheap->solid#2 NORMAL_TEMPORARY_FAILURE sip=503",
				"save +failover(a)[solid#2 NORMAL_TEMPORARY_FAILURE 503 0ms]:cheap failed (NORMAL_TEMPORARY_FAILURE, SIP 503); trying solid, attempt 2 of 3",
				"originate a uuid= timeout=30s limit=1h0m0s again via=solid#2"}},
		{name: "the attempts made keep their numbers: third after two", cb: adoptedRouted("cheap@-20s", "solid@-10s"),
			given: adopt(plan("cheap", "solid", "spare")), when: fail, phase: PhaseCallingA, status: "calling_a",
			acts: []string{"save leg=a/ua hangup=+1s cause=NORMAL_TEMPORARY_FAILURE +leg_hangup(a):NORMAL_TEMPORARY_FAILURE" +
				" +gateway_attempt(a)[solid#2 NORMAL_TEMPORARY_FAILURE 503 11000ms]:carrier failure",
				"end_attempt a ua solid failed", "failover a solid->spare#3 NORMAL_TEMPORARY_FAILURE sip=503",
				"save +failover(a)[spare#3 NORMAL_TEMPORARY_FAILURE 503 0ms]:solid failed (NORMAL_TEMPORARY_FAILURE, SIP 503); trying spare, attempt 3 of 3",
				"originate a uuid= timeout=30s limit=1h0m0s again via=spare#3"}},
		{name: "a skipped attempt counts", cb: adoptedRouted("!cheap@-10s", "solid@-10s"),
			given: adopt(plan("cheap", "solid", "spare")), when: fail, phase: PhaseCallingA, status: "calling_a",
			acts: []string{"save leg=a/ua hangup=+1s cause=NORMAL_TEMPORARY_FAILURE +leg_hangup(a):NORMAL_TEMPORARY_FAILURE" +
				" +gateway_attempt(a)[solid#2 NORMAL_TEMPORARY_FAILURE 503 11000ms]:carrier failure",
				"end_attempt a ua solid failed", "failover a solid->spare#3 NORMAL_TEMPORARY_FAILURE sip=503",
				"save +failover(a)[spare#3 NORMAL_TEMPORARY_FAILURE 503 0ms]:solid failed (NORMAL_TEMPORARY_FAILURE, SIP 503); trying spare, attempt 3 of 3",
				"originate a uuid= timeout=30s limit=1h0m0s again via=spare#3"}},
		{name: "max attempts count the attempts made", cb: adoptedRouted("cheap@-20s", "solid@-10s"),
			given: adopt(func() Route { r := plan("cheap", "solid", "spare"); r.MaxAttempts = 2; return r }()),
			when:  fail, phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua hangup=+1s cause=NORMAL_TEMPORARY_FAILURE +leg_hangup(a):NORMAL_TEMPORARY_FAILURE" +
				" +gateway_attempt(a)[solid#2 NORMAL_TEMPORARY_FAILURE 503 11000ms]:carrier failure",
				"end_attempt a ua solid failed",
				"save +failover(a)[solid#2 NORMAL_TEMPORARY_FAILURE 503 0ms]:no failover: max attempts (2) reached",
				`save status=failed reason=node_unavailable detail="A: NORMAL_TEMPORARY_FAILURE"`, "wait_legs +35s"}},
		{name: "the budget counts from the first attempt's start", cb: adoptedRouted("cheap@-65s", "solid@-10s"),
			given: adopt(plan("cheap", "solid", "spare")), when: fail, phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua hangup=+1s cause=NORMAL_TEMPORARY_FAILURE +leg_hangup(a):NORMAL_TEMPORARY_FAILURE" +
				" +gateway_attempt(a)[solid#2 NORMAL_TEMPORARY_FAILURE 503 11000ms]:carrier failure",
				"end_attempt a ua solid failed",
				"save +failover(a)[solid#2 NORMAL_TEMPORARY_FAILURE 503 0ms]:no failover: post-dial budget 1m0s spent",
				`save status=failed reason=node_unavailable detail="A: NORMAL_TEMPORARY_FAILURE"`, "wait_legs +35s"}},
		{name: "the next attempt rings what is left of the budget", cb: adoptedRouted("cheap@-45s"),
			given: adopt(plan("cheap", "solid")), when: fail, phase: PhaseCallingA, status: "calling_a",
			acts: []string{"save leg=a/ua hangup=+1s cause=NORMAL_TEMPORARY_FAILURE +leg_hangup(a):NORMAL_TEMPORARY_FAILURE" +
				" +gateway_attempt(a)[cheap#1 NORMAL_TEMPORARY_FAILURE 503 46000ms]:carrier failure",
				"end_attempt a ua cheap failed", "failover a cheap->solid#2 NORMAL_TEMPORARY_FAILURE sip=503",
				"save +failover(a)[solid#2 NORMAL_TEMPORARY_FAILURE 503 0ms]:cheap failed (NORMAL_TEMPORARY_FAILURE, SIP 503); trying solid, attempt 2 of 2",
				"originate a uuid= timeout=14s limit=1h0m0s again via=solid#2"}},
		{name: "no plan any more: the leg's failure is the callback's", cb: adoptedRouted("cheap@-10s"),
			given: adopt(Route{}), when: fail, phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua hangup=+1s cause=NORMAL_TEMPORARY_FAILURE +leg_hangup(a):NORMAL_TEMPORARY_FAILURE" +
				" +gateway_attempt(a)[cheap#1 NORMAL_TEMPORARY_FAILURE 503 11000ms]:stop",
				"end_attempt a ua cheap carried",
				`save status=failed reason=node_unavailable detail="A: NORMAL_TEMPORARY_FAILURE"`, "wait_legs +35s"}},
		{name: "a busy callee does not fail over", cb: adoptedRouted("cheap@-10s"),
			given: adopt(plan("cheap", "solid")), when: sipHangup(time.Second, "ua", "USER_BUSY", 486), phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua hangup=+1s cause=USER_BUSY +leg_hangup(a):USER_BUSY" +
				" +gateway_attempt(a)[cheap#1 USER_BUSY 486 11000ms]:stop",
				"end_attempt a ua cheap carried", `save status=failed reason=a_busy detail="A: USER_BUSY"`, "wait_legs +35s"}},
		{name: "a leg gone at adoption ends its held attempt with the worker", cb: adoptedRouted("cheap@-10s"),
			given: at(0, EventStart{}, EventRouted{Leg: "a", Route: plan("cheap", "solid")}, EventAcquired{Node: "n1"}),
			when:  at(0, EventChannels{}), phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua hangup=+0s", "save +reconciled:adopted by ctl-1; leg a gone",
				`save status=failed reason=node_unavailable detail="A: "`, "wait_legs +34s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Routed = true
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			cb := testCallback()
			tt.cb(cb)
			s := NewState(cb, cfg, true, t0)
			s, _ = drive(t, s, tt.given)
			s, acts := drive(t, s, tt.when)
			if s.Phase != tt.phase {
				t.Errorf("phase %s, want %s", s.Phase, tt.phase)
			}
			if s.Status != tt.status {
				t.Errorf("status %s, want %s", s.Status, tt.status)
			}
			if !slices.Equal(acts, tt.acts) {
				t.Errorf("actions:\n  got  %s\n  want %s", strings.Join(acts, "\n       "), strings.Join(tt.acts, "\n       "))
			}
		})
	}
}
