package routing

import (
	"slices"
	"testing"

	"callbridge"
)

func TestClassify(t *testing.T) {
	def, err := NewPolicy(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	custom, err := NewPolicy([]string{"NORMAL_CIRCUIT_CONGESTION"}, []int{502})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		p     *Policy
		cause string
		sip   int
		want  Verdict
	}{
		{"temporary failure", def, "NORMAL_TEMPORARY_FAILURE", 0, Failover},
		{"gateway down", def, "GATEWAY_DOWN", 0, Failover},
		{"no route", def, "NO_ROUTE_DESTINATION", 0, Failover},
		{"timer expired", def, "RECOVERY_ON_TIMER_EXPIRE", 0, Failover},
		{"destination out of order", def, "DESTINATION_OUT_OF_ORDER", 0, Failover},
		{"carrier 503", def, "NORMAL_TEMPORARY_FAILURE", 503, Failover},
		{"carrier 503 whatever the cause", def, "INTERWORKING", 503, Failover},
		{"carrier 408", def, "RECOVERY_ON_TIMER_EXPIRE", 408, Failover},
		{"lower case, spaces", def, " gateway_down ", 0, Failover},
		{"busy", def, "USER_BUSY", 486, Stop},
		{"busy without SIP", def, "USER_BUSY", 0, Stop},
		{"no answer", def, "NO_ANSWER", 0, Stop},
		{"rejected", def, "CALL_REJECTED", 603, Stop},
		{"unallocated", def, "UNALLOCATED_NUMBER", 404, Stop},
		{"a callee SIP code beats a carrier cause", def, "NORMAL_TEMPORARY_FAILURE", 486, Stop},
		{"answered and hung up", def, "NORMAL_CLEARING", 0, Stop},
		{"unlisted failure", def, "INTERWORKING", 0, Stop},
		{"empty", def, "", 0, Stop},
		{"configured cause", custom, "NORMAL_CIRCUIT_CONGESTION", 0, Failover},
		{"configured code", custom, "INTERWORKING", 502, Failover},
		{"a default the configuration replaced", custom, "GATEWAY_DOWN", 503, Stop},
		{"callee causes stop under any configuration", custom, "USER_BUSY", 502, Stop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Classify(tt.cause, tt.sip); got != tt.want {
				t.Errorf("Classify(%q, %d): got %s, want %s", tt.cause, tt.sip, got, tt.want)
			}
		})
	}
	if got := def.Causes(); !slices.Equal(got, DefaultFailoverCauses) {
		t.Errorf("default causes: got %v", got)
	}
	if got := custom.SIPCodes(); !slices.Equal(got, []int{502}) {
		t.Errorf("custom codes: got %v", got)
	}
}

func TestNewPolicyRefuses(t *testing.T) {
	tests := []struct {
		name   string
		causes []string
		codes  []int
		field  string
	}{
		{"callee cause", []string{"GATEWAY_DOWN", "NO_ANSWER"}, nil, "failover_causes"},
		{"not a cause name", []string{"gateway down"}, nil, "failover_causes"},
		{"injection", []string{"GATEWAY_DOWN,USER_BUSY"}, nil, "failover_causes"},
		{"callee code", nil, []int{503, 603}, "failover_sip_codes"},
		{"not a failure code", nil, []int{200}, "failover_sip_codes"},
		{"out of range", nil, []int{700}, "failover_sip_codes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPolicy(tt.causes, tt.codes)
			if callbridge.ErrorCode(err) != callbridge.EINVALID || callbridge.ErrorField(err) != tt.field {
				t.Errorf("got %v, want EINVALID naming %s", err, tt.field)
			}
		})
	}
}
