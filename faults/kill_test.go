//go:build faults

package faults

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"callbridge/esl/esltest"
	"callbridge/postgres/pgtest"
)

// TestFaultKillAndRestart kills the controller with SIGKILL in the middle
// of a stream of callbacks and starts it again (same address, so the same
// lease owner, and the same spool). Every accepted callback reaches a final
// status, every channel that hung up has exactly one CDR (those whose
// hangup came while no controller listened are closed by reconciliation
// and flagged estimated), and no call is placed twice.
func TestFaultKillAndRestart(t *testing.T) {
	dbURL, db := newDatabase(t)
	fs := newNode(t, 4, "") // ring 250 ms, talk 750 ms
	cfg := controllerConfig{DatabaseURL: dbURL, ESL: []string{fs.Addr()}, HTTPAddr: freeAddr(t), SpoolDir: t.TempDir()}
	c := startController(t, cfg)
	c.waitReady()
	_, key := c.createAccount("Killed")

	l := startLoad(t, c, key, nil, 50*time.Millisecond)
	waitFor(t, 30*time.Second, "calls in every state", func() (bool, string) {
		st := callbackStatuses(t, db)
		seen := map[string]bool{}
		for _, s := range st {
			seen[s] = true
		}
		return len(st) >= 20 && seen["bridged"] && (seen["calling_a"] || seen["calling_b"]), fmt.Sprintf("%d callbacks", len(st))
	})
	c.kill()
	l.stopLoad()
	before := len(fs.Channels())
	t.Logf("killed with %d channels up, %d callbacks accepted", before, len(l.accepted))
	time.Sleep(time.Second) // calls go on and end with no controller listening

	c2 := startController(t, cfg)
	c2.waitReady()
	l2 := startLoad(t, c2, key, nil, 50*time.Millisecond)
	time.Sleep(2 * time.Second)
	l2.stopLoad()

	accepted := append(append([]string(nil), l.accepted...), l2.accepted...)
	// A request in flight at the kill sees its connection cut: the
	// client cannot know whether it was stored, and retries with an
	// Idempotency-Key. Any other answer is a fault.
	for _, b := range append(l.bad, l2.bad...) {
		if !strings.HasPrefix(b, "0 ") {
			t.Errorf("unexpected API answer: %s", b)
		} else {
			t.Logf("cut by the kill: %s", b)
		}
	}
	waitFor(t, 90*time.Second, "every accepted callback final", func() (bool, string) { return allFinal(t, db, accepted) })
	st := callbackStatuses(t, db)
	outcomes := map[string]int{}
	for _, id := range accepted {
		outcomes[st[id]]++
	}
	t.Logf("callback outcomes: %v", outcomes)

	checkNoDuplicateCalls(t, db, fs)
	waitFor(t, 60*time.Second, "no channel left up", func() (bool, string) {
		n := len(fs.Channels())
		return n == 0, fmt.Sprintf("%d channels up", n)
	})
	want := hungUp(fs)
	waitFor(t, 60*time.Second, "one CDR per hangup", func() (bool, string) { return checkCDRs(t, db, want) })
	_, flags := cdrCounts(t, db)
	estimated := 0
	for _, f := range flags {
		if strings.Contains(f, "estimated") {
			estimated++
		}
	}
	t.Logf("%d callbacks, %d channels, %d CDRs (%d estimated by reconciliation)", len(accepted), len(want), len(flags), estimated)
}

// checkNoDuplicateCalls asserts that no origination_uuid was sent twice
// to the nodes given and that every one sent belongs to a callback leg.
func checkNoDuplicateCalls(t testing.TB, db *sql.DB, nodes ...*esltest.Server) {
	t.Helper()
	sent := originated(nodes...)
	var dup []string
	for u, n := range sent {
		if n > 1 {
			dup = append(dup, fmt.Sprintf("%s×%d", u, n))
		}
	}
	sort.Strings(dup)
	if len(dup) > 0 {
		t.Errorf("calls placed twice (origination_uuid sent more than once): %v", dup)
	}
	var legs []struct {
		Callback string `db:"callback_id"`
		Leg      string `db:"leg"`
		Attempt  int    `db:"attempt"`
		UUID     string `db:"uuid"`
	}
	if err := pgtest.Select(context.Background(), db, &legs, `SELECT callback_id, leg, attempt, uuid::text AS uuid FROM callback_legs`); err != nil {
		t.Fatal(err)
	}
	// A leg is recorded before its originate is sent, so a leg whose
	// command never reached the node is fine; an originate no leg records
	// would be a call nobody follows.
	recorded := map[string]bool{}
	for _, l := range legs {
		recorded[l.UUID] = true
	}
	for u := range sent {
		if !recorded[u] {
			t.Errorf("originate %s belongs to no recorded callback leg: a call nobody follows", u)
		}
	}
}
