package cdr

import (
	"context"
	"testing"
	"time"

	"callbridge"
	"callbridge/esl/esltest"
	"callbridge/esl/freeswitch"
	"callbridge/internal/wait"
	"callbridge/postgres"

	"github.com/google/uuid"
)

// liveLeg stores a leg believed up on node.
func (e *testEnv) liveLeg(t *testing.T, node string, start, answer time.Time, maxMS int64) string {
	t.Helper()
	id := uuid.NewString()
	l := &callbridge.LiveChannel{UUID: id, Node: node, Leg: callbridge.LegCallbackA, AccountID: e.acc, Direction: "outbound",
		Caller: "4940123456", Callee: "4930555", Presented: "4940123456", Gateway: "carrier",
		StartAt: start, AnswerAt: answer, MaxMS: maxMS, SeenAt: start}
	if _, err := postgres.NewCDRStore(e.db).WriteBatch(context.Background(), nil, []*callbridge.LiveChannel{l}); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestCDRReconcileClosesLegsTheNodeNoLongerHas(t *testing.T) {
	e := newTestEnv(t, func(s *esltest.Server) {
		s.Script = &esltest.Script{Rules: []esltest.Rule{{Prefix: "4930777", Outcome: esltest.OutcomeAnswer}}}
	})
	now := time.Now().UTC()
	// Hung up while no controller listened: answered 10 minutes ago, its
	// hangup never seen.
	gone := e.liveLeg(t, "fs1", now.Add(-11*time.Minute), now.Add(-10*time.Minute), 3600000)
	r := e.start(t, e.spool, nil)
	wait.For(t, "estimated CDR", func() bool { return e.count(t) == 1 })
	c, err := postgres.NewCDRStore(e.db).CDRByUUID(context.Background(), gone)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Flags.Has(callbridge.CDREstimated) || c.HangupCause != estimatedCause {
		t.Errorf("flags %v cause %s, want estimated UNKNOWN", c.Flags, c.HangupCause)
	}
	// Billed from its answer until it was found gone.
	if c.BillMS < 600000 || c.BillMS > 600000+int64(testTimeout/time.Millisecond) {
		t.Errorf("bill %d ms, want about 10 minutes", c.BillMS)
	}
	if c.Sell != 2000*((c.BillMS+999)/1000) {
		t.Errorf("sell %d for %d ms", c.Sell, c.BillMS)
	}
	if r.p.Stats().Estimated != 1 {
		t.Errorf("estimated = %d, want 1", r.p.Stats().Estimated)
	}

	// A leg the node still has survives a reconnection's reconciliation.
	job, err := r.client.Originate(context.Background(), freeswitch.Originate{Endpoint: freeswitch.Gateway("carrier", "4930777000"),
		Vars: []freeswitch.Var{{Name: callbridge.VarAccount, Value: e.acc}}})
	if err != nil {
		t.Fatal(err)
	}
	store := postgres.NewCDRStore(e.db)
	wait.For(t, "the new leg live", func() bool {
		live, _ := store.LiveChannels(context.Background(), "fs1")
		return len(live) == 1 && live[0].UUID == job.UUID
	})
	before := r.p.Stats().Reconciliations
	e.sim.DropEventConnections()
	wait.For(t, "reconciliation after the reconnect", func() bool { return r.p.Stats().Reconciliations > before })
	if _, err := store.CDRByUUID(context.Background(), job.UUID); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("a live leg was closed by the reconciliation: %v", err)
	}
}

func TestCDRSweep(t *testing.T) {
	e := newTestEnv(t, func(s *esltest.Server) {
		s.Script = &esltest.Script{Rules: []esltest.Rule{{Prefix: "4930777", Outcome: esltest.OutcomeAnswer}}}
	})
	r := e.start(t, e.spool, func(c *Config) {
		c.Now = e.sim.Now // legs carry the simulator's times
		c.SweepInterval = time.Hour
	})
	ctx := context.Background()
	now := e.sim.Now().UTC()
	store := postgres.NewCDRStore(e.db)

	// A leg on a node no longer configured, 2 h past its answer with a
	// one-minute maximum: closed at its maximum.
	orphan := e.liveLeg(t, "fs-retired", now.Add(-2*time.Hour-time.Second), now.Add(-2*time.Hour), 60000)
	// A leg within its maximum is left alone.
	young := e.liveLeg(t, "fs-retired", now.Add(-time.Second), now, 3600000)
	// A leg the node still has, past its maximum: hung up, and its own
	// hangup makes the CDR.
	job, err := r.client.Originate(ctx, freeswitch.Originate{Endpoint: freeswitch.Gateway("carrier", "4930777000"),
		Vars: []freeswitch.Var{{Name: callbridge.VarAccount, Value: e.acc}, {Name: callbridge.VarMaxMS, Value: "1000"}}})
	if err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the call answered", func() bool {
		for _, l := range mustLive(t, store) {
			if l.UUID == job.UUID && !l.AnswerAt.IsZero() {
				return true
			}
		}
		return false
	})
	e.sim.Jump(time.Minute)

	if n := r.p.Sweep(ctx); n != 1 {
		t.Errorf("sweep closed %d legs, want 1", n)
	}
	wait.For(t, "two CDRs", func() bool { return e.count(t) == 2 })
	c, err := store.CDRByUUID(ctx, orphan)
	if err != nil {
		t.Fatal(err)
	}
	if c.BillMS != 60000 || c.Sell != 120000 || c.Buy != 60000 || !c.Flags.Has(callbridge.CDREstimated) {
		t.Errorf("orphan: bill %d sell %d buy %d flags %v, want 60000 120000 60000 estimated", c.BillMS, c.Sell, c.Buy, c.Flags)
	}
	killed, err := store.CDRByUUID(ctx, job.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if killed.Flags.Has(callbridge.CDREstimated) || killed.HangupCause != "ALLOTTED_TIMEOUT" {
		t.Errorf("overdue live call: cause %s flags %v, want its real ALLOTTED_TIMEOUT hangup", killed.HangupCause, killed.Flags)
	}
	if _, err := store.CDRByUUID(ctx, young); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("a leg within its maximum was closed: %v", err)
	}
}

