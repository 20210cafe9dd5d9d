package flow

import (
	"fmt"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"callbridge"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// transitions records every (phase, event, phase) the tests drove.
var transitions = map[string]bool{}

// logTransitions reports, with -v, how many distinct transitions the
// tests have driven so far.
func logTransitions(t *testing.T) {
	t.Cleanup(func() {
		var ts []string
		for k := range transitions {
			ts = append(ts, k)
		}
		sort.Strings(ts)
		t.Logf("%d distinct transitions (phase, event -> phase) driven so far:\n  %s", len(ts), strings.Join(ts, "\n  "))
	})
}

func testConfig() Config {
	return Config{
		Owner: "ctl-1", NodeGrace: 5 * time.Second, RefusedRetry: 60 * time.Second,
		LegWait: 30 * time.Second, FailurePromptTime: 4 * time.Second,
		Prompts:        map[string]string{"ringback": "/s/ringback.wav"},
		FailurePrompts: map[callbridge.FailReason]string{"": "/s/failed.wav"},
		RecordDir:      "/rec",
	}
}

func testCallback() *callbridge.Callback {
	return &callbridge.Callback{
		ID: "cb1", AccountID: "acct", Status: callbridge.CallbackCallingA,
		A: "4930111", B: "4930222", CallerIDA: "4930100100", CallerIDB: "4930111",
		RingTimeoutA: 30, RingTimeoutB: 20, MaxDuration: 3600, Prompt: "ringback", Attempt: 1,
	}
}

// step is one event at an offset from t0.
type step struct {
	at time.Duration
	ev Event
}

// at makes events that happen at the same offset.
func at(d time.Duration, evs ...Event) []step {
	out := make([]step, len(evs))
	for i, ev := range evs {
		out[i] = step{d, ev}
	}
	return out
}

func steps(parts ...[]step) []step { return slices.Concat(parts...) }

// next calls Next, recording the transition and checking Next leaves its
// argument alone.
func next(t *testing.T, s State, ev Event, now time.Time) (State, []Action) {
	t.Helper()
	before := fmt.Sprintf("%+v", s)
	got, acts := Next(s, ev, now)
	if after := fmt.Sprintf("%+v", s); after != before {
		t.Fatalf("Next changed its argument:\n%s\n%s", before, after)
	}
	transitions[fmt.Sprintf("%s, %s -> %s", s.Phase, ev.eventName(), got.Phase)] = true
	return got, acts
}

// drive runs the steps from s and returns the state and every action.
func drive(t *testing.T, s State, ss []step) (State, []string) {
	t.Helper()
	var all []string
	for _, st := range ss {
		var acts []Action
		s, acts = next(t, s, st.ev, t0.Add(st.at))
		all = append(all, describe(acts)...)
	}
	return s, all
}

// Common beginnings.
var (
	start    = at(0, EventStart{}, EventAcquired{Node: "n1"})
	placedA  = steps(start, at(0, EventPlaced{Leg: "a", UUID: "ua"}))
	answerA  = steps(placedA, at(time.Second, EventSeen{UUID: "ua"}, EventRinging{UUID: "ua", At: t0.Add(time.Second), Detail: "CHANNEL_PROGRESS"}), at(3*time.Second, EventAnswered{UUID: "ua", At: t0.Add(3 * time.Second)}, EventParked{UUID: "ua"}))
	placedB  = steps(answerA, at(3*time.Second, EventPlaced{Leg: "b", UUID: "ub"}))
	answerB  = steps(placedB, at(5*time.Second, EventRinging{UUID: "ub", At: t0.Add(5 * time.Second), Detail: "CHANNEL_PROGRESS"}), at(8*time.Second, EventAnswered{UUID: "ub", At: t0.Add(8 * time.Second)}, EventParked{UUID: "ub"}))
	bridged  = steps(answerB, at(8*time.Second, EventBridged{}))
	refusedA = steps(start, at(0, EventOriginateFailed{Leg: "a", UUID: "ua", Cause: "DESTINATION_OUT_OF_ORDER", Detail: "-ERR DESTINATION_OUT_OF_ORDER"}))
	refusedB = steps(placedB, at(3*time.Second, EventOriginateFailed{Leg: "b", UUID: "ub", Cause: "NORMAL_CIRCUIT_CONGESTION", Detail: "-ERR NORMAL_CIRCUIT_CONGESTION"}))
)

func hangup(d time.Duration, uuid, cause string) []step {
	return at(d, EventHangup{UUID: uuid, At: t0.Add(d), Cause: cause})
}

// Saves the common beginnings make.
const (
	saveRingingA  = `save leg=a/ua ringing=+1s +leg_ringing(a):CHANNEL_PROGRESS`
	saveAnsweredA = `save leg=a/ua answered=+3s +leg_answered(a)`
	saveAAnswered = `save status=a_answered detail="A answered"`
	promptA       = `prompt ua /s/ringback.wav ringback`
	originateB    = `originate b uuid= timeout=20s limit=1h0m0s status=calling_b`
	saveRingingB  = `save leg=b/ub ringing=+5s +leg_ringing(b):CHANNEL_PROGRESS`
	saveAnsweredB = `save leg=b/ub answered=+8s +leg_answered(b)`
	bridgeAB      = `bridge ua ub`
)

// TestNext drives each transition from a state reached through the
// machine itself, and asserts the phase reached and the actions, in order.
func TestNext(t *testing.T) {
	logTransitions(t)
	perLeg := func(c *Config) { c.PerLeg = true }
	noFailurePrompt := func(c *Config) { c.FailurePrompts = nil }
	tests := []struct {
		name   string
		cb     func(*callbridge.Callback) // changes the callback (nil: as claimed)
		cfg    func(*Config)
		adopt  bool
		given  []step // brings the machine to the state under test
		when   []step // the transition(s) under test
		phase  Phase
		status callbridge.CallbackStatus
		acts   []string
	}{
		// PhaseNew
		{name: "new: a claim needs a pool slot", when: at(0, EventStart{}), phase: PhaseClaimed, status: "calling_a",
			acts: []string{"acquire"}},
		{name: "new: an adopted call with legs needs its node", adopt: true, cb: bridgedCB, when: at(0, EventStart{}),
			phase: PhaseAdopting, status: "bridged", acts: []string{"attach n1"}},
		{name: "new: an adopted callback never dialled is placed like a claim", adopt: true, when: at(0, EventStart{}),
			phase: PhaseClaimed, status: "calling_a", acts: []string{"acquire"}},
		{name: "new: an event before the start is only recorded", when: at(0, EventCancel{}), phase: PhaseNew, status: "calling_a",
			acts: []string{"save +cancel_requested:hanging up"}},

		// PhaseClaimed
		{name: "claimed: a slot places A", given: at(0, EventStart{}), when: at(0, EventAcquired{Node: "n1"}),
			phase: PhaseCallingA, status: "calling_a", acts: []string{"originate a uuid= timeout=30s limit=1h0m0s"}},
		{name: "claimed: a slot authorises both legs first", cfg: perLeg, given: at(0, EventStart{}), when: at(0, EventAcquired{Node: "n1"}),
			phase: PhaseAuthorizing, acts: []string{"authorize both a= b= max=1h0m0s ring_b=20s"}},
		{name: "claimed: no node fails the callback", given: at(0, EventStart{}), when: at(5*time.Second, EventNoNode{Detail: "no FreeSWITCH node connected"}),
			phase: PhaseDone, status: "failed",
			acts: []string{`save status=failed reason=node_unavailable detail="no FreeSWITCH node connected"`, "wait_legs +39s"}},
		{name: "claimed: a DELETE while waiting for a node", given: at(0, EventStart{}), when: at(0, EventCancel{}),
			phase: PhaseDone, status: "failed",
			acts: []string{`save status=failed reason=cancelled detail="cancelled while waiting for a node"`, "wait_legs +34s"}},
		{name: "claimed: the lease is lost", given: at(0, EventStart{}), when: at(0, EventAbandon{}), phase: PhaseAbandoned, status: "calling_a"},

		// PhaseAuthorizing
		{name: "authorizing: grants place A with its cap and limit", cfg: perLeg, given: start,
			when:  at(0, EventAuthorized{A: &EventGrant{UUID: "ua", Grant: 45500 * time.Millisecond, Reserved: true}, B: &EventGrant{UUID: "ub", Grant: 25 * time.Second, Reserved: true}}),
			phase: PhaseCallingA, acts: []string{"originate a uuid=ua timeout=30s limit=45.5s cap=45s"}},
		{name: "authorizing: a postpaid grant places A without a cap", cfg: perLeg, given: start,
			when:  at(0, EventAuthorized{A: &EventGrant{UUID: "ua", Grant: time.Hour + 20*time.Second}, B: &EventGrant{UUID: "ub", Grant: time.Hour}}),
			phase: PhaseCallingA, acts: []string{"originate a uuid=ua timeout=30s limit=1h0m0s"}},
		{name: "authorizing: refused fails before anyone is called", cfg: perLeg, given: start,
			when:  at(0, EventNotAuthorized{Reason: callbridge.ReasonInsufficientFunds, Detail: "leg a not authorised: balance"}),
			phase: PhaseDone, status: "failed",
			acts: []string{`save status=failed reason=insufficient_funds detail="leg a not authorised: balance"`, "wait_legs +34s"}},

		// PhaseCallingA: channel events
		{name: "calling a: placed", given: start, when: at(0, EventPlaced{Leg: "a", UUID: "ua"}), phase: PhaseCallingA},
		{name: "calling a: CHANNEL_CREATE is no progress", given: placedA, when: at(0, EventSeen{UUID: "ua"}), phase: PhaseCallingA},
		{name: "calling a: ringing", given: placedA, when: at(time.Second, EventRinging{UUID: "ua", At: t0.Add(time.Second), Detail: "CHANNEL_PROGRESS"}),
			phase: PhaseCallingA, acts: []string{saveRingingA}},
		{name: "calling a: early media after progress is saved once", given: steps(placedA, at(time.Second, EventRinging{UUID: "ua", At: t0.Add(time.Second), Detail: "CHANNEL_PROGRESS"})),
			when: at(2*time.Second, EventRinging{UUID: "ua", At: t0.Add(2 * time.Second), Detail: "CHANNEL_PROGRESS_MEDIA"}), phase: PhaseCallingA},
		{name: "calling a: an event without a channel is no leg's", given: placedA, when: at(0, EventSeen{}), phase: PhaseCallingA},
		{name: "calling a: an event of another channel", given: placedA, when: at(0, EventAnswered{UUID: "other", At: t0}), phase: PhaseCallingA},
		{name: "calling a: answered places B with the prompt", given: placedA,
			when:  at(3*time.Second, EventAnswered{UUID: "ua", At: t0.Add(3 * time.Second)}),
			phase: PhaseCallingB, status: "calling_b",
			acts: []string{saveAnsweredA, saveAAnswered, promptA, originateB}},
		{name: "calling a: answered, no prompt", cb: func(cb *callbridge.Callback) { cb.Prompt = callbridge.PromptNone }, given: placedA,
			when:  at(3*time.Second, EventAnswered{UUID: "ua", At: t0.Add(3 * time.Second)}),
			phase: PhaseCallingB, acts: []string{saveAnsweredA, saveAAnswered, originateB}},
		{name: "calling a: busy", given: placedA, when: hangup(2*time.Second, "ua", "USER_BUSY"), phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua hangup=+2s cause=USER_BUSY +leg_hangup(a):USER_BUSY",
				`save status=failed reason=a_busy detail="A: USER_BUSY"`, "wait_legs +36s"}},
		{name: "calling a: busy, queued again by the retry policy",
			cb:    func(cb *callbridge.Callback) { cb.Retry = callbridge.RetryPolicy{Attempts: 2, Delay: time.Minute} },
			given: placedA, when: hangup(2*time.Second, "ua", "USER_BUSY"), phase: PhaseDone, status: "queued",
			acts: []string{"save leg=a/ua hangup=+2s cause=USER_BUSY +leg_hangup(a):USER_BUSY",
				`save status=queued detail="retry 1 of 2 after a_busy in 1m0s" run_at=+1m2s +retry(a):a_busy`, "wake", "wait_legs +32s"}},
		{name: "calling a: the last attempt is not queued again",
			cb: func(cb *callbridge.Callback) {
				cb.Retry = callbridge.RetryPolicy{Attempts: 2, Delay: time.Minute}
				cb.Attempt = 3
			},
			given: placedA, when: hangup(2*time.Second, "ua", "NO_ANSWER"), phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua hangup=+2s cause=NO_ANSWER +leg_hangup(a):NO_ANSWER",
				`save status=failed reason=a_no_answer detail="A: NO_ANSWER"`, "wait_legs +36s"}},
		{name: "calling a: the real switch's early ring timeout is no answer", given: placedA, when: hangup(29100*time.Millisecond, "ua", "PROGRESS_TIMEOUT"),
			phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua hangup=+29.1s cause=PROGRESS_TIMEOUT +leg_hangup(a):PROGRESS_TIMEOUT",
				`save status=failed reason=a_no_answer detail="A: PROGRESS_TIMEOUT"`, "wait_legs +1m3.1s"}},
		{name: "calling a: rejected", given: placedA, when: hangup(2*time.Second, "ua", "CALL_REJECTED"), phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua hangup=+2s cause=CALL_REJECTED +leg_hangup(a):CALL_REJECTED",
				`save status=failed reason=a_rejected detail="A: CALL_REJECTED"`, "wait_legs +36s"}},
		{name: "calling a: answered and hung up at once", given: placedA,
			when:  steps(at(3*time.Second, EventAnswered{UUID: "ua", At: t0.Add(3 * time.Second)}, EventPlaced{Leg: "b", UUID: "ub"}), hangup(3*time.Second, "ua", "NORMAL_CLEARING")),
			phase: PhaseEnded, status: "failed",
			acts: []string{saveAnsweredA, saveAAnswered, promptA, originateB,
				"save leg=a/ua hangup=+3s cause=NORMAL_CLEARING +leg_hangup(a):NORMAL_CLEARING", "kill b ub ORIGINATOR_CANCEL",
				`save status=failed reason=a_hangup detail="A hung up while B was called"`, "wait_legs +37s"}},

		// PhaseCallingA: the originate's results
		{name: "calling a: originate refused, placed again later", given: start,
			when:  at(0, EventOriginateFailed{Leg: "a", UUID: "ua", Cause: "DESTINATION_OUT_OF_ORDER", Detail: "-ERR DESTINATION_OUT_OF_ORDER"}),
			phase: PhaseCallingA,
			acts: []string{"save leg=a/ua hangup=+0s cause=DESTINATION_OUT_OF_ORDER +leg_hangup(a):originate: -ERR DESTINATION_OUT_OF_ORDER",
				"refused a ua DESTINATION_OUT_OF_ORDER n=1 backoff=100ms deadline=+1m0s"}},
		{name: "calling a: originate answered -ERR USER_BUSY is busy, not a refusal", given: start,
			when:  at(0, EventOriginateFailed{Leg: "a", UUID: "ua", Cause: "USER_BUSY", Detail: "-ERR USER_BUSY"}),
			phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua hangup=+0s cause=USER_BUSY +leg_hangup(a):originate: -ERR USER_BUSY",
				`save status=failed reason=a_busy detail="A: USER_BUSY"`, "wait_legs +34s"}},
		{name: "calling a: originate failed before the node", given: start,
			when:  at(0, EventOriginateFailed{Leg: "a", UUID: "ua", Detail: "esl: timeout", Lost: true}),
			phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua hangup=+0s cause=NORMAL_TEMPORARY_FAILURE +leg_hangup(a):originate: esl: timeout",
				`save status=failed reason=node_unavailable detail="A: NORMAL_TEMPORARY_FAILURE"`, "wait_legs +34s"}},
		{name: "calling a: the originate's reply is lost", given: start,
			when:  at(0, EventOriginateUnknown{Leg: "a", UUID: "ua", Detail: "esl: connection closed"}),
			phase: PhaseCallingA,
			acts: []string{`save +command_error(a):originate: esl: connection closed; outcome unknown until the node is reconciled`,
				"save +node_lost:connection to n1 lost while originating leg a", "wait_grace +5s"}},
		{name: "calling a: the job fails after the originate was accepted", given: placedA,
			when:  at(time.Second, EventJobFailed{UUID: "ua", Cause: "NO_ROUTE_DESTINATION", Detail: "-ERR NO_ROUTE_DESTINATION"}),
			phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua hangup=+1s cause=NO_ROUTE_DESTINATION +leg_hangup(a):originate: -ERR NO_ROUTE_DESTINATION",
				`save status=failed reason=a_rejected detail="A: NO_ROUTE_DESTINATION"`, "wait_legs +35s"}},
		{name: "calling a: a job failure after the hangup event is ignored", given: steps(placedA, at(0, EventSeen{UUID: "ua"})),
			when:  steps(hangup(time.Second, "ua", "NO_ROUTE_DESTINATION"), at(time.Second, EventJobFailed{UUID: "ua", Cause: "DESTINATION_OUT_OF_ORDER", Detail: "-ERR"})),
			phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua hangup=+1s cause=NO_ROUTE_DESTINATION +leg_hangup(a):NO_ROUTE_DESTINATION",
				`save status=failed reason=a_rejected detail="A: NO_ROUTE_DESTINATION"`, "wait_legs +35s"}},
		{name: "calling a: a job failure of a refused placement does not touch the next", given: steps(refusedA, at(200*time.Millisecond, EventRetryDue{Leg: "a"}, EventAcquired{Node: "n2"}, EventPlaced{Leg: "a", UUID: "ua2"})),
			when:  at(time.Second, EventJobFailed{UUID: "ua", Cause: "DESTINATION_OUT_OF_ORDER", Detail: "-ERR"}),
			phase: PhaseCallingA},
		{name: "calling a: a refusal of a leg the node had a session for is a failure", given: steps(placedA, at(0, EventSeen{UUID: "ua"})),
			when:  hangup(0, "ua", "NORMAL_TEMPORARY_FAILURE"),
			phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua hangup=+0s cause=NORMAL_TEMPORARY_FAILURE +leg_hangup(a):NORMAL_TEMPORARY_FAILURE",
				`save status=failed reason=node_unavailable detail="A: NORMAL_TEMPORARY_FAILURE"`, "wait_legs +34s"}},

		// Refused originates placed again within the deadline
		{name: "refused a: waits for the pacer", given: refusedA, when: at(50*time.Millisecond, EventSeen{UUID: "other"}), phase: PhaseCallingA},
		{name: "refused a: due, A takes a new pool slot", given: refusedA, when: at(200*time.Millisecond, EventRetryDue{Leg: "a"}),
			phase: PhaseClaimed, acts: []string{"acquire"}},
		{name: "refused a: placed again on a new node", given: steps(refusedA, at(200*time.Millisecond, EventRetryDue{Leg: "a"})),
			when: at(200*time.Millisecond, EventAcquired{Node: "n2"}), phase: PhaseCallingA,
			acts: []string{"originate a uuid= timeout=30s limit=1h0m0s again"}},
		{name: "refused a: placed again with new reservations", cfg: perLeg,
			given: steps(start, at(0, EventAuthorized{A: &EventGrant{UUID: "ua", Grant: time.Minute, Reserved: true}, B: &EventGrant{UUID: "ub", Grant: time.Minute, Reserved: true}}),
				at(0, EventOriginateFailed{Leg: "a", UUID: "ua", Cause: "SWITCH_CONGESTION", Detail: "-ERR"}), at(200*time.Millisecond, EventRetryDue{Leg: "a"})),
			when:  at(200*time.Millisecond, EventAcquired{Node: "n2"}),
			phase: PhaseAuthorizing, acts: []string{"release b ub", "authorize both a= b= max=1h0m0s ring_b=20s"}},
		{name: "refused a: due but the deadline passed", given: refusedA, when: at(61*time.Second, EventRetryDue{Leg: "a"}),
			phase: PhaseDone, status: "failed",
			acts: []string{`save status=failed reason=node_unavailable detail="A: DESTINATION_OUT_OF_ORDER"`, "wait_legs +1m35s"}},
		{name: "refused a: refused again past the deadline is final", given: steps(refusedA, at(time.Second, EventRetryDue{Leg: "a"}, EventAcquired{Node: "n1"})),
			when:  at(61*time.Second, EventOriginateFailed{Leg: "a", UUID: "ua2", Cause: "DESTINATION_OUT_OF_ORDER", Detail: "-ERR"}),
			phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua2 hangup=+1m1s cause=DESTINATION_OUT_OF_ORDER +leg_hangup(a):originate: -ERR",
				"refused a ua2 DESTINATION_OUT_OF_ORDER n=2 backoff=200ms deadline=+1m0s final",
				`save status=failed reason=node_unavailable detail="A: DESTINATION_OUT_OF_ORDER"`, "wait_legs +1m35s"}},
		{name: "refused a: the backoff doubles", given: steps(refusedA, at(time.Second, EventRetryDue{Leg: "a"}, EventAcquired{Node: "n1"}), at(time.Second, EventOriginateFailed{Leg: "a", UUID: "ua2", Cause: "DESTINATION_OUT_OF_ORDER", Detail: "-ERR"}),
			at(2*time.Second, EventRetryDue{Leg: "a"}, EventAcquired{Node: "n1"})),
			when:  at(2*time.Second, EventOriginateFailed{Leg: "a", UUID: "ua3", Cause: "DESTINATION_OUT_OF_ORDER", Detail: "-ERR"}),
			phase: PhaseCallingA,
			acts: []string{"save leg=a/ua3 hangup=+2s cause=DESTINATION_OUT_OF_ORDER +leg_hangup(a):originate: -ERR",
				"refused a ua3 DESTINATION_OUT_OF_ORDER n=3 backoff=400ms deadline=+1m0s"}},
		{name: "refused a: a DELETE while waiting", given: refusedA, when: at(50*time.Millisecond, EventCancel{}),
			phase: PhaseDone, status: "failed",
			acts: []string{"save +cancel_requested:hanging up", `save status=failed reason=cancelled detail="cancelled during calling_a"`, "wait_legs +34.05s"}},
		{name: "refused a: due while the node is lost, placed once it is back", given: steps(refusedA, at(50*time.Millisecond, EventNodeDown{}, EventRetryDue{Leg: "a"}), at(time.Second, EventNodeUp{})),
			when:  at(time.Second, EventChannels{}),
			phase: PhaseClaimed,
			acts:  []string{"save +reconciled:reconnected to n1", "stop_grace", "acquire"}},

		// DELETE
		{name: "cancel: while A rings", given: placedA, when: at(time.Second, EventCancel{}),
			phase: PhaseEnded, status: "failed",
			acts: []string{"save +cancel_requested:hanging up", "kill a ua ORIGINATOR_CANCEL",
				`save status=failed reason=cancelled detail="cancelled during calling_a"`, "wait_legs +35s"}},
		{name: "cancel: before A's channel exists, killed at its next event", given: steps(placedA, at(time.Second, EventCancel{})),
			when:  at(time.Second, EventKillFailed{UUID: "ua"}, EventSeen{UUID: "ua"}),
			phase: PhaseEnded, status: "failed", acts: []string{"kill a ua ORIGINATOR_CANCEL"}},
		{name: "cancel: a refused kill is not retried at once", given: steps(placedA, at(time.Second, EventCancel{})),
			when: at(time.Second, EventKillFailed{UUID: "ua"}), phase: PhaseEnded, status: "failed"},
		{name: "cancel: the leg's hangup after the kill ends the worker", given: steps(placedA, at(time.Second, EventCancel{})),
			when: hangup(time.Second, "ua", "ORIGINATOR_CANCEL"), phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua hangup=+1s cause=ORIGINATOR_CANCEL +leg_hangup(a):ORIGINATOR_CANCEL best-effort"}},
		{name: "cancel: while B rings", given: placedB, when: at(4*time.Second, EventCancel{}),
			phase: PhaseEnded, status: "failed",
			acts: []string{"save +cancel_requested:hanging up", "kill a ua NORMAL_CLEARING", "kill b ub ORIGINATOR_CANCEL",
				`save status=failed reason=cancelled detail="cancelled during calling_b"`, "wait_legs +38s"}},
		{name: "cancel: while bridged, ended once both legs are down", given: steps(bridged, at(10*time.Second, EventCancel{}), hangup(10*time.Second, "ua", "NORMAL_CLEARING")),
			when:  hangup(10*time.Second, "ub", "NORMAL_CLEARING"),
			phase: PhaseDone, status: "failed",
			acts: []string{"save leg=b/ub hangup=+10s cause=NORMAL_CLEARING +leg_hangup(b):NORMAL_CLEARING",
				`save status=failed reason=cancelled detail="cancelled during bridged"`, "wait_legs +44s"}},
		{name: "cancel: while bridged, both legs are killed", given: bridged, when: at(10*time.Second, EventCancel{}),
			phase: PhaseBridged, status: "bridged",
			acts: []string{"save +cancel_requested:hanging up", "kill a ua NORMAL_CLEARING", "kill b ub NORMAL_CLEARING"}},
		{name: "cancel: twice is once", given: steps(bridged, at(10*time.Second, EventCancel{})), when: at(10*time.Second, EventCancel{}),
			phase: PhaseBridged, status: "bridged"},
		{name: "cancel: while the node is lost, nothing is killed", given: steps(bridged, at(10*time.Second, EventNodeDown{})),
			when: at(10*time.Second, EventCancel{}), phase: PhaseBridged, status: "bridged",
			acts: []string{"save +cancel_requested:hanging up"}},

		// PhaseAAnswered, PhaseAuthorizingB
		{name: "a answered: B is authorised when A answered elsewhere", adopt: true, cfg: perLeg, cb: aAnsweredCB,
			given: at(0, EventStart{}, EventAcquired{Node: "n1"}), when: at(0, EventChannels{Channels: map[string]string{"ua": "ACTIVE"}}),
			phase: PhaseAuthorizingB, status: "a_answered",
			acts: []string{"save +reconciled:adopted by ctl-1; leg a present", "authorize b b= max=1h0m0s"}},
		{name: "a answered: adopted, B is placed", adopt: true, cb: aAnsweredCB,
			given: at(0, EventStart{}, EventAcquired{Node: "n1"}), when: at(0, EventChannels{Channels: map[string]string{"ua": "ACTIVE"}}),
			phase: PhaseCallingB, status: "calling_b",
			acts: []string{"save +reconciled:adopted by ctl-1; leg a present", promptA, originateB}},
		{name: "authorizing b: granted, B is placed with its cap", adopt: true, cfg: perLeg, cb: aAnsweredCB,
			given: at(0, EventStart{}, EventAcquired{Node: "n1"}, EventChannels{Channels: map[string]string{"ua": "ACTIVE"}}),
			when:  at(0, EventAuthorized{B: &EventGrant{UUID: "ub", Grant: 10 * time.Second, Reserved: true}}),
			phase: PhaseCallingB, status: "calling_b",
			acts: []string{promptA, "originate b uuid=ub timeout=20s limit=10s cap=10s status=calling_b"}},
		{name: "authorizing b: refused, A hears why", adopt: true, cfg: perLeg, cb: aAnsweredCB,
			given: at(0, EventStart{}, EventAcquired{Node: "n1"}, EventChannels{Channels: map[string]string{"ua": "ACTIVE"}}),
			when:  at(0, EventNotAuthorized{Reason: callbridge.ReasonInsufficientFunds, Detail: "leg b not authorised"}),
			phase: PhaseEnded, status: "failed",
			acts: []string{"failure_prompt ua /s/failed.wav after=4s kill=NORMAL_CLEARING",
				`save status=failed reason=insufficient_funds detail="B: "`, "wait_legs +34s"}},
		{name: "a answered: adopted while the node is lost, B waits for it", adopt: true, cb: aAnsweredCB,
			given: at(0, EventStart{}, EventAcquired{Node: "n1"}), when: at(0, EventNodeDown{}, EventChannels{Channels: map[string]string{"ua": "ACTIVE"}}),
			phase: PhaseAAnswered, status: "a_answered",
			acts: []string{"save +node_lost:lost connection to n1", "wait_grace +5s", "save +reconciled:adopted by ctl-1; leg a present"}},
		{name: "a answered: a DELETE while adopting hangs A up", adopt: true, cb: aAnsweredCB,
			given: at(0, EventStart{}, EventAcquired{Node: "n1"}, EventCancel{}), when: at(0, EventChannels{Channels: map[string]string{"ua": "ACTIVE"}}),
			phase: PhaseEnded, status: "failed",
			acts: []string{"save +reconciled:adopted by ctl-1; leg a present", "kill a ua NORMAL_CLEARING",
				`save status=failed reason=cancelled detail="cancelled during a_answered"`, "wait_legs +34s"}},
		{name: "a answered: A gone when adopted", adopt: true, cb: aAnsweredCB,
			given: at(0, EventStart{}, EventAcquired{Node: "n1"}), when: at(0, EventChannels{}),
			phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua hangup=+0s", "save +reconciled:adopted by ctl-1; leg a gone",
				`save status=failed reason=a_hangup detail="A hung up before B was called"`, "wait_legs +34s"}},

		// PhaseCallingB
		{name: "calling b: ringing", given: placedB, when: at(5*time.Second, EventRinging{UUID: "ub", At: t0.Add(5 * time.Second), Detail: "CHANNEL_PROGRESS"}),
			phase: PhaseCallingB, acts: []string{saveRingingB}},
		{name: "calling b: answered and parked is bridged", given: steps(placedB, at(5*time.Second, EventRinging{UUID: "ub", At: t0.Add(5 * time.Second), Detail: "CHANNEL_PROGRESS"})),
			when: at(8*time.Second, EventAnswered{UUID: "ub", At: t0.Add(8 * time.Second)}, EventParked{UUID: "ub"}), phase: PhaseBridging,
			acts: []string{saveAnsweredB, bridgeAB}},
		// Under load the real switch's originate of B returned after the
		// answer reached us; uuid_bridge then took B from it, the job
		// answered -ERR ORIGINATOR_CANCEL, and B never set its CDR hook.
		{name: "calling b: answered, its originate not returned, is not bridged yet", given: steps(placedB, at(5*time.Second, EventRinging{UUID: "ub", At: t0.Add(5 * time.Second), Detail: "CHANNEL_PROGRESS"})),
			when: at(8*time.Second, EventAnswered{UUID: "ub", At: t0.Add(8 * time.Second)}), phase: PhaseCallingB,
			acts: []string{saveAnsweredB}},
		{name: "calling b: answered, then parked, is bridged", given: steps(placedB, at(8*time.Second, EventAnswered{UUID: "ub", At: t0.Add(8 * time.Second)})),
			when: at(8100*time.Millisecond, EventParked{UUID: "ub"}), phase: PhaseBridging,
			acts: []string{bridgeAB}},
		{name: "calling b: busy, A hears the failure prompt", given: placedB, when: hangup(4*time.Second, "ub", "USER_BUSY"),
			phase: PhaseEnded, status: "failed",
			acts: []string{"save leg=b/ub hangup=+4s cause=USER_BUSY +leg_hangup(b):USER_BUSY",
				"failure_prompt ua /s/failed.wav after=4s kill=NORMAL_CLEARING",
				`save status=failed reason=b_busy detail="B: USER_BUSY"`, "wait_legs +38s"}},
		{name: "calling b: no answer, no failure prompt: A is hung up", cfg: noFailurePrompt, given: placedB, when: hangup(23*time.Second, "ub", "NO_ANSWER"),
			phase: PhaseEnded, status: "failed",
			acts: []string{"save leg=b/ub hangup=+23s cause=NO_ANSWER +leg_hangup(b):NO_ANSWER", "kill a ua NORMAL_CLEARING",
				`save status=failed reason=b_no_answer detail="B: NO_ANSWER"`, "wait_legs +57s"}},
		{name: "calling b: declined", given: placedB, when: hangup(4*time.Second, "ub", "CALL_REJECTED"),
			phase: PhaseEnded, status: "failed",
			acts: []string{"save leg=b/ub hangup=+4s cause=CALL_REJECTED +leg_hangup(b):CALL_REJECTED",
				"failure_prompt ua /s/failed.wav after=4s kill=NORMAL_CLEARING",
				`save status=failed reason=b_rejected detail="B: CALL_REJECTED"`, "wait_legs +38s"}},
		{name: "calling b: A hangs up while B rings", given: placedB, when: hangup(6*time.Second, "ua", "NORMAL_CLEARING"),
			phase: PhaseEnded, status: "failed",
			acts: []string{"save leg=a/ua hangup=+6s cause=NORMAL_CLEARING +leg_hangup(a):NORMAL_CLEARING", "kill b ub ORIGINATOR_CANCEL",
				`save status=failed reason=a_hangup detail="A hung up while B was called"`, "wait_legs +40s"}},
		{name: "calling b: B lost before the node", given: answerA, when: at(3*time.Second, EventOriginateFailed{Leg: "b", UUID: "ub", Detail: "esl: timeout", Lost: true}),
			phase: PhaseEnded, status: "failed",
			acts: []string{"save leg=b/ub hangup=+3s cause=NORMAL_TEMPORARY_FAILURE +leg_hangup(b):originate: esl: timeout",
				"failure_prompt ua /s/failed.wav after=4s kill=NORMAL_CLEARING",
				`save status=failed reason=node_unavailable detail="B: NORMAL_TEMPORARY_FAILURE"`, "wait_legs +37s"}},
		{name: "calling b: B answered and hung up before the bridge (adopted)", adopt: true, cb: func(cb *callbridge.Callback) {
			callingBCB(cb)
			now := t0
			cb.Legs[1].AnsweredAt, cb.Legs[1].HangupAt, cb.Legs[1].HangupCause = &now, &now, "NORMAL_CLEARING"
		}, given: at(0, EventStart{}, EventAcquired{Node: "n1"}), when: at(0, EventChannels{Channels: map[string]string{"ua": "ACTIVE"}}),
			phase: PhaseEnded, status: "failed",
			acts: []string{"save +reconciled:adopted by ctl-1; leg a present", "failure_prompt ua /s/failed.wav after=4s kill=NORMAL_CLEARING",
				`save status=failed reason=b_rejected detail="B: NORMAL_CLEARING"`, "wait_legs +34s"}},

		// Refused B
		{name: "refused b: placed again while A waits", given: refusedB, when: at(3100*time.Millisecond, EventRetryDue{Leg: "b"}),
			phase: PhaseCallingB, acts: []string{"originate b uuid= timeout=20s limit=1h0m0s again"}},
		{name: "refused b: recorded with B's deadline", given: placedB,
			when:  at(3*time.Second, EventOriginateFailed{Leg: "b", UUID: "ub", Cause: "NORMAL_CIRCUIT_CONGESTION", Detail: "-ERR"}),
			phase: PhaseCallingB,
			acts: []string{"save leg=b/ub hangup=+3s cause=NORMAL_CIRCUIT_CONGESTION +leg_hangup(b):originate: -ERR",
				"refused b ub NORMAL_CIRCUIT_CONGESTION n=1 backoff=100ms deadline=+23s"}},
		{name: "refused b: placed again with a new reservation", cfg: perLeg,
			given: steps(start, at(0, EventAuthorized{A: &EventGrant{UUID: "ua", Grant: time.Hour}, B: &EventGrant{UUID: "ub", Grant: 50 * time.Second, Reserved: true}}),
				at(3*time.Second, EventAnswered{UUID: "ua", At: t0.Add(3 * time.Second)}),
				at(3*time.Second, EventPlaced{Leg: "b", UUID: "ub"}, EventOriginateFailed{Leg: "b", UUID: "ub", Cause: "NORMAL_CIRCUIT_CONGESTION", Detail: "-ERR"})),
			when:  at(4*time.Second, EventRetryDue{Leg: "b"}),
			phase: PhaseAuthorizingB, acts: []string{"release b ub", "authorize b b= max=1h0m0s"}},
		{name: "authorizing b: granted again after a refusal, B is placed again", cfg: perLeg,
			given: steps(start, at(0, EventAuthorized{A: &EventGrant{UUID: "ua", Grant: time.Hour}, B: &EventGrant{UUID: "ub", Grant: 50 * time.Second, Reserved: true}}),
				at(3*time.Second, EventAnswered{UUID: "ua", At: t0.Add(3 * time.Second)}),
				at(3*time.Second, EventPlaced{Leg: "b", UUID: "ub"}, EventOriginateFailed{Leg: "b", UUID: "ub", Cause: "NORMAL_CIRCUIT_CONGESTION", Detail: "-ERR"}),
				at(4*time.Second, EventRetryDue{Leg: "b"})),
			when:  at(4*time.Second, EventAuthorized{B: &EventGrant{UUID: "ub2", Grant: 40 * time.Second, Reserved: true}}),
			phase: PhaseCallingB, acts: []string{"originate b uuid=ub2 timeout=20s limit=40s cap=40s again"}},
		{name: "refused b: B's ring time is over", given: refusedB, when: at(24*time.Second, EventRetryDue{Leg: "b"}),
			phase: PhaseEnded, status: "failed",
			acts: []string{"failure_prompt ua /s/failed.wav after=4s kill=NORMAL_CLEARING",
				`save status=failed reason=node_unavailable detail="B: NORMAL_CIRCUIT_CONGESTION"`, "wait_legs +58s"}},

		// PhaseBridging
		{name: "bridging: bridged, capped at max duration, recorded", cb: func(cb *callbridge.Callback) { cb.Record = true }, given: answerB,
			when: at(8*time.Second, EventBridged{}), phase: PhaseBridged, status: "bridged",
			acts: []string{`save status=bridged detail="A and B bridged"`, "sched_hangup a ua 1h0m0s", "sched_hangup b ub 1h0m0s",
				"save +max_duration_scheduled:1h0m0s", "record ua /rec/cb1.wav"}},
		{name: "bridging: an adopted B holds no reservation of this controller: no cap", adopt: true, cfg: perLeg, cb: callingBCB,
			given: at(0, EventStart{}, EventAcquired{Node: "n1"}, EventChannels{Channels: map[string]string{"ua": "ACTIVE", "ub": "ACTIVE"}}),
			when:  at(0, EventBridged{}), phase: PhaseBridged, status: "bridged",
			acts: []string{`save status=bridged detail="A and B bridged"`, "sched_hangup a ua 1h0m0s", "sched_hangup b ub 1h0m0s",
				"save +max_duration_scheduled:1h0m0s"}},
		{name: "bridging: refused, waits for the leg's hangup", given: answerB, when: at(8*time.Second, EventBridgeFailed{Refused: true}),
			phase: PhaseBridgeRefused, acts: []string{"wait_bridge +10s"}},
		{name: "bridging: the connection closed around uuid_bridge", given: answerB, when: at(8*time.Second, EventBridgeFailed{Closed: true}),
			phase: PhaseCallingB, acts: []string{"save +node_lost:connection to n1 lost during uuid_bridge", "wait_grace +13s"}},
		{name: "bridging: another failure ends the call", given: answerB, when: at(8*time.Second, EventBridgeFailed{}),
			phase: PhaseEnded, status: "failed",
			acts: []string{"kill a ua NORMAL_CLEARING", "kill b ub NORMAL_CLEARING", `save status=failed reason=internal detail="uuid_bridge failed"`, "wait_legs +42s"}},

		// PhaseBridgeRefused
		{name: "bridge refused: B's hangup comes", given: steps(answerB, at(8*time.Second, EventBridgeFailed{Refused: true})),
			when: hangup(8500*time.Millisecond, "ub", "NORMAL_CLEARING"), phase: PhaseEnded, status: "failed",
			acts: []string{"save leg=b/ub hangup=+8.5s cause=NORMAL_CLEARING +leg_hangup(b):NORMAL_CLEARING",
				"failure_prompt ua /s/failed.wav after=4s kill=NORMAL_CLEARING",
				`save status=failed reason=b_rejected detail="B: NORMAL_CLEARING"`, "wait_legs +42.5s"}},
		{name: "bridge refused: A's hangup comes", given: steps(answerB, at(8*time.Second, EventBridgeFailed{Refused: true})),
			when: hangup(8500*time.Millisecond, "ua", "NORMAL_CLEARING"), phase: PhaseEnded, status: "failed",
			acts: []string{"save leg=a/ua hangup=+8.5s cause=NORMAL_CLEARING +leg_hangup(a):NORMAL_CLEARING", "kill b ub NORMAL_CLEARING",
				`save status=failed reason=a_hangup detail="A hung up while B was called"`, "wait_legs +42.5s"}},
		{name: "bridge refused: other events wait", given: steps(answerB, at(8*time.Second, EventBridgeFailed{Refused: true})),
			when: at(8500*time.Millisecond, EventSeen{UUID: "ub"}), phase: PhaseBridgeRefused},
		{name: "bridge refused: no hangup in time, the legs are checked", given: steps(answerB, at(8*time.Second, EventBridgeFailed{Refused: true})),
			when: at(10*time.Second, EventBridgeWaitOver{}), phase: PhaseBridgeRefused, acts: []string{"check_legs ua ub"}},
		{name: "bridge refused: B gone", given: steps(answerB, at(8*time.Second, EventBridgeFailed{Refused: true}, EventBridgeWaitOver{})),
			when: at(10*time.Second, EventLegsChecked{Gone: []string{"ub"}}), phase: PhaseEnded, status: "failed",
			acts: []string{"save leg=b/ub hangup=+10s +leg_hangup(b):gone when uuid_bridge was refused",
				"failure_prompt ua /s/failed.wav after=4s kill=NORMAL_CLEARING",
				`save status=failed reason=b_rejected detail="B: "`, "wait_legs +44s"}},
		{name: "bridge refused: both still there", given: steps(answerB, at(8*time.Second, EventBridgeFailed{Refused: true}, EventBridgeWaitOver{})),
			when: at(10*time.Second, EventLegsChecked{}), phase: PhaseEnded, status: "failed",
			acts: []string{"kill a ua NORMAL_CLEARING", "kill b ub NORMAL_CLEARING", `save status=failed reason=internal detail="uuid_bridge failed"`, "wait_legs +44s"}},
		{name: "bridge refused: the lease is lost meanwhile", given: steps(answerB, at(8*time.Second, EventBridgeFailed{Refused: true})),
			when: at(9*time.Second, EventAbandon{}), phase: PhaseAbandoned},
		{name: "bridge refused: the node is lost meanwhile", given: steps(answerB, at(8*time.Second, EventBridgeFailed{Refused: true})),
			when: at(9*time.Second, EventNodeDown{}), phase: PhaseCallingB,
			acts: []string{"save +node_lost:lost connection to n1", "wait_grace +14s"}},

		// PhaseBridged, PhaseCheckingCancel
		{name: "bridged: UNBRIDGE before HANGUP changes nothing", given: bridged, when: at(20*time.Second, EventSeen{UUID: "ua"}, EventSeen{UUID: "ub"}),
			phase: PhaseBridged, status: "bridged"},
		{name: "bridged: A hangs up: B is hung up, was it a DELETE?", given: bridged, when: hangup(20*time.Second, "ua", "NORMAL_CLEARING"),
			phase: PhaseCheckingCancel, status: "bridged",
			acts: []string{"save leg=a/ua hangup=+20s cause=NORMAL_CLEARING +leg_hangup(a):NORMAL_CLEARING", "kill b ub NORMAL_CLEARING", "check_cancel"}},
		{name: "checking cancel: no DELETE, completed", given: steps(bridged, hangup(20*time.Second, "ua", "NORMAL_CLEARING")),
			when: at(20*time.Second, EventCancelChecked{}), phase: PhaseEnded, status: "completed",
			acts: []string{`save status=completed detail="leg a hung up: NORMAL_CLEARING"`, "wait_legs +54s"}},
		{name: "checking cancel: a DELETE through another controller", given: steps(bridged, hangup(20*time.Second, "ub", "")),
			when: at(20*time.Second, EventCancelChecked{Requested: true}), phase: PhaseEnded, status: "failed",
			acts: []string{`save status=failed reason=cancelled detail="leg b hung up: "`, "wait_legs +54s"}},
		{name: "bridged: max duration", given: bridged, when: hangup(time.Hour, "ub", "ALLOTTED_TIMEOUT"), phase: PhaseEnded, status: "failed",
			acts: []string{"save leg=b/ub hangup=+1h0m0s cause=ALLOTTED_TIMEOUT +leg_hangup(b):ALLOTTED_TIMEOUT", "kill a ua NORMAL_CLEARING",
				`save status=failed reason=max_duration detail="leg b hung up: ALLOTTED_TIMEOUT"`, "wait_legs +1h0m34s"}},
		{name: "bridged: max duration on the other leg, hung up by the cap on both", given: steps(bridged),
			when:  steps(at(time.Hour, EventHangup{UUID: "ua", At: t0.Add(time.Hour), Cause: "NORMAL_CLEARING"}, EventHangup{UUID: "ub", At: t0.Add(time.Hour), Cause: "ALLOTTED_TIMEOUT"})),
			phase: PhaseCheckingCancel, status: "bridged",
			acts: []string{"save leg=a/ua hangup=+1h0m0s cause=NORMAL_CLEARING +leg_hangup(a):NORMAL_CLEARING", "kill b ub NORMAL_CLEARING", "check_cancel",
				"save leg=b/ub hangup=+1h0m0s cause=ALLOTTED_TIMEOUT +leg_hangup(b):ALLOTTED_TIMEOUT"}},
		{name: "bridged: another cause completes", given: bridged, when: hangup(20*time.Second, "ub", "NORMAL_UNSPECIFIED"), phase: PhaseEnded, status: "completed",
			acts: []string{"save leg=b/ub hangup=+20s cause=NORMAL_UNSPECIFIED +leg_hangup(b):NORMAL_UNSPECIFIED", "kill a ua NORMAL_CLEARING",
				`save status=completed detail="leg b hung up: NORMAL_UNSPECIFIED"`, "wait_legs +54s"}},
		{name: "bridged: a leg gone while the node was away", given: steps(bridged, at(20*time.Second, EventNodeDown{}, EventNodeUp{})),
			when: at(21*time.Second, EventChannels{Channels: map[string]string{"ub": "ACTIVE"}}), phase: PhaseEnded, status: "completed",
			acts: []string{"save leg=a/ua hangup=+21s", "save +reconciled:reconnected to n1; leg a gone; leg b present", "stop_grace", "kill b ub NORMAL_CLEARING",
				`save status=completed detail="leg a ended while untracked"`, "wait_legs +55s"}},

		// The node's connection
		{name: "node: lost", given: placedB, when: at(4*time.Second, EventNodeDown{}), phase: PhaseCallingB,
			acts: []string{"save +node_lost:lost connection to n1", "wait_grace +9s"}},
		{name: "node: lost twice is once", given: steps(placedB, at(4*time.Second, EventNodeDown{})), when: at(4*time.Second, EventNodeDown{}), phase: PhaseCallingB},
		{name: "node: facts are recorded while it is lost, decisions wait", given: steps(placedB, at(4*time.Second, EventNodeDown{})),
			when: hangup(5*time.Second, "ub", "USER_BUSY"), phase: PhaseCallingB,
			acts: []string{"save leg=b/ub hangup=+5s cause=USER_BUSY +leg_hangup(b):USER_BUSY"}},
		{name: "node: back, its channels are listed", given: steps(placedB, at(4*time.Second, EventNodeDown{})), when: at(5*time.Second, EventNodeUp{}),
			phase: PhaseCallingB, acts: []string{"reconcile"}},
		{name: "node: back, B answered meanwhile: bridged", given: steps(placedB, at(4*time.Second, EventNodeDown{}, EventNodeUp{})),
			when:  at(5*time.Second, EventChannels{Channels: map[string]string{"ua": "ACTIVE", "ub": "ACTIVE"}}),
			phase: PhaseBridging,
			acts:  []string{"save leg=b/ub answered=+5s", "save +reconciled:reconnected to n1; leg a present; leg b answered", "stop_grace", bridgeAB}},
		{name: "node: back but its channels cannot be listed", given: steps(placedB, at(4*time.Second, EventNodeDown{}, EventNodeUp{})),
			when: at(5*time.Second, EventChannelsFailed{}), phase: PhaseCallingB},
		{name: "node: a reconnection the watcher missed", given: placedB, when: at(5*time.Second, EventNodeUp{}, EventChannelsFailed{}),
			phase: PhaseCallingB, acts: []string{"reconcile", "save +node_lost:cannot list the channels of n1", "wait_grace +10s"}},
		{name: "node: did not come back", given: steps(placedB, at(4*time.Second, EventNodeDown{})), when: at(9*time.Second, EventGraceOver{}),
			phase: PhaseDone, status: "failed",
			acts: []string{"orphan n1 ua ub", `save status=failed reason=node_unavailable detail="node n1 did not come back"`, "wait_legs +43s"}},
		{name: "node: connected at the end of the grace", given: steps(placedB, at(4*time.Second, EventNodeDown{})),
			when:  at(9*time.Second, EventGraceOver{Connected: true}, EventChannels{Channels: map[string]string{"ua": "ACTIVE", "ub": "EARLY"}}),
			phase: PhaseCallingB,
			acts:  []string{"reconcile", "save +reconciled:connected to n1 at the end of the grace period; leg a present; leg b present"}},
		{name: "node: connected at the end of the grace, channels unknown", given: steps(placedB, at(4*time.Second, EventNodeDown{})),
			when:  at(9*time.Second, EventGraceOver{Connected: true}, EventChannelsFailed{}),
			phase: PhaseDone, status: "failed",
			acts: []string{"reconcile", "orphan n1 ua ub", `save status=failed reason=node_unavailable detail="node n1 did not come back"`, "wait_legs +43s"}},
		{name: "node: a stale grace timer", given: placedB, when: at(9*time.Second, EventGraceOver{}), phase: PhaseCallingB},
		{name: "node: back after the call ended", given: steps(placedB, at(4*time.Second, EventCancel{})), when: at(5*time.Second, EventNodeUp{}),
			phase: PhaseEnded, status: "failed"},
		{name: "node: lost after the call ended, legs orphaned", given: steps(placedB, at(4*time.Second, EventCancel{}, EventNodeDown{})),
			when: at(9*time.Second, EventGraceOver{}), phase: PhaseDone, status: "failed", acts: []string{"orphan n1 ua ub"}},

		// Adoption
		{name: "adopting: the node connected, its channels are listed", adopt: true, cb: bridgedCB, given: at(0, EventStart{}),
			when: at(0, EventAcquired{Node: "n1"}), phase: PhaseAdopting, status: "bridged", acts: []string{"reconcile"}},
		{name: "adopting: the call goes on", adopt: true, cb: bridgedCB, given: at(0, EventStart{}, EventAcquired{Node: "n1"}),
			when:  at(0, EventChannels{Channels: map[string]string{"ua": "ACTIVE", "ub": "ACTIVE"}}),
			phase: PhaseBridged, status: "bridged", acts: []string{"save +reconciled:adopted by ctl-1; leg a present; leg b present"}},
		{name: "adopting: the call ended while nobody watched", adopt: true, cb: bridgedCB, given: at(0, EventStart{}, EventAcquired{Node: "n1"}),
			when:  at(0, EventChannels{}),
			phase: PhaseDone, status: "completed",
			acts: []string{"save leg=a/ua hangup=+0s", "save leg=b/ub hangup=+0s", "save +reconciled:adopted by ctl-1; leg a gone; leg b gone",
				`save status=completed detail="leg a ended while untracked"`, "wait_legs +34s"}},
		{name: "adopting: the node is not there", adopt: true, cb: bridgedCB, given: at(0, EventStart{}),
			when: at(5*time.Second, EventNoNode{Detail: "node n1 unreachable after restart"}), phase: PhaseEnded, status: "failed",
			acts: []string{`save status=failed reason=node_unavailable detail="node n1 unreachable after restart"`, "wait_legs +39s"}},
		{name: "adopting: the channels cannot be listed", adopt: true, cb: bridgedCB, given: at(0, EventStart{}, EventAcquired{Node: "n1"}),
			when: at(0, EventChannelsFailed{}), phase: PhaseBridged, status: "bridged",
			acts: []string{"save +node_lost:cannot list the channels of n1", "wait_grace +5s"}},
		{name: "adopting: calling A, A answered meanwhile", adopt: true, cb: func(cb *callbridge.Callback) {
			cb.Legs = []*callbridge.CallbackLeg{{Leg: "a", UUID: "ua", Attempt: 1, Node: "n1"}}
		}, given: at(0, EventStart{}, EventAcquired{Node: "n1"}),
			when:  at(0, EventChannels{Channels: map[string]string{"ua": "ACTIVE"}}),
			phase: PhaseCallingB, status: "calling_b",
			acts: []string{"save leg=a/ua answered=+0s", "save +reconciled:adopted by ctl-1; leg a answered", saveAAnswered, promptA, originateB}},

		// PhaseEnded
		{name: "ended: the last leg's hangup is saved at best", given: steps(placedB, hangup(4*time.Second, "ub", "USER_BUSY")),
			when: hangup(8*time.Second, "ua", "NORMAL_CLEARING"), phase: PhaseDone, status: "failed",
			acts: []string{"save leg=a/ua hangup=+8s cause=NORMAL_CLEARING +leg_hangup(a):NORMAL_CLEARING best-effort"}},
		{name: "ended: a DELETE after the end", given: steps(placedB, hangup(4*time.Second, "ub", "USER_BUSY")),
			when: at(5*time.Second, EventCancel{}), phase: PhaseEnded, status: "failed"},
		{name: "ended: the legs never reported", given: steps(placedB, hangup(4*time.Second, "ub", "USER_BUSY")),
			when: at(38*time.Second, EventLegsWaitOver{}), phase: PhaseDone, status: "failed"},
		{name: "abandoned: the lease lost while bridged", given: bridged, when: at(20*time.Second, EventAbandon{}), phase: PhaseAbandoned, status: "bridged"},
		{name: "abandoned: nothing more is done", given: steps(bridged, at(20*time.Second, EventAbandon{})),
			when: hangup(21*time.Second, "ua", "NORMAL_CLEARING"), phase: PhaseAbandoned, status: "bridged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb := testCallback()
			if tt.cb != nil {
				tt.cb(cb)
			}
			cfg := testConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			s, _ := drive(t, NewState(cb, cfg, tt.adopt, t0), tt.given)
			s, acts := drive(t, s, tt.when)
			if s.Phase != tt.phase {
				t.Errorf("phase %s, want %s", s.Phase, tt.phase)
			}
			if tt.status != "" && s.Status != tt.status {
				t.Errorf("status %s, want %s", s.Status, tt.status)
			}
			if !slices.Equal(acts, tt.acts) {
				t.Errorf("actions:\n  got  %s\n  want %s", strings.Join(acts, "\n       "), strings.Join(tt.acts, "\n       "))
			}
		})
	}
}

