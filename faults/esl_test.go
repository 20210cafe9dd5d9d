//go:build faults

package faults

import (
	"callbridge/postgres/pgtest"
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"
)

// outcomes counts the final states of callbacks and fails the test for
// any failure without a reason.
func outcomes(t testing.TB, db *sql.DB, ids []string) map[string]int {
	t.Helper()
	st := callbackStatuses(t, db)
	out := map[string]int{}
	for _, id := range ids {
		s := st[id]
		if s == "failed" {
			t.Errorf("callback %s failed without a reason", id)
		}
		out[s]++
	}
	return out
}

// estimatedCDRs counts CDRs flagged estimated.
func estimatedCDRs(t testing.TB, db *sql.DB) int {
	t.Helper()
	_, flags := cdrCounts(t, db)
	n := 0
	for _, f := range flags {
		if strings.Contains(f, "estimated") {
			n++
		}
	}
	return n
}

// TestFaultESLEventConnectionDropped drops the node's event connection
// while calls are bridged; hangups that happen before the controller is
// subscribed again are missed and must be reconciled: every callback ends,
// every channel gets exactly one CDR.
func TestFaultESLEventConnectionDropped(t *testing.T) {
	dbURL, db := newDatabase(t)
	fs := newNode(t, 10, talkScript) // 4930777…: 20 s of talk in 2 s
	c := startController(t, controllerConfig{DatabaseURL: dbURL, ESL: []string{fs.Addr()}})
	c.waitReady()
	_, key := c.createAccount("Events")
	ids := placeCallbacks(t, c, key, "4930777", 10)
	waitStatus(t, c, ids, "bridged", 30*time.Second)

	// Drop the event connection, and end half the calls from the far end
	// at once, before the controller can have subscribed again.
	fs.DropEventConnections()
	chans := fs.Channels()
	for i, ch := range chans {
		if i%4 == 0 {
			fs.Hangup(ch.UUID, "NORMAL_CLEARING")
		}
	}
	waitFor(t, 90*time.Second, "every callback final", func() (bool, string) { return allFinal(t, db, ids) })
	t.Logf("outcomes: %v", outcomes(t, db, ids))
	waitFor(t, 30*time.Second, "no channel left up", func() (bool, string) {
		n := len(fs.Channels())
		return n == 0, fmt.Sprintf("%d channels up", n)
	})
	want := hungUp(fs)
	waitFor(t, 60*time.Second, "one CDR per hangup", func() (bool, string) { return checkCDRs(t, db, want) })
	t.Logf("%d CDRs, %d estimated", len(want), estimatedCDRs(t, db))
}

// TestFaultESLCommandConnectionDropped drops every connection of the node
// while originates are in flight (replies held back): the callbacks whose
// command was lost fail with a reason or are placed once, never twice.
func TestFaultESLCommandConnectionDropped(t *testing.T) {
	dbURL, db := newDatabase(t)
	fs := newNode(t, 10, "")
	c := startController(t, controllerConfig{DatabaseURL: dbURL, ESL: []string{fs.Addr()}})
	c.waitReady()
	_, key := c.createAccount("Commands")

	fs.SetReplyDelay(2 * time.Second)
	ids := placeCallbacks(t, c, key, "4930555", 6)
	waitFor(t, 30*time.Second, "originates in flight", func() (bool, string) {
		n := len(originated(fs))
		return n >= 3, fmt.Sprintf("%d originates received", n)
	})
	fs.DropConnections()
	fs.SetReplyDelay(0)

	waitFor(t, 90*time.Second, "every callback final", func() (bool, string) { return allFinal(t, db, ids) })
	t.Logf("outcomes: %v", outcomes(t, db, ids))
	checkNoDuplicateCalls(t, db, fs)
	checkPlacedOnce(t, db, fs)
	waitFor(t, 30*time.Second, "no channel left up", func() (bool, string) {
		n := len(fs.Channels())
		return n == 0, fmt.Sprintf("%d channels up", n)
	})
	want := hungUp(fs)
	waitFor(t, 60*time.Second, "one CDR per hangup", func() (bool, string) { return checkCDRs(t, db, want) })
	t.Logf("%d CDRs, %d estimated", len(want), estimatedCDRs(t, db))
}

