package cdr

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/esl"
	"callbridge/esl/esltest"
	"callbridge/esl/freeswitch"
	"callbridge/internal/wait"
	"callbridge/postgres"

	"github.com/google/uuid"
)

// keptRecords lists the CDR records the simulated node keeps.
func keptRecords(t *testing.T, sim *esltest.Server) []string {
	t.Helper()
	c := esl.NewClient(esl.Config{Name: "check", Addr: sim.Addr(), Password: "ClueCon"})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	go c.Run(ctx)
	wait.For(t, "check client connected", func() bool { return c.State() == esl.StateConnected })
	cmd, _ := freeswitch.HashDump(callbridge.CDRHookRealm)
	out, err := c.API(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(out)
}

// A leg that ends while its controller is disconnected gets its exact CDR
// from the record FreeSWITCH kept, once the controller is back: the real
// talk time and cause, not an estimate ending at the reconnection.
func TestCDRKeptRecordWhileDisconnected(t *testing.T) {
	e := newTestEnv(t, func(s *esltest.Server) {
		s.Speed = 1 // real time: talk times are compared with the wall clock
		s.Script = &esltest.Script{Rules: []esltest.Rule{{Prefix: "4930777", Outcome: esltest.OutcomeAnswer}}}
	})
	r := e.start(t, e.spool, nil)
	wait.For(t, "the first reconciliation", func() bool { return r.p.Stats().Reconciliations > 0 })
	job, err := r.client.Originate(context.Background(), freeswitch.Originate{Endpoint: freeswitch.Gateway("carrier", "4930777000"),
		Vars: []freeswitch.Var{{Name: callbridge.VarAccount, Value: e.acc}, {Name: callbridge.VarLeg, Value: callbridge.LegCallbackA}}})
	if err != nil {
		t.Fatal(err)
	}
	store := postgres.NewCDRStore(e.db)
	wait.For(t, "the leg answered and live", func() bool {
		live, _ := store.LiveChannels(context.Background(), "fs1")
		return len(live) == 1 && !live[0].AnswerAt.IsZero()
	})
	time.Sleep(300 * time.Millisecond)

	// The controller loses the node; the far end hangs up meanwhile.
	e.sim.SetRefuseAuth(true)
	e.sim.DropConnections()
	wait.For(t, "the controller disconnected", func() bool { return r.client.State() != esl.StateConnected })
	before := e.sim.Now()
	if err := e.sim.Hangup(job.UUID, "NORMAL_CLEARING"); err != nil {
		t.Fatal(err)
	}
	hungUp := e.sim.Now()
	time.Sleep(700 * time.Millisecond)
	e.sim.SetRefuseAuth(false)

	wait.For(t, "the CDR of the leg", func() bool {
		_, err := store.CDRByUUID(context.Background(), job.UUID)
		return err == nil
	})
	c, err := store.CDRByUUID(context.Background(), job.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Flags.Has(callbridge.CDREstimated) || c.HangupCause != "NORMAL_CLEARING" || c.Q850 != 16 {
		t.Errorf("flags %v cause %s q850 %d, want exact NORMAL_CLEARING 16", c.Flags, c.HangupCause, c.Q850)
	}
	// The hangup happened between before and hungUp on the simulator's
	// clock: the bill ends there, not at the reconnection.
	if lo, hi := before.Sub(c.AnswerAt).Milliseconds()-1, hungUp.Sub(c.AnswerAt).Milliseconds()+1; c.BillMS < lo || c.BillMS > hi {
		t.Errorf("bill %d ms, want %d to %d ms (the talk time, not until the reconnection)", c.BillMS, lo, hi)
	}
	if c.Leg != callbridge.LegCallbackA || c.AccountID != e.acc || c.Callee != "4930777000" || c.Caller == "" || c.SellDeckID == "" {
		t.Errorf("leg %s account %s callee %s caller %q sell %d flags %v, want the leg's attribution and price", c.Leg, c.AccountID, c.Callee, c.Caller, c.Sell, c.Flags)
	}
	// The pipeline counts a kept record once its CDR is committed and the
	// record deleted, after the CDR shows in the store.
	wait.For(t, "the record deleted", func() bool { return len(keptRecords(t, e.sim)) == 0 })
	wait.ForState(t, "the kept record counted", func() (bool, string) {
		st := r.p.Stats()
		return st.Kept >= 1, fmt.Sprintf("kept %d", st.Kept)
	})
	if st := r.p.Stats(); st.Kept != 1 || st.Estimated != 0 {
		t.Errorf("kept %d estimated %d, want 1 and 0", st.Kept, st.Estimated)
	}
	if live, _ := store.LiveChannels(context.Background(), "fs1"); len(live) != 0 {
		t.Errorf("%d legs left live", len(live))
	}
}

// A leg that starts and ends while no controller runs at all still gets
// its CDR, attributed from the variables callbridge set on it.
func TestCDRKeptRecordWithoutController(t *testing.T) {
	e := newTestEnv(t, func(s *esltest.Server) {
		s.Speed = 1
		s.Script = &esltest.Script{Rules: []esltest.Rule{{Prefix: "4930777", Outcome: esltest.OutcomeAnswer, TalkMS: 420}}}
	})
	other := esl.NewClient(esl.Config{Name: "other", Addr: e.sim.Addr(), Password: "ClueCon"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go other.Run(ctx)
	wait.For(t, "originating client connected", func() bool { return other.State() == esl.StateConnected })
	id := uuid.NewString()
	job, err := other.Originate(ctx, freeswitch.Originate{UUID: id, Endpoint: freeswitch.Gateway("carrier", "4930777000"),
		Vars: []freeswitch.Var{{Name: callbridge.VarAccount, Value: e.acc}, {Name: callbridge.VarLeg, Value: callbridge.LegCallbackB}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the call over", func() bool { return len(e.sim.Channels()) == 0 })
	over := e.sim.Now()
	if recs := keptRecords(t, e.sim); len(recs) != 1 {
		t.Fatalf("records kept: %q, want one", recs)
	}

	r := e.start(t, e.spool, nil)
	store := postgres.NewCDRStore(e.db)
	wait.For(t, "the CDR of the leg", func() bool {
		_, err := store.CDRByUUID(context.Background(), id)
		return err == nil
	})
	c, err := store.CDRByUUID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	// The call was over before the controller started: its bill is the
	// 420 ms of talk (the simulator may end it late, never early) and ends
	// before then.
	if end := c.AnswerAt.Add(time.Duration(c.BillMS-1) * time.Millisecond); c.BillMS < 420 || end.After(over) ||
		c.HangupCause != "NORMAL_CLEARING" || c.Flags.Has(callbridge.CDREstimated) {
		t.Errorf("bill %d ms ending %v (call over at %v) cause %s flags %v, want the 420 ms talk time, NORMAL_CLEARING, exact",
			c.BillMS, end, over, c.HangupCause, c.Flags)
	}
	if c.Leg != callbridge.LegCallbackB || c.AccountID != e.acc || c.Callee != "4930777000" || c.Gateway != "carrier" || c.SellDeckID == "" {
		t.Errorf("leg %s account %s callee %s gateway %s sell %d, want the variables callbridge set", c.Leg, c.AccountID, c.Callee, c.Gateway, c.Sell)
	}
	// The pipeline counts a kept record once its CDR is committed and the
	// record deleted, after the CDR shows in the store.
	wait.For(t, "the record deleted", func() bool { return len(keptRecords(t, e.sim)) == 0 })
	wait.For(t, "the kept record counted", func() bool { return r.p.Stats().Kept >= 1 })
	if n := r.p.Stats().Kept; n != 1 {
		t.Errorf("kept %d, want 1", n)
	}
}

// When the controller listens, the CDR comes from the event and the
// record is deleted once it is committed: nothing accumulates.
func TestCDRKeptRecordDeletedAfterEvent(t *testing.T) {
	e := newTestEnv(t, func(s *esltest.Server) {
		s.Script = &esltest.Script{Rules: []esltest.Rule{{Prefix: "4930777", Outcome: esltest.OutcomeAnswer, TalkMS: 5000}}}
	})
	r := e.start(t, e.spool, nil)
	for range 3 {
		job, err := r.client.Originate(context.Background(), freeswitch.Originate{Endpoint: freeswitch.Gateway("carrier", "4930777000")})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := job.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, "three CDRs", func() bool { return e.count(t) == 3 })
	wait.For(t, "the records deleted", func() bool { return len(keptRecords(t, e.sim)) == 0 })
	if st := r.p.Stats(); st.Kept != 0 {
		t.Errorf("kept %d, want 0: the events made the CDRs", st.Kept)
	}
}

// A leg FreeSWITCH refuses at originate (here max-sessions: only the
// job's -ERR comes, no channel event) gets its CDR at once, with the
// refusal's cause and no duration, and leaves live_channels.
func TestCDRRefusedOriginate(t *testing.T) {
	e := newTestEnv(t, func(s *esltest.Server) {
		s.MaxSessions = 1
		s.Script = &esltest.Script{Rules: []esltest.Rule{{Prefix: "4930777", Outcome: esltest.OutcomeAnswer}}}
	})
	r := e.start(t, e.spool, nil)
	wait.For(t, "the first reconciliation", func() bool { return r.p.Stats().Reconciliations > 0 })
	busy, err := r.client.Originate(context.Background(), freeswitch.Originate{Endpoint: freeswitch.Gateway("carrier", "4930777000")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := busy.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A callback leg is recorded live before it is originated.
	id := e.liveLeg(t, "fs1", time.Now().UTC(), time.Time{}, 3600000)
	job, err := r.client.Originate(context.Background(), freeswitch.Originate{UUID: id, Endpoint: freeswitch.Gateway("carrier", "4930777001")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Wait(context.Background()); err == nil || !strings.Contains(err.Error(), "DESTINATION_OUT_OF_ORDER") {
		t.Fatalf("got %v, want -ERR DESTINATION_OUT_OF_ORDER", err)
	}
	refused := time.Now()
	store := postgres.NewCDRStore(e.db)
	wait.For(t, "the CDR of the refused leg", func() bool {
		_, err := store.CDRByUUID(context.Background(), id)
		return err == nil
	})
	if d := time.Since(refused); d > 3*time.Second {
		t.Errorf("CDR after %v, want at once", d)
	}
	c, err := store.CDRByUUID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if c.HangupCause != "DESTINATION_OUT_OF_ORDER" || c.DurationMS != 0 || c.BillMS != 0 || c.Sell != 0 || c.Flags.Has(callbridge.CDREstimated) {
		t.Errorf("cause %s duration %d bill %d sell %d flags %v, want DESTINATION_OUT_OF_ORDER, 0, 0, 0, exact",
			c.HangupCause, c.DurationMS, c.BillMS, c.Sell, c.Flags)
	}
	if c.Leg != callbridge.LegCallbackA || c.AccountID != e.acc {
		t.Errorf("leg %s account %s, want the live leg's attribution", c.Leg, c.AccountID)
	}
	live, _ := store.LiveChannels(context.Background(), "fs1")
	for _, l := range live {
		if l.UUID == id {
			t.Error("the refused leg is still live")
		}
	}
	if st := r.p.Stats(); st.Refused != 1 || st.Estimated != 0 {
		t.Errorf("refused %d estimated %d, want 1 and 0", st.Refused, st.Estimated)
	}
	// The answered leg is untouched by the refusal.
	if _, err := store.CDRByUUID(context.Background(), busy.UUID); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("the live leg got a CDR: %v", err)
	}
}

func TestParseKept(t *testing.T) {
	id := "0f1e2d3c-4b5a-4697-8877-665544332211"
	acc := "8b1c3a5e-2f7d-4c11-9d0e-5a6b7c8d9e0f"
	// As the real switch wrote it (freeswitch-conf README), with our ids.
	good := "D/callbridge_cdr_" + id + "/v1;1796535911592009;1796535911631333;1796535911651338;59;20;NORMAL_CLEARING;16;outbound;outbound;" +
		acc + ";;" + acc + ";95900;4930100100;4930555;carrier;1736ff7f-f9d2-4414-bc2f-fe7555a3af5a;"
	c, err := parseKept("fs1", good)
	if err != nil {
		t.Fatal(err)
	}
	if c.UUID != id || c.BillMS != 20 || c.DurationMS != 59 || c.HangupCause != "NORMAL_CLEARING" || c.Q850 != 16 ||
		c.Leg != callbridge.LegOutbound || c.AccountID != acc || c.BindingID != acc || c.MaxMS != 95900 ||
		c.Callee != "4930555" || c.Presented != "4930100100" || c.Gateway != "carrier" || c.OtherUUID != "1736ff7f-f9d2-4414-bc2f-fe7555a3af5a" ||
		c.Direction != "outbound" || c.Node != "fs1" || c.AnswerAt.Sub(c.StartAt) != 39324*time.Microsecond {
		t.Errorf("got %+v", c)
	}
	for _, bad := range []string{
		"D/callbridge_cdr_x/v1;1;1;1;0;0;NONE;0;inbound;;;;;;;;;;",
		strings.Replace(good, "/v1;", "/v2;", 1), // v2 has one more field
		strings.Replace(good, "/v1;", "/v3;", 1),
		strings.Replace(good, "/v1;", "/v2;", 1) + ";2;",
		strings.Replace(good, ";carrier;", ";carrier;x;", 1),
		strings.Replace(good, "1796535911651338", "1796535911000000", 1), // ends before its answer
		strings.Replace(good, "1796535911592009", "", 1),
	} {
		if _, err := parseKept("fs1", bad); err == nil {
			t.Errorf("parseKept(%q) succeeded", bad)
		}
	}
	// v2 adds the attempt of a leg a route plan routed.
	c, err = parseKept("fs1", strings.Replace(good, "/v1;", "/v2;", 1)+";2")
	if err != nil {
		t.Fatal(err)
	}
	if c.Attempt != 2 || c.Gateway != "carrier" || c.OtherUUID != "1736ff7f-f9d2-4414-bc2f-fe7555a3af5a" {
		t.Errorf("v2: attempt %d gateway %q other %q, want 2 carrier 1736ff7f-...", c.Attempt, c.Gateway, c.OtherUUID)
	}
	if c, err = parseKept("fs1", strings.Replace(good, "/v1;", "/v2;", 1)+";x"); err != nil || c.Attempt != 0 {
		t.Errorf("v2 with a bad attempt: %v, attempt %d; want the record, attempt 0", err, c.Attempt)
	}
	// Fields that are not what callbridge sets are left empty.
	odd := strings.Replace(strings.Replace(good, ";outbound;outbound;", ";sideways;b0gus;", 1), ";carrier;", ";car rier;", 1)
	c, err = parseKept("fs1", odd)
	if err != nil {
		t.Fatal(err)
	}
	if c.Direction != "" || c.Leg != callbridge.LegPlain || c.Gateway != "" {
		t.Errorf("direction %q leg %q gateway %q, want empty, plain, empty", c.Direction, c.Leg, c.Gateway)
	}
}

func FuzzParseKept(f *testing.F) {
	f.Add("D/callbridge_cdr_0f1e2d3c-4b5a-4697-8877-665544332211/v1;1;2;3;2;1;NORMAL_CLEARING;16;inbound;inbound;;;;;;;;;")
	f.Fuzz(func(t *testing.T, line string) {
		c, err := parseKept("fs1", line)
		if err != nil {
			return
		}
		if !callbridge.IsUUID(c.UUID) || c.EndAt.Before(c.StartAt) || c.BillMS < 0 || c.DurationMS < 0 || !isCauseName(c.HangupCause) {
			t.Fatalf("parseKept(%q) = %+v", line, c)
		}
		for _, s := range []string{c.Caller, c.Callee, c.Presented, c.Gateway, c.Direction, c.Leg} {
			if s != sanitize(s) || strings.ContainsAny(s, ";/") {
				t.Fatalf("unsafe field %q from %q", s, line)
			}
		}
	})
}

// written waits until every record queued so far is in the database.
func (r *process) written(t *testing.T) {
	t.Helper()
	req := &reconcileReq{node: "fs1", ready: make(chan struct{})}
	if !r.p.add(context.Background(), record{barrier: req}) {
		t.Fatal("pipeline stopped")
	}
	select {
	case <-req.ready:
	case <-time.After(10 * time.Second):
		t.Fatal("queued records not written within 10 s")
	}
}

// An originate's job can answer -ERR for a leg that goes on: on the real
// switch, under load, the engine's uuid_bridge took B (answered) before
// FreeSWITCH's originate of B had returned; the originate then gave up
// with -ERR ORIGINATOR_CANCEL and B talked on, bridged, until its
// ALLOTTED_TIMEOUT. Taken for a refusal, that -ERR closed B at once with
// a 0 ms ORIGINATOR_CANCEL CDR, and B's own hangup was then a duplicate.
// A leg the node created is closed by its own hangup, never as refused.
func TestCDRJobErrorForALegTheNodeCreated(t *testing.T) {
	e := newTestEnv(t, func(s *esltest.Server) {
		s.Script = &esltest.Script{Rules: []esltest.Rule{{Prefix: "4930777", Outcome: esltest.OutcomeAnswer}}}
	})
	r := e.start(t, e.spool, nil)
	wait.For(t, "the first reconciliation", func() bool { return r.p.Stats().Reconciliations > 0 })
	ctx := context.Background()
	// A callback leg is recorded live before it is originated.
	id := e.liveLeg(t, "fs1", time.Now().UTC(), time.Time{}, 3600000)
	job, err := r.client.Originate(ctx, freeswitch.Originate{UUID: id, Endpoint: freeswitch.Gateway("carrier", "4930777001")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	r.written(t) // its CHANNEL_CREATE and CHANNEL_ANSWER
	// What FreeSWITCH sends when uuid_bridge takes the answered leg from
	// its originate.
	body := "-ERR ORIGINATOR_CANCEL\n"
	ev := "Event-Name: BACKGROUND_JOB\nFreeSWITCH-Hostname: fs1\nFreeSWITCH-Switchname: fs1\n" +
		"Job-UUID: " + uuid.NewString() + "\nJob-Command: originate\n" +
		"Job-Command-Arg: " + url.PathEscape("{origination_uuid="+id+",originate_timeout=30}sofia/gateway/carrier/4930777001 set:x=y,park inline") + "\n" +
		fmt.Sprintf("Content-Length: %d\n\n%s", len(body), body)
	e.sim.InjectFrame(fmt.Appendf(nil, "Content-Length: %d\nContent-Type: text/event-plain\n\n%s", len(ev), ev))
	wait.For(t, "the job's -ERR taken", func() bool { return r.p.Stats().Refused == 1 })
	r.written(t) // after the refusal's hold
	time.Sleep(50 * time.Millisecond)
	if err := e.sim.Hangup(id, "ALLOTTED_TIMEOUT"); err != nil {
		t.Fatal(err)
	}
	store := postgres.NewCDRStore(e.db)
	wait.For(t, "the leg's CDR", func() bool {
		_, err := store.CDRByUUID(ctx, id)
		return err == nil
	})
	r.written(t)
	c, err := store.CDRByUUID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if c.HangupCause != "ALLOTTED_TIMEOUT" || !c.Answered() || c.Flags.Has(callbridge.CDREstimated) {
		t.Errorf("CDR cause %s answered %v bill %d ms flags %v, want the leg's own hangup: ALLOTTED_TIMEOUT, answered, exact",
			c.HangupCause, c.Answered(), c.BillMS, c.Flags)
	}
	if st := r.p.Stats(); st.Inserted != 1 {
		t.Errorf("inserted %d CDRs, want 1", st.Inserted)
	}
}

// The refusal and the leg's first events can be written together (batches
// queued while the database was slow): the events in the batch show the
// node created the leg.
func TestCDRJobErrorInTheBatchOfTheLegsEvents(t *testing.T) {
	e := newTestEnv(t)
	p, err := NewPipeline(Config{Store: postgres.NewCDRStore(e.db), Pricer: NewPricer(e.decks, e.logger), SpoolDir: e.spool, Logger: e.logger})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	created := e.liveLeg(t, "fs1", now, time.Time{}, 3600000)
	refused := e.liveLeg(t, "fs1", now, time.Time{}, 3600000)
	answer := &callbridge.LiveChannel{UUID: created, Node: "fs1", Leg: callbridge.LegCallbackB, Direction: "outbound",
		StartAt: now, AnswerAt: now.Add(time.Second), SeenAt: now.Add(time.Second)}
	recs := []record{
		{Live: answer},
		{Destroyed: &destroyEvent{UUID: created, Node: "fs1", At: now.Add(2 * time.Second), Cause: "ORIGINATOR_CANCEL", Refused: true}},
		{Destroyed: &destroyEvent{UUID: refused, Node: "fs1", At: now.Add(2 * time.Second), Cause: "DESTINATION_OUT_OF_ORDER", Refused: true}},
	}
	if err := p.tryWrite(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	store := postgres.NewCDRStore(e.db)
	if c, err := store.CDRByUUID(context.Background(), created); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("the leg the node created got a CDR from the job's -ERR: %+v %v", c, err)
	}
	if c, err := store.CDRByUUID(context.Background(), refused); err != nil || c.HangupCause != "DESTINATION_OUT_OF_ORDER" {
		t.Errorf("the refused leg: %+v %v, want its DESTINATION_OUT_OF_ORDER CDR", c, err)
	}
	live := mustLive(t, store)
	if len(live) != 1 || live[0].UUID != created || live[0].AnswerAt.IsZero() {
		t.Errorf("live legs %+v, want only the created one, answered", live)
	}
}