func bridgedCB(cb *callbridge.Callback) {
	now := t0
	cb.Status, cb.Node = callbridge.CallbackBridged, "n1"
	cb.Legs = []*callbridge.CallbackLeg{
		{Leg: "a", UUID: "ua", Attempt: 1, Node: "n1", RingingAt: &now, AnsweredAt: &now},
		{Leg: "b", UUID: "ub", Attempt: 1, Node: "n1", RingingAt: &now, AnsweredAt: &now},
	}
}

func aAnsweredCB(cb *callbridge.Callback) {
	now := t0
	cb.Status, cb.Node = callbridge.CallbackAAnswered, "n1"
	cb.Legs = []*callbridge.CallbackLeg{{Leg: "a", UUID: "ua", Attempt: 1, Node: "n1", AnsweredAt: &now}}
}

func callingBCB(cb *callbridge.Callback) {
	now := t0
	cb.Status, cb.Node = callbridge.CallbackCallingB, "n1"
	cb.Legs = []*callbridge.CallbackLeg{
		{Leg: "a", UUID: "ua", Attempt: 1, Node: "n1", AnsweredAt: &now},
		{Leg: "b", UUID: "ub", Attempt: 1, Node: "n1"},
	}
}

// describe renders actions compactly, times as offsets from t0.
func describe(acts []Action) []string {
	var out []string
	off := func(t time.Time) string { return "+" + t.Sub(t0).String() }
	for _, a := range acts {
		var s string
		switch a := a.(type) {
		case ActionAcquire:
			s = "acquire"
		case ActionAttach:
			s = "attach " + a.Node
		case ActionAuthorize:
			if a.Both {
				s = fmt.Sprintf("authorize both a=%s b=%s max=%s ring_b=%s", a.UUIDA, a.UUIDB, a.Max, a.RingB)
			} else {
				s = fmt.Sprintf("authorize b b=%s max=%s", a.UUIDB, a.Max)
			}
		case ActionRelease:
			s = "release " + a.Leg + " " + a.UUID
		case ActionOriginate:
			s = fmt.Sprintf("originate %s uuid=%s timeout=%s limit=%s", a.Leg, a.UUID, a.Timeout, a.Limit)
			if a.Cap > 0 {
				s += " cap=" + a.Cap.String()
			}
			if a.Status != "" {
				s += " status=" + string(a.Status)
			}
			if a.Again {
				s += " again"
			}
			if a.Gateway != "" {
				s += fmt.Sprintf(" via=%s#%d", a.Gateway, a.Try)
			}
		case ActionRoute:
			s = "route " + a.Leg + " " + string(a.Number)
		case ActionHoldAttempt:
			s = "hold_attempt " + a.Leg + " " + a.UUID + " " + a.Gateway
		case ActionEndAttempt:
			s = fmt.Sprintf("end_attempt %s %s %s %s", a.Leg, a.UUID, a.Gateway, a.Outcome)
		case ActionFailover:
			s = fmt.Sprintf("failover %s %s->%s#%d %s sip=%d", a.Leg, a.From, a.To, a.Try, a.Cause, a.SIP)
		case ActionPrompt:
			s = "prompt " + a.UUID + " " + a.Path + " " + a.Name
		case ActionFailurePrompt:
			s = fmt.Sprintf("failure_prompt %s %s after=%s kill=%s", a.UUID, a.Path, a.After, a.KillCause)
		case ActionKill:
			s = "kill " + a.Leg + " " + a.UUID + " " + a.Cause
		case ActionSchedHangup:
			s = "sched_hangup " + a.Leg + " " + a.UUID + " " + a.After.String()
		case ActionBridge:
			s = "bridge " + a.A + " " + a.B
		case ActionRecord:
			s = "record " + a.UUID + " " + a.Path
		case ActionCheckLegs:
			s = "check_legs " + strings.Join(a.UUIDs, " ")
		case ActionCheckCancel:
			s = "check_cancel"
		case ActionReconcile:
			s = "reconcile"
		case ActionSave:
			s = describeSave(a, off)
		case ActionRefused:
			s = fmt.Sprintf("refused %s %s %s n=%d backoff=%s deadline=%s", a.Leg, a.UUID, a.Cause, a.Refusals, a.Backoff, off(a.Deadline))
			if a.Final {
				s += " final"
			}
		case ActionWaitGrace:
			s = "wait_grace " + off(a.At)
		case ActionStopGrace:
			s = "stop_grace"
		case ActionWaitBridge:
			s = "wait_bridge " + off(a.At)
		case ActionWaitLegs:
			s = "wait_legs " + off(a.Until)
		case ActionOrphan:
			s = "orphan " + a.Node + " " + strings.Join(a.UUIDs, " ")
		case ActionWake:
			s = "wake"
		default:
			s = fmt.Sprintf("unknown %T", a)
		}
		out = append(out, s)
	}
	return out
}

