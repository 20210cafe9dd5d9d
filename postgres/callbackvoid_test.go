package postgres_test

import (
	"context"
	"fmt"
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

// TestCallbackVoidWrittenLater: the first controller cannot reach the
// database at all while it resolves a creation whose outcome is unknown;
// it answers with an error and records the void as soon as it can again
// (at its next claim), before the second controller claims.
func TestCallbackVoidWrittenLater(t *testing.T) {
	c := newTwoControllers(t)
	release, answer := c.creationInFlight(t, "k2")
	c.proxy.Cut()
	err := <-answer
	if code := callbridge.ErrorCode(err); code != callbridge.EUNAVAILABLE {
		t.Fatalf("creation with the database unreachable: got %v (%s), want unavailable", err, code)
	}
	c.proxy.Restore()
	release()
	c.settled(t)
	var queued int
	if err := c.db.QueryRowContext(context.Background(), `SELECT count(*) FROM callbacks
		WHERE account_id = $1 AND status = 'queued'`, c.account).Scan(&queued); err != nil {
		t.Fatal(err)
	}
	if queued != 1 {
		t.Fatalf("%d queued callbacks, want the one the cut statement committed", queued)
	}
	cbs, err := c.first.ClaimCallbacks(context.Background(), "first", "node1", time.Minute, 10)
	if err != nil || len(cbs) != 0 {
		t.Fatalf("the first controller's claim: got %v, %v; want none", cbs, err)
	}
	c.assertNothingToDial(t)
	var hooks int
	if err := c.db.QueryRowContext(context.Background(), `SELECT count(*) FROM webhooks
		WHERE account_id = $1 AND status = 'pending'`, c.account).Scan(&hooks); err != nil {
		t.Fatal(err)
	}
	if hooks != 0 {
		t.Errorf("%d webhooks pending for a voided callback, want none", hooks)
	}
}