// TestFaultESLNodeGone closes one of two nodes for good during a stream of
// callbacks: calls live on it fail with node_unavailable, new callbacks go
// to the other node and complete.
func TestFaultESLNodeGone(t *testing.T) {
	dbURL, db := newDatabase(t)
	fs1 := newNode(t, 10, "")
	fs2 := newNode(t, 10, "")
	c := startController(t, controllerConfig{DatabaseURL: dbURL, ESL: []string{fs1.Addr(), fs2.Addr()},
		Env: map[string]string{"CALLBRIDGE_MAX_CALLS": "1000"}})
	c.waitReady()
	_, key := c.createAccount("Nodes")

	l := startLoad(t, c, key, nil, 60*time.Millisecond)
	waitFor(t, 30*time.Second, "calls on both nodes", func() (bool, string) {
		n1, n2 := len(fs1.Channels()), len(fs2.Channels())
		return n1 > 2 && n2 > 2, fmt.Sprintf("%d and %d channels", n1, n2)
	})
	// What node 1 ended before it went away must have CDRs; what was
	// live on it then cannot be learnt any more.
	endedOn1 := hungUp(fs1)
	liveOn1 := liveUUIDs(fs1)
	var onNode1 []string
	pgtest.Select(context.Background(), db, &onNode1, `SELECT id FROM callbacks WHERE node = $1 AND status IN ('calling_a','a_answered','calling_b','bridged')`, fs1.Addr())
	fs1.Close()
	closedAt := time.Now()
	time.Sleep(3 * time.Second)
	l.stopLoad()
	if len(l.bad) > 0 {
		t.Errorf("unexpected API answers: %v", l.bad)
	}

	waitFor(t, 90*time.Second, "every callback final", func() (bool, string) { return allFinal(t, db, l.accepted) })
	t.Logf("outcomes: %v", outcomes(t, db, l.accepted))
	st := callbackStatuses(t, db)
	for _, id := range onNode1 {
		if s := st[id]; s != "failed/node_unavailable" && !strings.HasPrefix(s, "completed") && !strings.HasPrefix(s, "failed/") {
			t.Errorf("callback %s live on the lost node ended %s", id, s)
		}
	}
	var after []struct {
		Status string `db:"status"`
		Reason string `db:"reason"`
		Node   string `db:"node"`
	}
	if err := pgtest.Select(context.Background(), db, &after, `SELECT status, coalesce(reason, '') AS reason, node FROM callbacks WHERE created_at > $1`, closedAt.Add(500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	completed := 0
	for _, a := range after {
		if a.Node == fs1.Addr() {
			t.Errorf("a callback asked for after node 1 was gone was placed on it (%s %s)", a.Status, a.Reason)
		}
		if a.Status == "completed" {
			completed++
		}
	}
	if len(after) == 0 || completed == 0 {
		t.Errorf("after node 1 was gone: %d callbacks, %d completed; want them to fail over to node 2", len(after), completed)
	}
	t.Logf("%d callbacks live on node 1 when it went away, %d callbacks after, %d completed on node 2", len(onNode1), len(after), completed)

	checkNoDuplicateCalls(t, db, fs1, fs2)
	waitFor(t, 30*time.Second, "no channel left up on node 2", func() (bool, string) {
		n := len(fs2.Channels())
		return n == 0, fmt.Sprintf("%d channels up", n)
	})
	want := hungUp(fs2)
	for u := range endedOn1 {
		want[u] = true
	}
	waitFor(t, 60*time.Second, "one CDR per hangup", func() (bool, string) { return checkCDRs(t, db, want) })
	t.Logf("%d legs were live on node 1 when it went away", len(liveOn1))
}
