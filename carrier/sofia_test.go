package carrier_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"callbridge/carrier"
	"callbridge/esl"
	"callbridge/esl/esltest"
	"callbridge/esl/freeswitch"
	"callbridge/internal/wait"
	"callbridge/routing"
)

// TestCombineNodes: the gateway's state is UP when a node has it UP, DOWN
// when every node that has it says DOWN, unknown when none reports it; a
// forgotten node's view stops counting.
func TestCombineNodes(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	g := carrier.New(carrier.Config{})
	sofia := func(gw string) routing.SofiaState { return g.Health(gw, now).Sofia }
	g.SetNode("fs1", map[string]routing.SofiaState{"a": routing.SofiaDown, "b": routing.SofiaUp})
	g.SetNode("fs2", map[string]routing.SofiaState{"a": routing.SofiaUp, "b": routing.SofiaDown})
	steps := []struct {
		name string
		do   func()
		want map[string]routing.SofiaState
	}{
		{"each up on one node", func() {}, map[string]routing.SofiaState{"a": routing.SofiaUp, "b": routing.SofiaUp, "c": routing.SofiaUnknown}},
		{"a down on both", func() { g.SetNodeGateway("fs2", "a", routing.SofiaDown) }, map[string]routing.SofiaState{"a": routing.SofiaDown, "b": routing.SofiaUp}},
		{"fs1 forgotten: fs2's view alone", func() { g.ForgetNode("fs1") }, map[string]routing.SofiaState{"a": routing.SofiaDown, "b": routing.SofiaDown}},
		{"fs2's new report drops a", func() { g.SetNode("fs2", map[string]routing.SofiaState{"b": routing.SofiaUp}) }, map[string]routing.SofiaState{"a": routing.SofiaUnknown, "b": routing.SofiaUp}},
		{"no node", func() { g.ForgetNode("fs2") }, map[string]routing.SofiaState{"a": routing.SofiaUnknown, "b": routing.SofiaUnknown}},
	}
	for _, s := range steps {
		s.do()
		for gw, want := range s.want {
			if got := sofia(gw); got != want {
				t.Errorf("%s: %s is %s, want %s", s.name, gw, got, want)
			}
		}
	}
	if r := g.Begin(context.Background(), "a", now); r != routing.ReasonOK {
		t.Errorf("a gateway no node reports is tried: got %s", r)
	}
}

// startNode runs a simulated node with gateways and a client subscribed to
// their state events.
func startNode(t *testing.T, name string, gws ...esltest.Gateway) (*esltest.Server, *esl.Client) {
	t.Helper()
	srv := esltest.NewUnstartedServer()
	srv.Gateways = gws
	srv.Start()
	t.Cleanup(srv.Close)
	c := esl.NewClient(esl.Config{Name: name, Addr: srv.Addr(), Password: "ClueCon", Subclasses: []string{freeswitch.GatewayStateSubclass}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv, c
}

// TestWatch follows two simulated nodes: the gateways' states arrive by
// the first poll, a DOWN on one node leaves the gateway UP, a DOWN on both
// (by sofia::gateway_state: the poll interval is an hour) makes it DOWN
// and skipped by Begin and by resolution, and a node whose connection is
// lost stops counting.
func TestWatch(t *testing.T) {
	s1, c1 := startNode(t, "fs1", esltest.Gateway{Name: "carrier"}, esltest.Gateway{Name: "backup"})
	s2, c2 := startNode(t, "fs2", esltest.Gateway{Name: "carrier"}, esltest.Gateway{Name: "backup", Status: "DOWN"})
	g := carrier.New(carrier.Config{PollInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Watch(ctx, c1, c2) }()
	defer func() { cancel(); <-done }()

	state := func(want map[string]routing.SofiaState) func() (bool, string) {
		return func() (bool, string) {
			got := fmt.Sprint(g.Snapshot(time.Now()))
			for gw, s := range want {
				if g.Health(gw, time.Now()).Sofia != s {
					return false, got
				}
			}
			return true, got
		}
	}
	wait.ForState(t, "both nodes' reports", func() (bool, string) {
		st := g.Snapshot(time.Now())
		for _, s := range st {
			if len(s.Nodes) != 2 {
				return false, fmt.Sprint(st)
			}
		}
		return len(st) == 2, fmt.Sprint(st)
	})
	wait.ForState(t, "carrier and backup up", state(map[string]routing.SofiaState{"carrier": routing.SofiaUp, "backup": routing.SofiaUp}))
	if st := g.Snapshot(time.Now()); len(st) != 2 || st[0].Gateway != "backup" || st[0].Nodes["fs1"] != routing.SofiaUp || st[0].Nodes["fs2"] != routing.SofiaDown {
		t.Errorf("snapshot %+v", st)
	}

	if err := s1.SetGatewayStatus("carrier", "DOWN"); err != nil {
		t.Fatal(err)
	}
	wait.ForState(t, "carrier DOWN on fs1", func() (bool, string) {
		st := g.Snapshot(time.Now())
		return st[1].Nodes["fs1"] == routing.SofiaDown, fmt.Sprint(st)
	})
	if s := g.Health("carrier", time.Now()).Sofia; s != routing.SofiaUp {
		t.Errorf("carrier DOWN on fs1 only: %s, want up", s)
	}
	if err := s2.SetGatewayStatus("carrier", "DOWN"); err != nil {
		t.Fatal(err)
	}
	wait.ForState(t, "carrier DOWN on both", state(map[string]routing.SofiaState{"carrier": routing.SofiaDown}))
	if r := g.Begin(ctx, "carrier", time.Now()); r != routing.ReasonSofiaDown {
		t.Errorf("Begin through carrier: %s, want sofia_down", r)
	}
	plan, err := routing.NewPlan(routing.PlanInfo{ID: "p", Name: "p", Default: true, TimeZone: "UTC", Currency: "EUR"}, time.UTC,
		[]routing.Route{{Prefix: "49", Strategy: routing.Priority, Days: 127, Until: 86400,
			Gateways: []routing.Target{{Gateway: "carrier"}, {Gateway: "backup"}}}})
	if err != nil {
		t.Fatal(err)
	}
	var res routing.Resolution
	plan.Resolve(&res, "4930123456", time.Now(), routing.Sources{Health: g})
	if a := res.Attempts(); len(a) != 1 || a[0].Gateway != "backup" || res.Candidates[1].Reason != routing.ReasonSofiaDown {
		t.Errorf("resolution %+v, want backup only, carrier skipped as sofia_down", res.Candidates)
	}

	// fs1 goes away: only fs2 counts, where backup is DOWN.
	s1.Close()
	wait.ForState(t, "fs1 forgotten", state(map[string]routing.SofiaState{"backup": routing.SofiaDown}), wait.Within(30*time.Second))
	if err := s2.SetGatewayStatus("carrier", "UP"); err != nil {
		t.Fatal(err)
	}
	wait.ForState(t, "carrier back UP on fs2", state(map[string]routing.SofiaState{"carrier": routing.SofiaUp}))
}
