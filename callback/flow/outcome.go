package flow

import (
	"fmt"

	"callbridge"
)

// failA ends the attempt on an A failure, or queues the callback again
// under the account's retry policy.
func (m *machine) failA(reason callbridge.FailReason) {
	s := &m.s
	if reason.Retries() && s.Attempt <= s.Retry.Attempts {
		s.Phase, s.EndBy = PhaseEnded, m.now.Add(s.Config.LegWait)
		m.save(callbridge.CallbackUpdate{
			Status: callbridge.CallbackQueued, RunAt: m.now.Add(s.Retry.Delay),
			Detail: fmt.Sprintf("retry %d of %d after %s in %s", s.Attempt, s.Retry.Attempts, reason, s.Retry.Delay),
			Events: []callbridge.CallbackEvent{{Type: callbridge.EventRetry, Leg: callbridge.LegA, Detail: string(reason)}},
		})
		m.do(ActionWake{}, ActionWaitLegs{Until: s.EndBy})
		return
	}
	m.finish(reason, "A: "+s.A.Cause)
}

// failB plays A the failure prompt and has FreeSWITCH hang A up after it
// (or hangs A up now), and fails the callback.
func (m *machine) failB(reason callbridge.FailReason) {
	s := &m.s
	p, ok := s.Config.FailurePrompts[reason]
	if !ok {
		p = s.Config.FailurePrompts[""]
	}
	if p != "" && s.A.Live() {
		m.do(ActionFailurePrompt{UUID: s.A.UUID, Path: p, After: s.Config.FailurePromptTime, KillCause: killCause(&s.A)})
	} else {
		m.kill(&s.A)
	}
	m.finish(reason, "B: "+s.B.Cause)
}

// finish ends the callback: completed when reason is empty, failed
// otherwise; then it waits for its legs to report hangup.
func (m *machine) finish(reason callbridge.FailReason, detail string) {
	s := &m.s
	if s.Ended() {
		return
	}
	status := callbridge.CallbackCompleted
	if reason != callbridge.ReasonNone {
		status = callbridge.CallbackFailed
	}
	s.Phase, s.EndBy = PhaseEnded, m.now.Add(s.Config.LegWait+s.Config.FailurePromptTime)
	m.save(callbridge.CallbackUpdate{Status: status, Reason: reason, Detail: detail})
	m.do(ActionWaitLegs{Until: s.EndBy})
}
