package call

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Outcome is how a simulated far end finally responds to a call.
type Outcome string

// Outcomes a Rule may name.
const (
	OutcomeAnswer      Outcome = "answer"      // 200 OK
	OutcomeBusy        Outcome = "busy"        // 486 Busy Here: USER_BUSY
	OutcomeNoAnswer    Outcome = "no_answer"   // rings until the originate or bridge timeout: NO_ANSWER
	OutcomeUnallocated Outcome = "unallocated" // 404: UNALLOCATED_NUMBER
	OutcomeRejected    Outcome = "rejected"    // 603 Decline: CALL_REJECTED
	OutcomeFail        Outcome = "fail"        // unreachable: NORMAL_TEMPORARY_FAILURE
)

// Rule scripts the far end of every dialled number that starts with Prefix.
type Rule struct {
	// Prefix of the dialled number (digits as dialled); the longest match wins.
	Prefix string `json:"prefix"`
	// RingMS is how long the far end rings (180, CHANNEL_PROGRESS) before
	// early media or the outcome; 0 means no ringing.
	RingMS int64 `json:"ring_ms"`
	// EarlyMediaMS is how long the far end sends early media (183 with SDP,
	// CHANNEL_PROGRESS_MEDIA) before the outcome; 0 means none.
	EarlyMediaMS int64 `json:"early_media_ms"`
	// Outcome is the final response.
	Outcome Outcome `json:"outcome"`
	// TalkMS is how long an answered far end stays before it hangs up itself
	// (BYE, NORMAL_CLEARING); 0 means it stays until hung up.
	TalkMS int64 `json:"talk_ms"`
}

// Script maps dialled numbers to far-end behaviour. The zero Script (or a nil
// *Script) gives the default behaviour documented in the package comment.
type Script struct {
	Rules []Rule `json:"rules"`
}

// ParseScript parses a JSON script and validates every rule.
func ParseScript(data []byte) (*Script, error) {
	var s Script
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("esltest: parse script: %w", err)
	}
	for i, r := range s.Rules {
		switch r.Outcome {
		case OutcomeAnswer, OutcomeBusy, OutcomeNoAnswer, OutcomeUnallocated, OutcomeRejected, OutcomeFail:
		default:
			return nil, fmt.Errorf("esltest: script rule %d: unknown outcome %q", i, r.Outcome)
		}
		if r.RingMS < 0 || r.EarlyMediaMS < 0 || r.TalkMS < 0 {
			return nil, fmt.Errorf("esltest: script rule %d: negative duration", i)
		}
	}
	return &s, nil
}

// LoadScript reads and parses a JSON script file.
func LoadScript(path string) (*Script, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("esltest: load script: %w", err)
	}
	return ParseScript(data)
}

// Lookup returns the rule for a dialled number: the longest matching prefix
// of the script, else the default behaviour.
func (s *Script) Lookup(number string) Rule {
	if s != nil {
		best := -1
		for i, r := range s.Rules {
			if strings.HasPrefix(number, r.Prefix) && (best < 0 || len(r.Prefix) > len(s.Rules[best].Prefix)) {
				best = i
			}
		}
		if best >= 0 {
			return s.Rules[best]
		}
	}
	return DefaultRule(number)
}

// DefaultRule is the behaviour of a number no script rule matches, chosen by
// its last three digits.
func DefaultRule(number string) Rule {
	switch {
	case strings.HasSuffix(number, "486"):
		return Rule{Outcome: OutcomeBusy}
	case strings.HasSuffix(number, "480"):
		return Rule{RingMS: 1000, Outcome: OutcomeNoAnswer}
	case strings.HasSuffix(number, "404"):
		return Rule{Outcome: OutcomeUnallocated}
	case strings.HasSuffix(number, "603"):
		return Rule{Outcome: OutcomeRejected}
	case strings.HasSuffix(number, "183"):
		return Rule{EarlyMediaMS: 1000, Outcome: OutcomeAnswer, TalkMS: 3000}
	}
	return Rule{RingMS: 1000, Outcome: OutcomeAnswer, TalkMS: 3000}
}
