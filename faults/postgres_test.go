//go:build faults

package faults

import (
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"callbridge/postgres/pgtest"
)

// load is a stream of callbacks and inbound calls against one controller
// and node, with what the API answered.
type load struct {
	c        *controller
	key      string
	mu       sync.Mutex
	accepted []string       // callback ids answered 202
	answers  map[string]int // "503 Retry-After=5" and the like, counted
	bad      []string       // answers that are neither 202 nor 503 with Retry-After
	unknown  []unknown      // requests answered 503 outcome_unknown, to repeat
	inbound  []string
	stop     chan struct{}
	done     chan struct{}
}

// unknown is a callback request whose outcome the API could not tell.
type unknown struct{ idem, a, b string }

// startLoad asks for a callback, each with its own Idempotency-Key, and
// places an inbound call every period until stopLoad.
func startLoad(t testing.TB, c *controller, key string, inbound func() []string, period time.Duration) *load {
	l := &load{c: c, key: key, answers: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	prefix := rand.Text()[:8] // two loads on one account never share a key
	go func() {
		defer close(l.done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			u := unknown{fmt.Sprintf("%s-%d", prefix, i), fmt.Sprintf("+49301%06d", 2*i), fmt.Sprintf("+49302%06d", 2*i+1)}
			id, r := c.postCallbackOnce(key, u.idem, u.a, u.b)
			var in []string
			if inbound != nil {
				in = inbound()
			}
			l.mu.Lock()
			l.inbound = append(l.inbound, in...)
			switch {
			case id != "":
				l.accepted = append(l.accepted, id)
				l.answers["202"]++
			case r.Status == 503 && r.Header.Get("Retry-After") != "" && errorCode(r) == "outcome_unknown":
				l.unknown = append(l.unknown, u)
				l.answers["503 outcome_unknown"]++
			case r.Status == 503 && r.Header.Get("Retry-After") != "":
				l.answers["503 Retry-After="+r.Header.Get("Retry-After")]++
			default:
				l.bad = append(l.bad, fmt.Sprintf("%d %s", r.Status, r.Raw))
			}
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *load) stopLoad() {
	close(l.stop)
	<-l.done
}

// settle repeats, with the same Idempotency-Key, each request whose
// outcome was unknown, as the answer asks, until it is answered 202 (the
// callback it created then, or creates now), and counts it accepted.
func (l *load) settle(t testing.TB) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range l.unknown {
		waitFor(t, 30*time.Second, "the repeat of "+u.idem+" answered 202", func() (bool, string) {
			id, r := l.c.postCallbackOnce(l.key, u.idem, u.a, u.b)
			if id != "" {
				l.accepted = append(l.accepted, id)
			}
			return id != "", fmt.Sprintf("%d %s", r.Status, r.Raw)
		})
	}
	l.unknown = nil
}

// errorCode is the code of an error answer ("" for any other).
func errorCode(r response) string {
	e, _ := r.Body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// TestFaultPostgresOutage cuts the controller off PostgreSQL (every
// connection torn down, new ones refused) for CALLBRIDGE_FAULT_OUTAGE
// (default 30 s) during a stream of callbacks and calls. Users see 503
// with Retry-After for what cannot be made durable (a request answered
// outcome_unknown is repeated with its Idempotency-Key, as the answer
// asks, once the database is back); CDRs spool and are
// replayed; afterwards every hangup has exactly one CDR and every accepted
// callback exists and reaches a final status.
func TestFaultPostgresOutage(t *testing.T) {
	outage := envDuration(t, "CALLBRIDGE_FAULT_OUTAGE", 30*time.Second)
	dbURL, db := newDatabase(t)
	proxied, proxy := pgtest.Proxied(t, dbURL)
	fs := newNode(t, 4, "") // default far ends: ring 1 s, talk 3 s
	spool := t.TempDir()
	c := startController(t, controllerConfig{DatabaseURL: proxied, ESL: []string{fs.Addr()}, SpoolDir: spool})
	c.waitReady()
	_, key := c.createAccount("Outage")

	n := 0
	l := startLoad(t, c, key, func() []string {
		n++
		u, err := fs.Inbound(t.Context(), fmt.Sprintf("4915200%05d", n), "4930999000")
		if err != nil {
			t.Errorf("inbound call: %v", err)
			return nil
		}
		return []string{u}
	}, 100*time.Millisecond)
	time.Sleep(2 * time.Second) // calls and callbacks before the outage

	proxy.Cut()
	cutAt := time.Now()
	t.Logf("PostgreSQL cut off for %v", outage)
	waitFor(t, outage, "CDRs spooled while PostgreSQL is away", func() (bool, string) {
		f := spoolFiles(t, spool)
		return len(f) > 0, fmt.Sprintf("%d spool batches", len(f))
	})
	time.Sleep(time.Until(cutAt.Add(outage)))
	proxy.Restore()
	t.Logf("PostgreSQL back")
	time.Sleep(3 * time.Second) // calls and callbacks after the outage
	l.stopLoad()
	l.settle(t)

	l.mu.Lock()
	t.Logf("API answers to POST /v1/callbacks: %v", l.answers)
	if len(l.bad) > 0 {
		t.Errorf("%d answers were neither 202 nor 503 with Retry-After, e.g. %s", len(l.bad), l.bad[0])
	}
	if l.answers["202"] == 0 {
		t.Errorf("no callback was accepted")
	}
	unavailable := 0
	for k, v := range l.answers {
		if k != "202" {
			unavailable += v
		}
	}
	if unavailable == 0 {
		t.Errorf("no request was refused with 503 during the outage")
	}
	accepted := append([]string(nil), l.accepted...)
	inbound := append([]string(nil), l.inbound...)
	l.mu.Unlock()

	// Every accepted callback exists and ends.
	waitFor(t, 90*time.Second, "every accepted callback final", func() (bool, string) { return allFinal(t, db, accepted) })
	st := callbackStatuses(t, db)
	outcomes := map[string]int{}
	for _, id := range accepted {
		outcomes[st[id]]++
	}
	t.Logf("callback outcomes: %v", outcomes)
	if len(st) != len(accepted) {
		t.Errorf("%d callbacks stored, %d accepted: a refused request was stored, or an accepted one lost", len(st), len(accepted))
	}

	// Every channel that hung up has exactly one CDR, the spool is empty.
	waitFor(t, 60*time.Second, "no channel left up", func() (bool, string) {
		n := len(fs.Channels())
		return n == 0, fmt.Sprintf("%d channels up", n)
	})
	want := hungUp(fs)
	for _, u := range inbound {
		want[u] = true
	}
	waitFor(t, 60*time.Second, "one CDR per hangup", func() (bool, string) { return checkCDRs(t, db, want) })
	got, _ := cdrCounts(t, db)
	if len(got) != len(want) {
		t.Errorf("%d CDRs for %d channels", len(got), len(want))
	}
	waitFor(t, 30*time.Second, "spool emptied", func() (bool, string) {
		f := spoolFiles(t, spool)
		return len(f) == 0, fmt.Sprintf("%d batches left", len(f))
	})
	t.Logf("%d callbacks, %d inbound calls, %d CDRs", len(accepted), len(inbound), len(got))
}
