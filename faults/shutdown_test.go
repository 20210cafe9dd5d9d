//go:build faults

package faults

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"callbridge/postgres/pgtest"
)

// talkScript makes numbers starting 4930777 answer after 1 s and talk for
// 20 s (simulated), and numbers starting 4930888 answer and stay up until
// hung up.
const talkScript = `{"rules":[
 {"prefix":"4930777","ring_ms":1000,"outcome":"answer","talk_ms":20000},
 {"prefix":"4930888","ring_ms":1000,"outcome":"answer","talk_ms":0}]}`

// placeCallbacks asks for n callbacks between numbers of prefix and
// returns their ids.
func placeCallbacks(t testing.TB, c *controller, key, prefix string, n int) []string {
	t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		id, r := c.postCallback(key, fmt.Sprintf("+%s%03d", prefix, 2*i), fmt.Sprintf("+%s%03d", prefix, 2*i+1))
		if id == "" {
			t.Fatalf("POST /v1/callbacks = %d %s", r.Status, r.Raw)
		}
		ids = append(ids, id)
	}
	return ids
}

// waitStatus waits until every callback of ids has status.
func waitStatus(t testing.TB, c *controller, ids []string, status string, limit time.Duration) {
	t.Helper()
	db := openDB(t, c.cfg.DatabaseURL)
	waitFor(t, limit, "callbacks "+status, func() (bool, string) {
		st := callbackStatuses(t, db)
		n := 0
		for _, id := range ids {
			if st[id] == status {
				n++
			}
		}
		return n == len(ids), fmt.Sprintf("%d of %d %s: %v", n, len(ids), status, st)
	})
}

