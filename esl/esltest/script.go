package esltest

import "callbridge/esl/esltest/internal/call"

// Script maps dialled numbers to far-end behaviour: a list of Rules, the
// longest matching Prefix winning. The zero Script (or a nil *Script)
// gives the default behaviour documented in the package comment.
type Script = call.Script

// Rule scripts the far end of every dialled number that starts with its
// Prefix: RingMS of ringing, EarlyMediaMS of early media, then its
// Outcome, and, answered, TalkMS of talk before it hangs up itself (0:
// until hung up).
type Rule = call.Rule

// Outcome is how a simulated far end finally responds to a call.
type Outcome = call.Outcome

// Outcomes a Rule may name.
const (
	OutcomeAnswer      = call.OutcomeAnswer      // 200 OK
	OutcomeBusy        = call.OutcomeBusy        // 486 Busy Here: USER_BUSY
	OutcomeNoAnswer    = call.OutcomeNoAnswer    // rings until the originate or bridge timeout: NO_ANSWER
	OutcomeUnallocated = call.OutcomeUnallocated // 404: UNALLOCATED_NUMBER
	OutcomeRejected    = call.OutcomeRejected    // 603 Decline: CALL_REJECTED
	OutcomeFail        = call.OutcomeFail        // unreachable: NORMAL_TEMPORARY_FAILURE
)

// ParseScript parses a JSON script and validates every rule.
func ParseScript(data []byte) (*Script, error) { return call.ParseScript(data) }

// LoadScript reads and parses a JSON script file.
func LoadScript(path string) (*Script, error) { return call.LoadScript(path) }

// DefaultRule is the behaviour of a number no script rule matches, chosen
// by its last three digits.
func DefaultRule(number string) Rule { return call.DefaultRule(number) }
