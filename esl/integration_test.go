package esl_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"callbridge"
	"callbridge/esl"
	"callbridge/esl/esltest"
	"callbridge/esl/freeswitch"
)

// runClient connects a client to srv and returns it with a subscription
// that has seen SocketConnected.
func runClient(t *testing.T, srv *esltest.Server) (*esl.Client, *esl.Subscription) {
	t.Helper()
	c := esl.NewClient(esl.Config{Name: "fs1", Addr: srv.Addr(), Password: "ClueCon",
		BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	sub := c.Subscribe(0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	next(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.SocketConnected })
	return c, sub
}

func next(t *testing.T, sub *esl.Subscription, ok func(freeswitch.Event) bool) freeswitch.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for event: %v", err)
		}
		if ok(e) {
			return e
		}
	}
}

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestSimulatorCallback runs the callback flow against the simulator:
// originate A and B parked, bridge on answer, list channels, hang up,
// and read billmsec from CHANNEL_HANGUP_COMPLETE.
func TestSimulatorCallback(t *testing.T) {
	srv := esltest.NewServer()
	srv.Script = &esltest.Script{Rules: []esltest.Rule{{Prefix: "49", RingMS: 10, Outcome: esltest.OutcomeAnswer}}}
	defer srv.Close()
	c, sub := runClient(t, srv)

	legs := map[string]string{}
	for _, leg := range []string{"a", "b"} {
		j, err := c.Originate(tctx(t), freeswitch.Originate{
			Endpoint:       freeswitch.Gateway("carrier", "4930123456"),
			Vars:           []freeswitch.Var{{Name: callbridge.VarLeg, Value: leg}, {Name: callbridge.VarAccount, Value: "acc-1"}},
			CallerIDNumber: "4940111222",
			Timeout:        10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := j.Wait(tctx(t))
		if err != nil || got != j.UUID {
			t.Fatalf("leg %s: got %q, %v, want %q", leg, got, err, j.UUID)
		}
		legs[leg] = j.UUID
		next(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.ChannelAnswer && e.UUID == j.UUID })
	}
	bridge, err := freeswitch.UUIDBridge(legs["a"], legs["b"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.API(tctx(t), bridge); err != nil {
		t.Fatalf("uuid_bridge: %v", err)
	}
	e := next(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.ChannelBridge })
	if e.Var(callbridge.VarAccount) != "acc-1" {
		t.Errorf("got account var %q", e.Var(callbridge.VarAccount))
	}
	chans, err := c.Channels(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, ch := range chans {
		if ch.UUID == legs["a"] || ch.UUID == legs["b"] {
			found++
		}
	}
	if found != 2 {
		t.Errorf("show channels: found %d of our 2 legs in %+v", found, chans)
	}
	kill, _ := freeswitch.UUIDKill(legs["a"], "NORMAL_CLEARING")
	if _, err := c.API(tctx(t), kill); err != nil {
		t.Fatalf("uuid_kill: %v", err)
	}
	hc := next(t, sub, func(e freeswitch.Event) bool {
		return e.Name == freeswitch.ChannelHangupComplete && e.UUID == legs["a"]
	})
	if _, ok := hc.Int64("variable_billmsec"); !ok || hc.Var(callbridge.VarLeg) != "a" {
		t.Errorf("got billmsec %q leg %q", hc.Var("billmsec"), hc.Var(callbridge.VarLeg))
	}
	// A second kill is a typed -ERR.
	_, err = c.API(tctx(t), kill)
	var re *esl.ReplyError
	if !errors.As(err, &re) {
		t.Errorf("got %v, want *ReplyError", err)
	}
}

func TestSimulatorBusy(t *testing.T) {
	srv := esltest.NewServer()
	defer srv.Close()
	c, _ := runClient(t, srv)
	j, err := c.Originate(tctx(t), freeswitch.Originate{Endpoint: freeswitch.Gateway("carrier", "4930123486")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = j.Wait(tctx(t))
	var re *esl.ReplyError
	if !errors.As(err, &re) || re.Cause() != "USER_BUSY" {
		t.Fatalf("got %v, want -ERR USER_BUSY", err)
	}
}

// TestSimulatorDrop checks that a pending originate fails with ErrClosed
// when the simulator drops its connections, and that the client redials.
func TestSimulatorDrop(t *testing.T) {
	srv := esltest.NewServer()
	defer srv.Close()
	c, sub := runClient(t, srv)
	j, err := c.Originate(tctx(t), freeswitch.Originate{Endpoint: freeswitch.Gateway("carrier", "4930123480")}) // rings forever
	if err != nil {
		t.Fatal(err)
	}
	srv.DropEventConnections()
	if _, err := j.Wait(tctx(t)); !errors.Is(err, esl.ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
	next(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.SocketConnected })
	if _, err := c.API(tctx(t), freeswitch.Status()); err != nil {
		t.Fatalf("after redial: %v", err)
	}
	// Hazards injected on both connections are dropped, not fatal.
	srv.InjectFrame([]byte("Content-Type: log/data\nContent-Length: 3\n\nabc"))
	srv.InjectFrame([]byte("Content-Type: api/response\nContent-Length: 1\n\n-"))
	srv.Flood(100)
	if _, err := c.API(tctx(t), freeswitch.Status()); err != nil {
		t.Fatalf("after hazards: %v", err)
	}
	if st := c.Stats(); st.FramesDropped < 4 || st.State != esl.StateConnected {
		t.Errorf("got dropped %d state %v", st.FramesDropped, st.State)
	}
}

// TestOnJobDoneReportsEveryJob: the hook sees each finished job with its
// command word and outcome (serve turns it into the originate latency
// histogram).
func TestOnJobDoneReportsEveryJob(t *testing.T) {
	srv := esltest.NewServer()
	defer srv.Close()
	type done struct {
		verb string
		took time.Duration
		err  error
	}
	got := make(chan done, 8)
	c := esl.NewClient(esl.Config{Name: "fs1", Addr: srv.Addr(), Password: "ClueCon",
		OnJobDone: func(verb string, took time.Duration, err error) { got <- done{verb, took, err} }})
	sub := c.Subscribe(0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	next(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.SocketConnected })
	if _, err := c.API(tctx(t), freeswitch.Status()); err != nil {
		t.Fatal(err)
	}
	kill, _ := freeswitch.UUIDKill("00000000-0000-4000-8000-000000000001", "")
	if _, err := c.API(tctx(t), kill); err == nil {
		t.Fatal("uuid_kill of no channel succeeded")
	}
	for _, want := range []string{"status", "uuid_kill"} {
		select {
		case d := <-got:
			if d.verb != want || (want == "uuid_kill") != (d.err != nil) || d.took <= 0 {
				t.Errorf("OnJobDone(%q, %v, err=%v), want %q", d.verb, d.took, d.err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("OnJobDone not called for %s", want)
		}
	}
}

// inboundCall places an inbound call from a caller to x on srv and returns
// the inbound leg's CHANNEL_HANGUP_COMPLETE and those of the outbound legs
// the dialplan bridged it to (callbridge_x is x), in the order they ended.
func inboundCall(ctx context.Context, t *testing.T, srv *esltest.Server, sub *esl.Subscription, x string) (freeswitch.Event, []freeswitch.Event) {
	t.Helper()
	a, err := srv.Inbound(ctx, "4930555000", x)
	if err != nil {
		t.Fatal(err)
	}
	var legs []freeswitch.Event
	for {
		e := next(t, sub, func(e freeswitch.Event) bool { return e.Name == freeswitch.ChannelHangupComplete })
		if e.Get("Unique-ID") == a {
			return e, legs
		}
		if e.Var("callbridge_x") == x {
			legs = append(legs, e)
		}
	}
}