// TestFaultGracefulShutdown is issue 7's proof: SIGTERM during live
// simulated calls stops new callbacks (503 with Retry-After), lets the
// calls finish, writes every CDR and exits 0.
func TestFaultGracefulShutdown(t *testing.T) {
	dbURL, db := newDatabase(t)
	// 20 s of talk take 10 s: time to see every call bridged on a busy
	// machine before SIGTERM.
	fs := newNode(t, 2, talkScript)
	spool := t.TempDir()
	c := startController(t, controllerConfig{DatabaseURL: dbURL, ESL: []string{fs.Addr()}, SpoolDir: spool,
		Env: map[string]string{"CALLBRIDGE_DRAIN_TIMEOUT": "60s"}})
	c.waitReady()
	_, key := c.createAccount("Drain")

	ids := placeCallbacks(t, c, key, "4930777", 8)
	waitStatus(t, c, ids, "bridged", 30*time.Second)
	inbound := inboundCalls(t, fs, 5)

	c.signal(syscall.SIGTERM)
	c.waitLog("shutting down: draining", 10*time.Second)
	// While the bridged calls drain, the API still answers, but new
	// callbacks are refused with 503 and a Retry-After.
	waitFor(t, 10*time.Second, "503 for new callbacks", func() (bool, string) {
		_, r := c.postCallback(key, "+4930777900", "+4930777901")
		return r.Status == 503 && r.Header.Get("Retry-After") != "", fmt.Sprintf("last answer %d %s", r.Status, r.Raw)
	})
	if live := len(fs.Channels()); live == 0 {
		t.Fatalf("the calls were over before the drain could be observed")
	}
	if code := c.wait(60 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	if n := len(fs.Channels()); n != 0 {
		t.Errorf("%d channels still up after the drain", n)
	}

	st := callbackStatuses(t, db)
	for _, id := range ids {
		if st[id] != "completed" {
			t.Errorf("callback %s ended %s, want completed (drained, not cut)", id, st[id])
		}
	}
	if len(st) != len(ids) {
		t.Errorf("%d callbacks stored, want %d: one accepted during the drain?", len(st), len(ids))
	}
	want := hungUp(fs)
	for _, u := range inbound {
		want[u] = true
	}
	if len(want) != 2*len(ids)+len(inbound) {
		t.Errorf("%d channels hung up, want %d (two legs per callback and the inbound calls)", len(want), 2*len(ids)+len(inbound))
	}
	if ok, state := checkCDRs(t, db, want); !ok {
		t.Errorf("after exit: %s", state)
	}
	if f := spoolFiles(t, spool); len(f) != 0 {
		t.Errorf("spool holds %d batches after a clean drain, want none", len(f))
	}
}

// TestFaultShutdownDrainTimeout: calls that never end and a database that
// is gone do not hold SIGTERM past the drain timeout; the CDRs that could
// not be written are in the spool, and the next start writes them.
func TestFaultShutdownDrainTimeout(t *testing.T) {
	dbURL, db := newDatabase(t)
	proxied, proxy := pgtest.Proxied(t, dbURL)
	fs := newNode(t, 10, talkScript)
	spool := t.TempDir()
	addr := freeAddr(t)
	cfg := controllerConfig{DatabaseURL: proxied, ESL: []string{fs.Addr()}, SpoolDir: spool, HTTPAddr: addr,
		Env: map[string]string{"CALLBRIDGE_DRAIN_TIMEOUT": "3s"}}
	c := startController(t, cfg)
	c.waitReady()
	_, key := c.createAccount("Stuck")
	ids := placeCallbacks(t, c, key, "4930888", 3)
	waitStatus(t, c, ids, "bridged", 30*time.Second)

	proxy.Cut()
	inbound := inboundCalls(t, fs, 5)
	waitFor(t, 20*time.Second, "the unwritable CDRs spooled", func() (bool, string) {
		all := spoolText(t, spool)
		n := 0
		for _, u := range inbound {
			if strings.Contains(all, u) {
				n++
			}
		}
		return n == len(inbound), fmt.Sprintf("%d of %d inbound CDRs in the spool", n, len(inbound))
	})

	start := time.Now()
	c.signal(syscall.SIGTERM)
	// Drain timeout 3 s, the CDR pipeline's own 5 s for queued batches and
	// the HTTP shutdown: well under 30 s.
	code := c.wait(30 * time.Second)
	t.Logf("exited %d after %v", code, time.Since(start).Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if len(fs.Channels()) != 2*len(ids) {
		t.Errorf("%d channels up after the drain timeout, want the %d legs left for adoption", len(fs.Channels()), 2*len(ids))
	}
	if len(spoolFiles(t, spool)) == 0 {
		t.Fatalf("the spool is empty: the unwritten CDRs were lost")
	}

	// The database returns; the next start replays the spool.
	proxy.Restore()
	c2 := startController(t, cfg)
	c2.waitReady()
	want := map[string]bool{}
	for _, u := range inbound {
		want[u] = true
	}
	waitFor(t, 30*time.Second, "spooled CDRs replayed", func() (bool, string) { return checkCDRs(t, db, want) })
	waitFor(t, 30*time.Second, "spool emptied", func() (bool, string) {
		f := spoolFiles(t, spool)
		return len(f) == 0, fmt.Sprintf("%d batches left", len(f))
	})
}

// TestFaultShutdownSecondSignal: a second SIGTERM ends the drain at once
// even though calls are still up and the drain timeout is long.
func TestFaultShutdownSecondSignal(t *testing.T) {
	dbURL, _ := newDatabase(t)
	fs := newNode(t, 10, talkScript)
	spool := t.TempDir()
	c := startController(t, controllerConfig{DatabaseURL: dbURL, ESL: []string{fs.Addr()}, SpoolDir: spool,
		Env: map[string]string{"CALLBRIDGE_DRAIN_TIMEOUT": "120s"}})
	c.waitReady()
	_, key := c.createAccount("Impatient")
	ids := placeCallbacks(t, c, key, "4930888", 2)
	waitStatus(t, c, ids, "bridged", 30*time.Second)

	c.signal(syscall.SIGTERM)
	waitFor(t, 10*time.Second, "draining", func() (bool, string) {
		_, r := c.postCallback(key, "+4930888900", "+4930888901")
		return r.Status == 503, fmt.Sprintf("last answer %d", r.Status)
	})
	start := time.Now()
	c.signal(syscall.SIGTERM)
	code := c.wait(30 * time.Second)
	t.Logf("exited %d %v after the second SIGTERM", code, time.Since(start).Round(time.Millisecond))
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("exit took %v after the second SIGTERM, want prompt", d)
	}
}

// spoolText returns the contents of every spool batch.
func spoolText(t testing.TB, dir string) string {
	t.Helper()
	var b strings.Builder
	for _, f := range spoolFiles(t, dir) {
		data, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}
