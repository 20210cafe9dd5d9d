package fswitch

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"callbridge/esl/esltest/internal/call"
)

// The switch runs without a socket: an api originate returns once the far
// end answers, its reply comes just before its API event with nothing
// between them, and every event leaves through Emit in Event-Sequence
// order.
func TestAPIOriginateWithoutSocket(t *testing.T) {
	var mu sync.Mutex
	var got []string // event names, and "reply" where the reply came
	var seqs []int
	s := New(Config{Speed: 100, Emit: func(e *call.Event) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, e.Name)
		n, err := strconv.Atoi(e.Get("Event-Sequence"))
		if err != nil {
			t.Errorf("%s: Event-Sequence %q", e.Name, e.Get("Event-Sequence"))
		}
		seqs = append(seqs, n)
	}})
	t.Cleanup(s.Close)
	var out string
	s.API("originate", "sofia/internal/1000 &park()", nil, func(o string) {
		mu.Lock()
		defer mu.Unlock()
		out = o
		got = append(got, "reply")
	})
	id, ok := strings.CutPrefix(strings.TrimSpace(out), "+OK ")
	if !ok || !s.Exists(id) {
		t.Fatalf("originate = %q, want +OK and a live channel's uuid", out)
	}
	mu.Lock()
	defer mu.Unlock()
	i := slices.Index(got, "reply")
	if i < 0 || i+1 >= len(got) || got[i+1] != "API" {
		t.Errorf("events %q: want the API event right after the reply", got)
	}
	for _, name := range []string{"CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_EXECUTE"} {
		if !slices.Contains(got[:max(i, 0)], name) {
			t.Errorf("events before the reply %q: want %s", got[:max(i, 0)], name)
		}
	}
	for j, n := range seqs {
		if n != seqs[0]+j {
			t.Fatalf("Event-Sequence %v: want consecutive numbers in Emit order", seqs)
		}
	}
}