func mustLive(t *testing.T, store *postgres.CDRStore) []*callbridge.LiveChannel {
	t.Helper()
	live, err := store.LiveChannels(context.Background(), "fs1")
	if err != nil {
		t.Fatal(err)
	}
	return live
}

// A callback leg is recorded live before it is originated; when
// FreeSWITCH refuses the originate before a session exists (an unknown
// sofia profile) only a CHANNEL_DESTROY in state CS_NONE comes, without a
// cause, and the job's -ERR: the leg is closed with the job's cause,
// unanswered, at no cost, lasting nothing.
func TestCDRDestroyClosesALegNeverCreated(t *testing.T) {
	e := newTestEnv(t)
	r := e.start(t, e.spool, nil)
	wait.For(t, "the first reconciliation", func() bool { return r.p.Stats().Reconciliations > 0 })
	start := time.Now().UTC()
	const maxMS = 3600000
	id := e.liveLeg(t, "fs1", start, time.Time{}, maxMS)
	job, err := r.client.Originate(context.Background(), freeswitch.Originate{UUID: id, Endpoint: freeswitch.Profile("nosuchprofile", "4930777000", "127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Wait(context.Background()); err == nil {
		t.Fatal("originate to an unknown profile succeeded")
	}
	store := postgres.NewCDRStore(e.db)
	wait.For(t, "the CDR of the destroyed leg", func() bool {
		_, err := store.CDRByUUID(context.Background(), id)
		return err == nil
	})
	c, err := store.CDRByUUID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if c.Answered() || c.BillMS != 0 || c.Sell != 0 || !c.Flags.Has(callbridge.CDRUnanswered) {
		t.Errorf("got answered %v bill %d sell %d flags %v, want an unanswered leg at no cost", c.Answered(), c.BillMS, c.Sell, c.Flags)
	}
	if c.DurationMS != 0 || c.HangupCause != "INVALID_PROFILE" || c.Flags.Has(callbridge.CDREstimated) {
		t.Errorf("duration %d ms cause %s flags %v, want 0, the job's INVALID_PROFILE, exact", c.DurationMS, c.HangupCause, c.Flags)
	}
	if st := r.p.Stats(); st.Estimated != 0 || st.Reconciliations != 1 {
		t.Errorf("estimated %d, reconciliations %d: closed by a reconciliation, not its destroy", st.Estimated, st.Reconciliations)
	}
	if live, _ := store.LiveChannels(context.Background(), "fs1"); len(live) != 0 {
		t.Errorf("%d legs left live", len(live))
	}
}

// Under the max_duration missing-hangup policy, a leg a reconciliation
// finds gone is charged its maximum duration at the rate in force, not
// until it was found gone, and its CDR names the policy.
func TestCDRMissingHangupPolicyMaxDuration(t *testing.T) {
	e := newTestEnv(t, func(s *esltest.Server) {})
	ctx := context.Background()
	bill := postgres.NewBillingStore(e.db, time.UTC, "test")
	if err := bill.SetProfile(ctx, &callbridge.BillingProfile{AccountID: e.acc, PaymentDays: 30, MissingHangup: callbridge.HangupMaxDuration}); err != nil {
		t.Fatal(err)
	}
	if p, err := bill.MissingHangupPolicy(ctx, e.acc); err != nil || p != callbridge.HangupMaxDuration {
		t.Fatalf("MissingHangupPolicy = %q, %v", p, err)
	}
	now := time.Now().UTC()
	gone := e.liveLeg(t, "fs1", now.Add(-11*time.Minute), now.Add(-10*time.Minute), 3600000)
	r := e.start(t, e.spool, func(c *Config) { c.Policies = bill })
	wait.For(t, "estimated CDR", func() bool { return e.count(t) == 1 })
	c, err := postgres.NewCDRStore(e.db).CDRByUUID(ctx, gone)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Flags.Has(callbridge.CDREstimated|callbridge.CDRMaxDuration) || c.HangupCause != estimatedCause {
		t.Errorf("flags %v cause %s, want estimated,max_duration UNKNOWN", c.Flags, c.HangupCause)
	}
	if c.BillMS != 3600000 || c.Sell != 2000*3600 {
		t.Errorf("bill %d ms sell %d, want its maximum 3600000 ms at 2000 a second", c.BillMS, c.Sell)
	}
	if r.p.Stats().Estimated != 1 {
		t.Errorf("estimated = %d, want 1", r.p.Stats().Estimated)
	}
}
