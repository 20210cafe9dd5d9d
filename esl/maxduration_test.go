package esl_test

import (
	"callbridge/esl/esltest"
	"callbridge/esl/freeswitch"
	"testing"
	"time"
)

// The bridge's variables are where the real switch puts them, and
// max_duration as the controller enforces it (sched_hangup on both legs
// with ALLOTTED_TIMEOUT) ends both legs ALLOTTED_TIMEOUT, Q.850 16, as on
// a real FreeSWITCH 1.10.12 (issue 12), not B with NORMAL_CLEARING.
func TestSimulatorMaxDurationEndsBothLegs(t *testing.T) {
	srv := esltest.NewServer()
	srv.Script = &esltest.Script{Rules: []esltest.Rule{{Prefix: "49", RingMS: 10, Outcome: esltest.OutcomeAnswer}}}
	defer srv.Close()
	c, sub := runClient(t, srv)
	var legs []string
	for range 2 {
		j, err := c.Originate(tctx(t), freeswitch.Originate{Endpoint: freeswitch.Gateway("carrier", "4930123456"), Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.Wait(tctx(t)); err != nil {
			t.Fatal(err)
		}
		legs = append(legs, j.UUID)
	}
	bridge, _ := freeswitch.UUIDBridge(legs[0], legs[1])
	if _, err := c.API(tctx(t), bridge); err != nil {
		t.Fatal(err)
	}
	// As captured from the real switch: CHANNEL_BRIDGE names the other
	// leg in bridge_uuid and signal_bond, not yet in last_bridge_to.
	br := next(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.ChannelBridge })
	if br.Has("variable_last_bridge_to") || br.Var("signal_bond") != legs[1] || br.Var("bridge_uuid") != legs[1] {
		t.Errorf("CHANNEL_BRIDGE: last_bridge_to %q signal_bond %q bridge_uuid %q", br.Var("last_bridge_to"), br.Var("signal_bond"), br.Var("bridge_uuid"))
	}
	for _, id := range legs {
		cmd, err := freeswitch.SchedHangup(2*time.Second, id, "ALLOTTED_TIMEOUT")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.API(tctx(t), cmd); err != nil {
			t.Fatal(err)
		}
	}
	srv.Jump(2 * time.Second)
	ended := map[string]freeswitch.Event{}
	for len(ended) < 2 {
		hc := next(t, sub, func(e freeswitch.Event) bool {
			return e.Name == freeswitch.ChannelHangupComplete && (e.UUID == legs[0] || e.UUID == legs[1])
		})
		ended[hc.UUID] = hc
	}
	for id, hc := range ended {
		if hc.Var("last_bridge_to") == "" {
			t.Errorf("leg %s: CDR without last_bridge_to", id)
		}
		if hc.Var("hangup_cause") != "ALLOTTED_TIMEOUT" || hc.Var("hangup_cause_q850") != "16" {
			t.Errorf("leg %s: cause %s q850 %s, want ALLOTTED_TIMEOUT 16", id, hc.Var("hangup_cause"), hc.Var("hangup_cause_q850"))
		}
	}
}