func describeSave(a ActionSave, off func(time.Time) string) string {
	u := a.Update
	s := "save"
	if u.Status != "" {
		s += " status=" + string(u.Status)
	}
	if u.Reason != "" {
		s += " reason=" + string(u.Reason)
	}
	if u.Detail != "" {
		s += fmt.Sprintf(" detail=%q", u.Detail)
	}
	if !u.RunAt.IsZero() {
		s += " run_at=" + off(u.RunAt)
	}
	if l := u.Leg; l != nil {
		s += " leg=" + l.Leg + "/" + l.UUID
		for _, f := range []struct {
			name string
			t    time.Time
		}{{"ringing", l.Ringing}, {"answered", l.Answered}, {"hangup", l.Hangup}} {
			if !f.t.IsZero() {
				s += " " + f.name + "=" + off(f.t)
			}
		}
		if l.Cause != "" {
			s += " cause=" + l.Cause
		}
	}
	for _, e := range u.Events {
		s += " +" + e.Type
		if e.Leg != "" {
			s += "(" + e.Leg + ")"
		}
		if e.Gateway != "" {
			s += fmt.Sprintf("[%s#%d %s %d %dms]", e.Gateway, e.GatewayAttempt, e.Cause, e.SIPStatus, e.DurationMS)
		}
		if e.Detail != "" {
			s += ":" + e.Detail
		}
	}
	if a.BestEffort {
		s += " best-effort"
	}
	return s
}

