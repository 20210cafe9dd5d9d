package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"callbridge"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
)

// twoControllers is one database shared by two controllers' callback
// services: the first reaches it through a proxy the test can cut, the
// second directly (the test's own checks use the second's pool).
type twoControllers struct {
	db            *postgres.DB // direct
	proxy         *pgtest.Proxy
	first, second *postgres.CallbackService
	account       string
}

func newTwoControllers(t *testing.T) *twoControllers {
	t.Helper()
	u := pgtest.URL(t)
	ctx := context.Background()
	direct, err := postgres.Open(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close() })
	proxied, proxy := pgtest.Proxied(t, u)
	via, err := postgres.Open(ctx, proxied, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { via.Close() })
	return &twoControllers{db: direct, proxy: proxy, account: newCallbackAccount(t, direct),
		first: postgres.NewCallbackService(via), second: postgres.NewCallbackService(direct)}
}

// creationInFlight starts the first controller's CreateCallback of a
// request with idempotency key key, and returns once its statement is
// running on the server and waiting: a transaction of the test holds an
// uncommitted callback with the same key, so the server cannot decide the
// insert until that transaction ends (it returns the function that ends it
// by rolling back, after which the statement goes on). The creation's
// answer arrives on the channel.
func (c *twoControllers) creationInFlight(t *testing.T, key string) (release func(), answer <-chan error) {
	t.Helper()
	ctx := context.Background()
	blocker, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blocker.ExecContext(ctx, `INSERT INTO callbacks (account_id, a, b, ring_timeout_a, ring_timeout_b,
		max_duration, idempotency_key, request_hash) VALUES ($1, '4917099999', '4917088888', 30, 30, 600, $2, 'other')`,
		c.account, key); err != nil {
		t.Fatal(err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			if err := blocker.Rollback(); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(release)
	r := callbackRequest(c.account)
	r.IdempotencyKey, r.RequestHash = key, "h"
	ch := make(chan error, 1)
	go func() {
		cb, _, err := c.first.CreateCallback(ctx, r)
		if err == nil {
			err = fmt.Errorf("created %s", cb.ID)
		}
		ch <- err
	}()
	wait.ForState(t, "the creation statement waiting on the test's transaction", func() (bool, string) {
		n := c.creations(t, "Lock")
		return n == 1, fmt.Sprintf("%d waiting", n)
	})
	return release, ch
}

// creations counts the creation statements the server is running, with
// wait event type wait ("" for any).
func (c *twoControllers) creations(t *testing.T, wait string) int {
	t.Helper()
	var n int
	if err := c.db.QueryRowContext(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE state = 'active' AND query LIKE '%WITH input AS (%unnest(%'
		  AND pid <> pg_backend_pid() AND ($1 = '' OR wait_event_type = $1)`, wait).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// settled waits until the creation statement has ended on the server.
func (c *twoControllers) settled(t *testing.T) {
	t.Helper()
	wait.ForState(t, "the creation statement ended", func() (bool, string) {
		n := c.creations(t, "")
		return n == 0, fmt.Sprintf("%d running", n)
	})
}

// assertNothingToDial checks that neither controller claims a callback
// and that the account lists none.
func (c *twoControllers) assertNothingToDial(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for name, s := range map[string]*postgres.CallbackService{"second": c.second, "first": c.first} {
		cbs, err := s.ClaimCallbacks(ctx, name, "node1", time.Minute, 10)
		if err != nil {
			t.Fatalf("%s controller's claim: %v", name, err)
		}
		for _, cb := range cbs {
			t.Errorf("the %s controller claimed callback %s (%s to %s), whose creation was answered with an error", name, cb.ID, cb.A, cb.B)
		}
	}
	cbs, _, err := c.second.Callbacks(ctx, c.account, callbridge.CallbackFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cbs) != 0 {
		t.Errorf("the account lists %d callbacks, want none: %+v", len(cbs), cbs[0])
	}
}

// TestCallbackVoidAcrossControllers: the first controller's connection
// dies while its creation statement is still running on the server; it
// cannot find the callback and answers the request with an error. The
// statement then commits. The second controller, sharing the database,
// must not dial the callback the client was told was not created.
func TestCallbackVoidAcrossControllers(t *testing.T) {
	c := newTwoControllers(t)
	release, answer := c.creationInFlight(t, "k1")
	c.proxy.Cut()
	c.proxy.Restore() // the first controller reaches the database again at once
	err := <-answer
	if code := callbridge.ErrorCode(err); code != callbridge.EUNAVAILABLE {
		t.Fatalf("creation with its connection cut: got %v (%s), want unavailable", err, code)
	}
	release()
	c.settled(t)
	c.assertNothingToDial(t)
	var voids int
	if err := c.db.QueryRowContext(context.Background(), `SELECT count(*) FROM callbacks WHERE status = 'void'`).Scan(&voids); err != nil {
		t.Fatal(err)
	}
	if voids != 1 {
		t.Errorf("%d void rows, want the one that took the creation's id", voids)
	}

	// The client, told the request failed, sends it again: it is created.
	r := callbackRequest(c.account)
	r.IdempotencyKey, r.RequestHash = "k1", "h"
	cb, created, err := c.second.CreateCallback(context.Background(), r)
	if err != nil || !created {
		t.Fatalf("the request sent again: created %v, %v", created, err)
	}
	got, err := c.second.ClaimCallbacks(context.Background(), "second", "node1", time.Minute, 10)
	if err != nil || len(got) != 1 || got[0].ID != cb.ID {
		t.Errorf("claim after the request was sent again: got %v (%v), want %s", got, err, cb.ID)
	}
}

// TestCallbackOutcomeUnknownAcrossControllers: the first controller's
// connection dies while its creation statement is still running on the
// server, and it cannot reach the database at all to settle it; the
// statement then commits. The answer must say the outcome is unknown (not
// a plain error, which means "not created" while the second controller
// dials the callback), and a repeat of the request with its idempotency
// key, once the database is back, must return the callback, whichever
// controller claims it and whenever. Before, the first controller answered
// EUNAVAILABLE and kept a void in memory that its next claim wrote over a
// callback the repeat had returned.
func TestCallbackOutcomeUnknownAcrossControllers(t *testing.T) {
	for _, tc := range []struct {
		name          string
		claimedBefore bool // the second controller claims before the repeat
	}{
		{"claimed before the repeat", true},
		{"repeated before a claim", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := newTwoControllers(t)
			release, answer := c.creationInFlight(t, "k2")
			c.proxy.Cut()
			err := <-answer
			if code := callbridge.ErrorCode(err); code != callbridge.EOUTCOMEUNKNOWN {
				t.Fatalf("creation with the database unreachable: got %v (%s), want %s", err, code, callbridge.EOUTCOMEUNKNOWN)
			}
			release()
			c.settled(t)
			var id string
			if err := c.db.QueryRowContext(ctx, `SELECT id FROM callbacks
				WHERE account_id = $1 AND idempotency_key = 'k2' AND status = 'queued'`, c.account).Scan(&id); err != nil {
				t.Fatalf("the callback the cut statement committed: %v", err)
			}
			if tc.claimedBefore {
				c.claims(t, c.second, "second", id)
			}
			c.proxy.Restore()

			r := callbackRequest(c.account)
			r.IdempotencyKey, r.RequestHash = "k2", "h"
			cb, created, err := c.first.CreateCallback(ctx, r)
			if err != nil || created || cb.ID != id {
				t.Fatalf("the request repeated: got %v, created %v, %v; want callback %s, not created again", cb, created, err, id)
			}
			if tc.claimedBefore {
				c.claims(t, c.first, "first")
			} else {
				c.claims(t, c.first, "first", id)
			}
			got, err := c.second.Callback(ctx, c.account, id)
			if err != nil || got.Status != callbridge.CallbackCallingA {
				t.Fatalf("the callback after the claims: got %v, %v; want it calling A", got, err)
			}
		})
	}
}

// claims checks that s claims exactly the callbacks of ids.
func (c *twoControllers) claims(t *testing.T, s *postgres.CallbackService, name string, ids ...string) {
	t.Helper()
	cbs, err := s.ClaimCallbacks(context.Background(), name, "node1", time.Minute, 10)
	if err != nil {
		t.Fatalf("the %s controller's claim: %v", name, err)
	}
	var got []string
	for _, cb := range cbs {
		got = append(got, cb.ID)
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("the %s controller claimed %v, want %v", name, got, ids)
	}
}

// TestCallbackCreateUnreachable: while the first controller cannot reach
// the database, its creation statements never leave it, so the answer is
// a plain error (nothing was done), not an unknown outcome, and nothing is
// stored, not even a void.
func TestCallbackCreateUnreachable(t *testing.T) {
	ctx := context.Background()
	c := newTwoControllers(t)
	c.proxy.Cut()
	// The pool's connections, cut, are found broken and dropped.
	if _, _, err := c.first.DueQueue(ctx); callbridge.ErrorCode(err) != callbridge.EUNAVAILABLE {
		t.Fatalf("a query with the database unreachable: got %v, want unavailable", err)
	}
	for _, key := range []string{"", "k3"} {
		r := callbackRequest(c.account)
		r.IdempotencyKey, r.RequestHash = key, "h"
		_, _, err := c.first.CreateCallback(ctx, r)
		if code := callbridge.ErrorCode(err); code != callbridge.EUNAVAILABLE {
			t.Errorf("creation (key %q) with the database unreachable: got %v (%s), want unavailable", key, err, code)
		}
	}
	var n int
	if err := c.db.QueryRowContext(ctx, `SELECT count(*) FROM callbacks`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d callbacks rows, want none", n)
	}
}
