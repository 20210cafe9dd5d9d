//go:build faults

package faults

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"callbridge/esl/esltest"
	"callbridge/postgres/pgtest"
)

// callbackVars finds the callback id and leg an originate is tagged with.
var (
	callbackVar = regexp.MustCompile(`callbridge_callback_id=([0-9a-f-]{36})`)
	legVar      = regexp.MustCompile(`callbridge_leg=([a-z]+)`)
)

// checkPlacedOnce asserts that each callback's A leg was originated once
// per attempt the database records (never twice by two controllers), and
// its B leg at most once per attempt.
func checkPlacedOnce(t testing.TB, db *sql.DB, nodes ...*esltest.Server) {
	t.Helper()
	legs := map[string]int{}
	for _, fs := range nodes {
		for _, cmd := range fs.Commands() {
			line, _, _ := strings.Cut(cmd, "\n")
			if !strings.Contains(line, "originate ") {
				continue
			}
			cb, leg := callbackVar.FindStringSubmatch(line), legVar.FindStringSubmatch(line)
			if cb == nil || leg == nil {
				continue
			}
			legs[cb[1]+"/"+leg[1]]++
		}
	}
	var rows []struct {
		ID      string `db:"id"`
		Attempt int    `db:"attempt"`
	}
	if err := pgtest.Select(context.Background(), db, &rows, `SELECT id, attempt FROM callbacks`); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if a := legs[r.ID+"/a"]; a > r.Attempt {
			t.Errorf("callback %s: A originated %d times for %d attempts", r.ID, a, r.Attempt)
		}
		if b := legs[r.ID+"/b"]; b > r.Attempt {
			t.Errorf("callback %s: B originated %d times for %d attempts", r.ID, b, r.Attempt)
		}
	}
}

// TestFaultTwoControllers runs two controllers on one database and one
// node under a stream of callbacks on both, across a minute boundary so
// every per-minute job comes due in both: no callback is placed twice, no
// CDR is written twice, and each job runs once per slot.
func TestFaultTwoControllers(t *testing.T) {
	dbURL, db := newDatabase(t)
	fs := newNode(t, 10, "")
	c1 := startController(t, controllerConfig{DatabaseURL: dbURL, ESL: []string{fs.Addr()}})
	c2 := startController(t, controllerConfig{DatabaseURL: dbURL, ESL: []string{fs.Addr()}})
	c1.waitReady()
	c2.waitReady()
	_, key := c1.createAccount("Shared")

	start := time.Now()
	l1 := startLoad(t, c1, key, nil, 200*time.Millisecond)
	l2 := startLoad(t, c2, key, nil, 200*time.Millisecond)
	// Until a minute boundary has passed with both up, and a few seconds
	// for its jobs to finish.
	boundary := start.Truncate(time.Minute).Add(time.Minute)
	time.Sleep(time.Until(boundary) + 5*time.Second)
	l1.stopLoad()
	l2.stopLoad()
	accepted := append(append([]string(nil), l1.accepted...), l2.accepted...)
	if bad := append(l1.bad, l2.bad...); len(bad) > 0 {
		t.Errorf("unexpected API answers: %v", bad)
	}

	waitFor(t, 90*time.Second, "every accepted callback final", func() (bool, string) { return allFinal(t, db, accepted) })
	st := callbackStatuses(t, db)
	outcomes := map[string]int{}
	for _, id := range accepted {
		outcomes[st[id]]++
	}
	t.Logf("%d callbacks: %v", len(accepted), outcomes)

	checkNoDuplicateCalls(t, db, fs)
	checkPlacedOnce(t, db, fs)
	waitFor(t, 60*time.Second, "no channel left up", func() (bool, string) {
		n := len(fs.Channels())
		return n == 0, fmt.Sprintf("%d channels up", n)
	})
	want := hungUp(fs)
	waitFor(t, 60*time.Second, "one CDR per hangup", func() (bool, string) { return checkCDRs(t, db, want) })

	// Jobs: each slot run once, by one of the two, and nothing failed.
	var runs []struct {
		Job     string    `db:"job"`
		Slot    time.Time `db:"slot"`
		Outcome string    `db:"outcome"`
		N       int       `db:"n"`
	}
	if err := pgtest.Select(context.Background(), db, &runs, `SELECT job, slot, outcome, count(*) AS n FROM job_runs GROUP BY job, slot, outcome ORDER BY job, slot`); err != nil {
		t.Fatal(err)
	}
	perSlot := map[string]int{}
	for _, r := range runs {
		if r.Outcome != "ok" || r.N != 1 {
			t.Errorf("job %s slot %s: %d runs %s, want one ok", r.Job, r.Slot.UTC().Format(time.RFC3339), r.N, r.Outcome)
		}
		perSlot[r.Job+" "+r.Slot.UTC().Format(time.RFC3339)] += r.N
	}
	// Every per-minute job this deployment runs came due at the boundary.
	ran := map[string]bool{}
	for _, r := range runs {
		ran[r.Job] = true
	}
	for _, job := range []string{"binding-expiry", "stale-calls", "webhooks", "spool", "low-balance"} {
		if !ran[job] {
			continue
		}
		if perSlot[job+" "+boundary.UTC().Format(time.RFC3339)] != 1 {
			t.Errorf("job %s: %d runs for the slot %s both controllers saw, want 1", job, perSlot[job+" "+boundary.UTC().Format(time.RFC3339)], boundary.UTC().Format(time.RFC3339))
		}
	}
	t.Logf("%d job slots run", len(perSlot))
}