// TestScenarios drives whole callbacks in the orders the real switch
// produces them (realswitch/): every status saved, the outcome, and the
// commands that matter.
func TestScenarios(t *testing.T) {
	logTransitions(t)
	perLeg := func(c *Config) { c.PerLeg = true }
	tests := []struct {
		name     string
		cb       func(*callbridge.Callback)
		cfg      func(*Config)
		adopt    bool
		steps    []step
		statuses string // every status saved, in order
		reason   callbridge.FailReason
		phase    Phase
		has      []string // actions that must be among those taken
	}{
		{name: "completed, with the real switch's UNBRIDGE before HANGUP",
			steps: steps(bridged,
				at(20*time.Second, EventSeen{UUID: "ua"}, EventSeen{UUID: "ub"}), // CHANNEL_UNBRIDGE, some with a Hangup-Cause
				hangup(20*time.Second, "ua", "NORMAL_CLEARING"),
				at(20*time.Second, EventCancelChecked{}),
				hangup(20*time.Second, "ua", "NORMAL_CLEARING"), // CHANNEL_HANGUP_COMPLETE
				hangup(20*time.Second, "ub", "NORMAL_CLEARING")),
			statuses: "a_answered calling_b bridged completed", phase: PhaseDone,
			has: []string{bridgeAB, "sched_hangup a ua 1h0m0s", "sched_hangup b ub 1h0m0s", "kill b ub NORMAL_CLEARING"}},
		{name: "B's ring timer fires early on the real switch",
			steps:    steps(placedB, at(5*time.Second, EventRinging{UUID: "ub", At: t0.Add(5 * time.Second), Detail: "CHANNEL_PROGRESS"}), hangup(22100*time.Millisecond, "ub", "PROGRESS_TIMEOUT"), hangup(26*time.Second, "ua", "NORMAL_CLEARING")),
			statuses: "a_answered calling_b failed", reason: callbridge.ReasonBNoAnswer, phase: PhaseDone,
			has: []string{"failure_prompt ua /s/failed.wav after=4s kill=NORMAL_CLEARING"}},
		{name: "the reply to B's originate is lost, B is found on the node",
			steps: steps(answerA, at(3*time.Second, EventOriginateUnknown{Leg: "b", UUID: "ub", Detail: "esl: connection closed"}),
				at(3500*time.Millisecond, EventNodeUp{}, EventChannels{Channels: map[string]string{"ua": "ACTIVE", "ub": "EARLY"}}),
				at(6*time.Second, EventAnswered{UUID: "ub", At: t0.Add(6 * time.Second)}, EventParked{UUID: "ub"}, EventBridged{}),
				hangup(30*time.Second, "ub", "NORMAL_CLEARING"), at(30*time.Second, EventCancelChecked{}), hangup(30*time.Second, "ua", "NORMAL_CLEARING")),
			statuses: "a_answered calling_b bridged completed", phase: PhaseDone,
			has: []string{"save +reconciled:reconnected to n1; leg a present; leg b present", bridgeAB}},
		{name: "the reply to B's originate is lost, B never came to be",
			steps: steps(answerA, at(3*time.Second, EventOriginateUnknown{Leg: "b", UUID: "ub", Detail: "esl: connection closed"}),
				at(3500*time.Millisecond, EventNodeUp{}, EventChannels{Channels: map[string]string{"ua": "ACTIVE"}}),
				hangup(8*time.Second, "ua", "NORMAL_CLEARING")),
			statuses: "a_answered calling_b failed", reason: callbridge.ReasonNodeUnavailable, phase: PhaseDone,
			has: []string{"failure_prompt ua /s/failed.wav after=4s kill=NORMAL_CLEARING"}},
		{name: "the hangup event comes before the originate job's -ERR",
			steps: steps(placedA, at(0, EventSeen{UUID: "ua"}), hangup(time.Second, "ua", "UNALLOCATED_NUMBER"),
				at(time.Second, EventJobFailed{UUID: "ua", Cause: "UNALLOCATED_NUMBER", Detail: "-ERR UNALLOCATED_NUMBER"})),
			statuses: "failed", reason: callbridge.ReasonARejected, phase: PhaseDone},
		{name: "A refused twice by a loaded node, placed again within the deadline",
			steps: steps(refusedA, at(150*time.Millisecond, EventRetryDue{Leg: "a"}, EventAcquired{Node: "n2"}),
				at(150*time.Millisecond, EventOriginateFailed{Leg: "a", UUID: "ua2", Cause: "DESTINATION_OUT_OF_ORDER", Detail: "-ERR"}),
				at(400*time.Millisecond, EventRetryDue{Leg: "a"}, EventAcquired{Node: "n1"}, EventPlaced{Leg: "a", UUID: "ua3"}),
				at(3*time.Second, EventAnswered{UUID: "ua3", At: t0.Add(3 * time.Second)}, EventParked{UUID: "ua3"}),
				at(3*time.Second, EventPlaced{Leg: "b", UUID: "ub"}, EventAnswered{UUID: "ub", At: t0.Add(4 * time.Second)}, EventParked{UUID: "ub"}, EventBridged{}),
				hangup(9*time.Second, "ua3", "NORMAL_CLEARING"), at(9*time.Second, EventCancelChecked{}), hangup(9*time.Second, "ub", "NORMAL_CLEARING")),
			statuses: "a_answered calling_b bridged completed", phase: PhaseDone,
			has: []string{"refused a ua DESTINATION_OUT_OF_ORDER n=1 backoff=100ms deadline=+1m0s",
				"refused a ua2 DESTINATION_OUT_OF_ORDER n=2 backoff=200ms deadline=+1m0s",
				"originate a uuid= timeout=30s limit=1h0m0s again", "bridge ua3 ub"}},
		{name: "max duration: FreeSWITCH ends both legs",
			cb:       func(cb *callbridge.Callback) { cb.MaxDuration = 10 },
			steps:    steps(bridged, hangup(18*time.Second, "ub", "ALLOTTED_TIMEOUT"), hangup(18*time.Second, "ua", "ALLOTTED_TIMEOUT")),
			statuses: "a_answered calling_b bridged failed", reason: callbridge.ReasonMaxDuration, phase: PhaseDone,
			has: []string{"sched_hangup a ua 10s", "sched_hangup b ub 10s"}},
		{name: "prepaid cap: each leg's cap travels with its originate", cfg: perLeg,
			steps: steps(start,
				at(0, EventAuthorized{A: &EventGrant{UUID: "ua", Grant: 15 * time.Second, Reserved: true}, B: &EventGrant{UUID: "ub", Grant: 10 * time.Second, Reserved: true}}),
				at(0, EventPlaced{Leg: "a", UUID: "ua"}), at(3*time.Second, EventAnswered{UUID: "ua", At: t0.Add(3 * time.Second)}, EventParked{UUID: "ua"}, EventPlaced{Leg: "b", UUID: "ub"}),
				at(5*time.Second, EventAnswered{UUID: "ub", At: t0.Add(5 * time.Second)}, EventParked{UUID: "ub"}, EventBridged{}),
				hangup(15*time.Second, "ub", "ALLOTTED_TIMEOUT"), hangup(15*time.Second, "ua", "NORMAL_CLEARING")),
			statuses: "a_answered calling_b bridged failed", reason: callbridge.ReasonMaxDuration, phase: PhaseDone,
			has: []string{"originate a uuid=ua timeout=30s limit=15s cap=15s", "originate b uuid=ub timeout=20s limit=10s cap=10s status=calling_b"}},
		{name: "adopted after the controller was killed, the call goes on", adopt: true, cb: bridgedCB,
			steps: steps(at(0, EventStart{}, EventAcquired{Node: "n1"}, EventChannels{Channels: map[string]string{"ua": "ACTIVE", "ub": "ACTIVE"}}),
				hangup(5*time.Second, "ub", "NORMAL_CLEARING"), at(5*time.Second, EventCancelChecked{}), hangup(5*time.Second, "ua", "NORMAL_CLEARING")),
			statuses: "completed", phase: PhaseDone, has: []string{"kill a ua NORMAL_CLEARING"}},
		{name: "DELETE while A rings",
			steps: steps(placedA, at(time.Second, EventRinging{UUID: "ua", At: t0.Add(time.Second), Detail: "CHANNEL_PROGRESS"}, EventCancel{}),
				hangup(time.Second, "ua", "ORIGINATOR_CANCEL")),
			statuses: "failed", reason: callbridge.ReasonCancelled, phase: PhaseDone, has: []string{"kill a ua ORIGINATOR_CANCEL"}},
		{name: "DELETE while bridged, UNBRIDGE before HANGUP",
			steps: steps(bridged, at(10*time.Second, EventCancel{}, EventSeen{UUID: "ua"}, EventSeen{UUID: "ub"}),
				hangup(10*time.Second, "ua", "NORMAL_CLEARING"), hangup(10*time.Second, "ub", "NORMAL_CLEARING")),
			statuses: "a_answered calling_b bridged failed", reason: callbridge.ReasonCancelled, phase: PhaseDone,
			has: []string{"kill a ua NORMAL_CLEARING", "kill b ub NORMAL_CLEARING"}},
		{name: "uuid_bridge refused because B had just hung up",
			steps: steps(answerB, at(8*time.Second, EventBridgeFailed{Refused: true}), hangup(8*time.Second, "ub", "NORMAL_CLEARING"),
				hangup(12*time.Second, "ua", "NORMAL_CLEARING")),
			statuses: "a_answered calling_b failed", reason: callbridge.ReasonBRejected, phase: PhaseDone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb := testCallback()
			if tt.cb != nil {
				tt.cb(cb)
			}
			cfg := testConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			var statuses []string
			var reason callbridge.FailReason
			var all []string
			s := NewState(cb, cfg, tt.adopt, t0)
			for _, st := range tt.steps {
				var acts []Action
				s, acts = next(t, s, st.ev, t0.Add(st.at))
				for _, a := range acts {
					switch a := a.(type) {
					case ActionSave:
						if a.Update.Status != "" {
							statuses = append(statuses, string(a.Update.Status))
							reason = a.Update.Reason
						}
					case ActionOriginate: // records the leg with its status
						if a.Status != "" {
							statuses = append(statuses, string(a.Status))
						}
					}
				}
				all = append(all, describe(acts)...)
			}
			if got := strings.Join(statuses, " "); got != tt.statuses || reason != tt.reason {
				t.Errorf("statuses %q reason %q, want %q %q", got, reason, tt.statuses, tt.reason)
			}
			if s.Phase != tt.phase {
				t.Errorf("phase %s, want %s", s.Phase, tt.phase)
			}
			for _, h := range tt.has {
				if !slices.Contains(all, h) {
					t.Errorf("no action %q among:\n  %s", h, strings.Join(all, "\n  "))
				}
			}
		})
	}
}

// TestImports keeps the flow pure: its files may import the standard
// library's fmt, path and time, the root package and routing (its
// failover Policy, pure), nothing that performs I/O. TestPureDependencies
// (deps_test.go) bounds the package's whole dependency graph; this also
// keeps I/O packages of the standard library out.
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{`"fmt"`: true, `"path"`: true, `"time"`: true, `"callbridge"`: true, `"callbridge/routing"`: true}
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range f.Imports {
			if !allowed[imp.Path.Value] {
				t.Errorf("%s imports %s", name, imp.Path.Value)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no production files found")
	}
}
