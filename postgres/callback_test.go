package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"callbridge"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
)

func newCallbackAccount(t *testing.T, db *postgres.DB) string {
	t.Helper()
	a := &callbridge.Account{Name: "cb test", ServiceNumber: "4930100100"}
	if _, err := postgres.NewAccountService(db).CreateAccount(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	return a.ID
}

func callbackRequest(account string) *callbridge.CallbackRequest {
	return &callbridge.CallbackRequest{
		AccountID: account, A: "4917011111", B: "4917022222", RingTimeoutA: 30, RingTimeoutB: 30,
		MaxDuration: 600, Prompt: "none", WebhookURL: "http://127.0.0.1:1/hook",
		Metadata: json.RawMessage(`{"crm":"42"}`),
	}
}

func TestCreateCallbackIdempotency(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	acct := newCallbackAccount(t, db)
	s := postgres.NewCallbackService(db)

	r := callbackRequest(acct)
	r.IdempotencyKey, r.RequestHash = "k1", "h1"
	first, created, err := s.CreateCallback(ctx, r)
	if err != nil || !created {
		t.Fatalf("create: %v, created %v", err, created)
	}
	if first.Status != callbridge.CallbackQueued || string(first.Metadata) != `{"crm": "42"}` {
		t.Errorf("got %+v", first)
	}
	again, created, err := s.CreateCallback(ctx, r)
	if err != nil || created || again.ID != first.ID {
		t.Fatalf("repeat: got %v created=%v err=%v, want %s", again, created, err, first.ID)
	}
	r.RequestHash = "h2"
	if _, _, err := s.CreateCallback(ctx, r); callbridge.ErrorCode(err) != callbridge.ECONFLICT {
		t.Fatalf("other body: got %v, want conflict", err)
	}
	got, err := s.Callback(ctx, acct, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Events) != 1 || got.Events[0].Status != callbridge.CallbackQueued {
		t.Errorf("events: got %+v", got.Events)
	}
	other := newCallbackAccount(t, db)
	if _, err := s.Callback(ctx, other, first.ID); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("other account: got %v, want not found", err)
	}
	if _, err := s.Callback(ctx, acct, "nope"); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("malformed id: got %v, want not found", err)
	}
	hooks, _, err := postgres.NewWebhookService(db).Webhooks(ctx, acct, callbridge.WebhookFilter{})
	if err != nil || len(hooks) != 1 {
		t.Fatalf("webhooks: %v %v", hooks, err)
	}
	var p map[string]any
	if err := json.Unmarshal(hooks[0].Payload, &p); err != nil || p["status"] != "queued" || p["callback_id"] != first.ID {
		t.Errorf("payload: %s", hooks[0].Payload)
	}
}

func TestCreateCallbackQueueFull(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	acct := newCallbackAccount(t, db)
	if _, err := db.ExecContext(ctx, `UPDATE accounts SET callback_queue_limit = 2 WHERE id = $1`, acct); err != nil {
		t.Fatal(err)
	}
	s := postgres.NewCallbackService(db)
	for i := 0; i < 2; i++ {
		if _, _, err := s.CreateCallback(ctx, callbackRequest(acct)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.CreateCallback(ctx, callbackRequest(acct)); callbridge.ErrorCode(err) != callbridge.ERATELIMIT {
		t.Fatalf("got %v, want rate limited", err)
	}
}

func TestClaimCallbackSkipLocked(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	acct := newCallbackAccount(t, db)
	s := postgres.NewCallbackService(db)
	const n = 20
	for i := 0; i < n; i++ {
		if _, _, err := s.CreateCallback(ctx, callbackRequest(acct)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(owner string) {
			defer wg.Done()
			for {
				cb, err := s.ClaimCallback(ctx, owner, "node1", time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if cb == nil {
					return
				}
				mu.Lock()
				if prev, dup := seen[cb.ID]; dup {
					t.Errorf("callback %s claimed by %s and %s", cb.ID, prev, owner)
				}
				seen[cb.ID] = owner
				mu.Unlock()
			}
		}(string(rune('a' + w)))
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("claimed %d, want %d", len(seen), n)
	}
}

func TestUpdateCallbackLeaseAndRetry(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	acct := newCallbackAccount(t, db)
	s := postgres.NewCallbackService(db)
	created, _, err := s.CreateCallback(ctx, callbackRequest(acct))
	if err != nil {
		t.Fatal(err)
	}
	cb, err := s.ClaimCallback(ctx, "w1", "node1", time.Minute)
	if err != nil || cb == nil || cb.ID != created.ID || cb.Status != callbridge.CallbackCallingA {
		t.Fatalf("claim: %+v %v", cb, err)
	}
	now := time.Now().UTC()
	leg := &callbridge.LegUpdate{Leg: "a", Attempt: 1, UUID: "9b0a7f4c-8f55-4c1b-9a57-1c1e0c9f7a11", Node: "node1", Number: cb.A}
	if err := s.UpdateCallback(ctx, &callbridge.CallbackUpdate{ID: cb.ID, Owner: "w1", Leg: leg}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateCallback(ctx, &callbridge.CallbackUpdate{ID: cb.ID, Owner: "w2", Leg: leg}); err != postgres.ErrLeaseLost {
		t.Fatalf("other owner: got %v, want lease lost", err)
	}
	hung := *leg
	hung.Hangup, hung.Cause = now, "USER_BUSY"
	err = s.UpdateCallback(ctx, &callbridge.CallbackUpdate{ID: cb.ID, Owner: "w1", Leg: &hung,
		Status: callbridge.CallbackQueued, Detail: "retry", RunAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := s.ClaimCallback(ctx, "w1", "node1", time.Minute); err != nil || again != nil {
		t.Fatalf("claimed before run_at: %v %v", again, err)
	}
	got, err := s.Callback(ctx, acct, cb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != callbridge.CallbackQueued || got.Attempt != 2 || len(got.Legs) != 1 || got.Legs[0].HangupCause != "USER_BUSY" {
		t.Errorf("got %+v legs %+v", got, got.Legs)
	}
	want := []callbridge.CallbackStatus{"queued", "calling_a", "queued"}
	var statuses []callbridge.CallbackStatus
	for _, e := range got.Events {
		if e.Type == callbridge.EventStatus {
			statuses = append(statuses, e.Status)
		}
	}
	if len(statuses) != len(want) {
		t.Fatalf("statuses %v, want %v", statuses, want)
	}
	for i := range want {
		if statuses[i] != want[i] {
			t.Errorf("statuses %v, want %v", statuses, want)
		}
	}
}

func TestCancelAndAdopt(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	acct := newCallbackAccount(t, db)
	s := postgres.NewCallbackService(db)
	q, _, _ := s.CreateCallback(ctx, callbackRequest(acct))
	got, err := s.CancelCallback(ctx, acct, q.ID)
	if err != nil || got.Status != callbridge.CallbackFailed || got.Reason != callbridge.ReasonCancelled || got.EndedAt == nil {
		t.Fatalf("cancel queued: %+v %v", got, err)
	}
	if again, err := s.CancelCallback(ctx, acct, q.ID); err != nil || again.Status != callbridge.CallbackFailed {
		t.Fatalf("cancel again: %+v %v", again, err)
	}

	live, _, _ := s.CreateCallback(ctx, callbackRequest(acct))
	if _, err := s.ClaimCallback(ctx, "w1", "node1", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	got, err = s.CancelCallback(ctx, acct, live.ID)
	if err != nil || !got.CancelRequested || got.Status != callbridge.CallbackCallingA {
		t.Fatalf("cancel live: %+v %v", got, err)
	}
	time.Sleep(5 * time.Millisecond) // the 1 ms lease runs out
	adopted, err := s.AdoptCallbacks(ctx, "w2", time.Minute, 10, false, nil)
	if err != nil || len(adopted) != 1 || adopted[0].ID != live.ID {
		t.Fatalf("adopt: %v %v", adopted, err)
	}
	cancel, lost, err := s.RenewLeases(ctx, "w1", []string{live.ID}, time.Minute)
	if err != nil || len(cancel) != 0 || len(lost) != 1 {
		t.Fatalf("old owner renew: cancel %v lost %v err %v", cancel, lost, err)
	}
	cancel, lost, err = s.RenewLeases(ctx, "w2", []string{live.ID}, time.Minute)
	if err != nil || len(cancel) != 1 || len(lost) != 0 {
		t.Fatalf("new owner renew: cancel %v lost %v err %v", cancel, lost, err)
	}
}

// TestAdoptSparesLiveCallbacks: the adoption pass of a running controller
// never takes what that controller drives, even under its own name or
// with a lease that ran out; a restarted controller's first pass takes
// what its name held.
func TestAdoptSparesLiveCallbacks(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	acct := newCallbackAccount(t, db)
	s := postgres.NewCallbackService(db)
	fresh, _, _ := s.CreateCallback(ctx, callbackRequest(acct))
	if cb, err := s.ClaimCallback(ctx, "w1", "node1", time.Minute); err != nil || cb.ID != fresh.ID {
		t.Fatalf("claim: %v %v", cb, err)
	}
	// A running controller's periodic pass: its own unexpired claim is
	// not adopted, whether or not it is listed as held.
	if got, err := s.AdoptCallbacks(ctx, "w1", time.Minute, 10, false, nil); err != nil || len(got) != 0 {
		t.Fatalf("periodic pass took %d callbacks (%v), want none", len(got), err)
	}
	// A renewal came late: the lease ran out, but the callback is held.
	late, _, _ := s.CreateCallback(ctx, callbackRequest(acct))
	if cb, err := s.ClaimCallback(ctx, "w1", "node1", time.Millisecond); err != nil || cb.ID != late.ID {
		t.Fatalf("claim: %v %v", cb, err)
	}
	time.Sleep(5 * time.Millisecond)
	if got, err := s.AdoptCallbacks(ctx, "w1", time.Minute, 10, false, []string{fresh.ID, late.ID}); err != nil || len(got) != 0 {
		t.Fatalf("pass with held callbacks took %d (%v), want none", len(got), err)
	}
	// Another controller takes the expired one, not the other.
	if got, err := s.AdoptCallbacks(ctx, "w2", time.Minute, 10, false, nil); err != nil || len(got) != 1 || got[0].ID != late.ID {
		t.Fatalf("w2 adopted %v (%v), want only %s", got, err, late.ID)
	}
	// w1 restarted: its first pass takes what its name still holds.
	got, err := s.AdoptCallbacks(ctx, "w1", time.Minute, 10, true, nil)
	if err != nil || len(got) != 1 || got[0].ID != fresh.ID {
		t.Fatalf("restart pass adopted %v (%v), want %s", got, err, fresh.ID)
	}
}

func TestCallbacksList(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	acct := newCallbackAccount(t, db)
	s := postgres.NewCallbackService(db)
	var ids []string
	for i := 0; i < 5; i++ {
		cb, _, err := s.CreateCallback(ctx, callbackRequest(acct))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, cb.ID)
	}
	var got []string
	cursor := ""
	for {
		page, next, err := s.Callbacks(ctx, acct, callbridge.CallbackFilter{Limit: 2, Cursor: cursor, Status: callbridge.CallbackQueued})
		if err != nil {
			t.Fatal(err)
		}
		for _, cb := range page {
			got = append(got, cb.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(got) != 5 || got[0] != ids[4] || got[4] != ids[0] {
		t.Errorf("got %v, want newest first of %v", got, ids)
	}
	if _, _, err := s.Callbacks(ctx, acct, callbridge.CallbackFilter{Cursor: "garbage"}); callbridge.ErrorField(err) != "cursor" {
		t.Errorf("bad cursor: got %v", err)
	}
}

func TestWebhookClaimOrderPerKey(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	acct := newCallbackAccount(t, db)
	w := postgres.NewWebhookService(db)
	for i := 0; i < 3; i++ {
		if err := w.EnqueueWebhook(ctx, acct, "http://x.test/h", "t", "k1", "", map[string]int{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.EnqueueWebhook(ctx, acct, "http://x.test/h", "t", "k2", "", map[string]int{"n": 9}); err != nil {
		t.Fatal(err)
	}
	got, err := w.ClaimWebhooks(ctx, 10, time.Minute)
	if err != nil || len(got) != 2 {
		t.Fatalf("claim: %v %v, want the head of each key", got, err)
	}
	if again, _ := w.ClaimWebhooks(ctx, 10, time.Minute); len(again) != 0 {
		t.Fatalf("claimed while in flight: %v", again)
	}
	for _, h := range got {
		if h.Key == "k1" {
			if err := w.WebhookDelivered(ctx, h.ID); err != nil {
				t.Fatal(err)
			}
		} else if err := w.WebhookFailed(ctx, h.ID, "HTTP 500", time.Now(), true); err != nil {
			t.Fatal(err)
		}
	}
	next, err := w.ClaimWebhooks(ctx, 10, time.Minute)
	if err != nil || len(next) != 1 || string(next[0].Payload) != `{"n": 1}` {
		t.Fatalf("second claim: %v %v", next, err)
	}
	dead, _, err := w.Webhooks(ctx, acct, callbridge.WebhookFilter{Status: callbridge.WebhookDead})
	if err != nil || len(dead) != 1 || dead[0].LastError != "HTTP 500" {
		t.Fatalf("dead: %v %v", dead, err)
	}
	if err := w.EnqueueWebhook(ctx, acct, "ftp://x", "t", "k", "", map[string]int{}); callbridge.ErrorField(err) != "webhook_url" {
		t.Errorf("bad url: %v", err)
	}
}

// TestCreateCallbackBatch checks the batch statement behind concurrent
// creations: the queue bound is exact within a batch and taken in request
// order, an idempotency key repeated in a batch or already used inserts
// nothing, an unknown account inserts nothing, and a request the server
// refuses fails alone.
func TestCreateCallbackBatch(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	acct := newCallbackAccount(t, db)
	if _, err := db.ExecContext(ctx, `UPDATE accounts SET callback_queue_limit = 5 WHERE id = $1`, acct); err != nil {
		t.Fatal(err)
	}
	s := postgres.NewCallbackService(db)
	used := callbackRequest(acct)
	used.IdempotencyKey, used.RequestHash = "used", "h"
	first, _, err := s.CreateCallback(ctx, used)
	if err != nil {
		t.Fatal(err)
	}

	req := func(a string, key string) *callbridge.CallbackRequest {
		r := callbackRequest(acct)
		r.A = callbridge.Number(a)
		if key != "" {
			r.IdempotencyKey, r.RequestHash = key, "h"
		}
		return r
	}
	bad := req("4917000003", "")
	bad.B = bad.A // passes no Validate: the server's CHECK refuses it
	stranger := callbackRequest("00000000-0000-4000-8000-000000000000")
	// Values travel in array literals: quotes, backslashes, braces, commas
	// and NULL in them must arrive as sent.
	tricky := req("4917000005", `k"\{x},NULL`)
	tricky.Metadata = json.RawMessage(`{"note": "a\"b\\c {x},NULL"}`)
	tricky.WebhookURL = `http://127.0.0.1:1/h?q="{a,b}"\`
	reqs := []*callbridge.CallbackRequest{
		req("4917000001", "dup"),  // 1: queued (2 in the queue)
		req("4917000002", "dup"),  // same key: nothing
		bad,                       // refused alone
		req("4917000004", "used"), // key used before: nothing
		stranger,                  // unknown account: nothing
		tricky,                    // 3
		req("4917000006", ""),     // 4
		req("4917000007", ""),     // 5: the queue is full
		req("4917000008", ""),     // no room
	}
	cbs, errs := s.CreateBatch(reqs)
	for i, want := range []bool{true, false, false, false, false, true, true, true, false} {
		if i == 2 {
			if callbridge.ErrorCode(postgres.Error(errs[i])) != callbridge.EINVALID || cbs[i] != nil {
				t.Errorf("request %d (a = b): %v %v, want the server's refusal alone", i, cbs[i], errs[i])
			}
			continue
		}
		if errs[i] != nil {
			t.Errorf("request %d: %v", i, errs[i])
		}
		if got := cbs[i] != nil; got != want {
			t.Errorf("request %d: inserted %v, want %v", i, got, want)
		}
	}

	var rows []struct {
		A       string
		Events  int
		Hooks   int
		Created time.Time `db:"created_at"`
		RunAt   time.Time `db:"run_at"`
	}
	if err := pgtest.Select(ctx, db, &rows, `SELECT a, created_at, run_at,
			(SELECT count(*) FROM callback_events e WHERE e.callback_id = c.id) AS events,
			(SELECT count(*) FROM webhooks w WHERE w.key = 'callback:' || c.id) AS hooks
		FROM callbacks c WHERE account_id = $1 AND id <> $2 ORDER BY created_at, id`, acct, first.ID); err != nil {
		t.Fatal(err)
	}
	var order []string
	for i, r := range rows {
		order = append(order, r.A)
		if r.Events != 1 || r.Hooks != 1 || !r.RunAt.Equal(r.Created) {
			t.Errorf("%s: %d events, %d webhooks, run_at %v created %v", r.A, r.Events, r.Hooks, r.RunAt, r.Created)
		}
		if i > 0 && !r.Created.After(rows[i-1].Created) {
			t.Errorf("%s created at %v, not after the request before it", r.A, r.Created)
		}
	}
	if want := "4917000001 4917000005 4917000006 4917000007"; strings.Join(order, " ") != want {
		t.Errorf("stored %v, want %s in request order", order, want)
	}

	if got := cbs[5]; got == nil || string(got.Metadata) != string(tricky.Metadata) || got.WebhookURL != tricky.WebhookURL {
		t.Errorf("tricky values: got %+v", got)
	} else if again, created, err := s.CreateCallback(ctx, tricky); err != nil || created || again.ID != got.ID {
		t.Errorf("tricky idempotency key: %v created=%v %v, want %s", again, created, err, got.ID)
	}

	// Through CreateCallback, the second "dup" is the first's callback and
	// the full queue a rate limit.
	again, created, err := s.CreateCallback(ctx, reqs[1])
	if err != nil || created || again.ID != cbs[0].ID {
		t.Errorf("repeat of a key used in the batch: %v created=%v %v, want %s", again, created, err, cbs[0].ID)
	}
	if _, _, err := s.CreateCallback(ctx, req("4917000009", "")); callbridge.ErrorCode(err) != callbridge.ERATELIMIT {
		t.Errorf("full queue: %v, want rate limited", err)
	}
}

// TestCreateCallbackConcurrent sends many creations at once (they share
// batches): every one answered created is stored once with its history
// and webhook, repeats of one idempotency key all get the same callback,
// and nothing is stored that was not answered.
func TestCreateCallbackConcurrent(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	acct := newCallbackAccount(t, db)
	s := postgres.NewCallbackService(db)
	const n = 120
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := callbackRequest(acct)
			r.A = callbridge.Number(fmt.Sprintf("49170%05d", i))
			if i%10 == 0 {
				r.A = "4917099999"
				r.IdempotencyKey, r.RequestHash = "same", "h"
			}
			cb, _, err := s.CreateCallback(ctx, r)
			if err != nil {
				t.Errorf("create %d: %v", i, err)
				return
			}
			ids[i] = cb.ID
		}(i)
	}
	wg.Wait()
	distinct := map[string]bool{}
	for i, id := range ids {
		distinct[id] = true
		if i%10 == 0 && id != ids[0] {
			t.Errorf("idempotent repeat %d got %s, want %s", i, id, ids[0])
		}
	}
	var stored, events, hooks int
	if err := db.QueryRowContext(ctx, `SELECT count(*),
			(SELECT count(*) FROM callback_events e JOIN callbacks c ON c.id = e.callback_id WHERE c.account_id = $1),
			(SELECT count(*) FROM webhooks WHERE account_id = $1)
		FROM callbacks WHERE account_id = $1`, acct).Scan(&stored, &events, &hooks); err != nil {
		t.Fatal(err)
	}
	if want := n - n/10 + 1; len(distinct) != want || stored != want || events != want || hooks != want {
		t.Errorf("%d distinct ids, %d stored, %d events, %d webhooks; want %d of each", len(distinct), stored, events, hooks, want)
	}
}

// TestEnqueueWebhookEventID: a webhook offered again with the same event
// id (another controller, a retry after a lost reply) is stored once per
// account, without an error; without an event id every offer is stored.
func TestEnqueueWebhookEventID(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	acct, other := newCallbackAccount(t, db), newCallbackAccount(t, db)
	w := postgres.NewWebhookService(db)
	for _, o := range []struct{ acct, event string }{
		{acct, "call-1:started"}, {acct, "call-1:started"}, {acct, "call-1:ended"},
		{other, "call-1:started"}, {acct, ""}, {acct, ""},
	} {
		if err := w.EnqueueWebhook(ctx, o.acct, "http://x.test/h", "t", "k", o.event, map[string]string{"e": o.event}); err != nil {
			t.Fatalf("enqueue %v: %v", o, err)
		}
	}
	count := func(acct string) int {
		ws, _, err := w.Webhooks(ctx, acct, callbridge.WebhookFilter{})
		if err != nil {
			t.Fatal(err)
		}
		return len(ws)
	}
	if got, gotOther := count(acct), count(other); got != 4 || gotOther != 1 {
		t.Errorf("stored %d and %d webhooks, want 4 (two events, two without id) and 1", got, gotOther)
	}
	if err := w.EnqueueWebhook(ctx, acct, "http://x.test/h", "t", "k", strings.Repeat("e", 201), map[string]int{}); callbridge.ErrorField(err) != "event_id" {
		t.Errorf("long event id: %v, want an event_id error", err)
	}
}

// TestBacklog counts queued callbacks and pending webhooks, and dates the
// oldest pending one.
func TestBacklog(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	if q, p, oldest, err := db.Backlog(ctx); err != nil || q != 0 || p != 0 || !oldest.IsZero() {
		t.Fatalf("empty: %d %d %v %v", q, p, oldest, err)
	}
	acct := newCallbackAccount(t, db)
	s := postgres.NewCallbackService(db)
	first, _, err := s.CreateCallback(ctx, callbackRequest(acct)) // with a webhook_url
	if err != nil {
		t.Fatal(err)
	}
	r := callbackRequest(acct)
	r.WebhookURL = ""
	if _, _, err := s.CreateCallback(ctx, r); err != nil {
		t.Fatal(err)
	}
	q, p, oldest, err := db.Backlog(ctx)
	if err != nil || q != 2 || p != 1 || !oldest.Equal(first.CreatedAt) {
		t.Errorf("got %d queued, %d pending, oldest %v (%v); want 2, 1, %v", q, p, oldest, err, first.CreatedAt)
	}
	w := postgres.NewWebhookService(db)
	hooks, err := w.ClaimWebhooks(ctx, 10, time.Minute)
	if err != nil || len(hooks) != 1 {
		t.Fatalf("claim: %v %v", hooks, err)
	}
	if err := w.WebhookDelivered(ctx, hooks[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, p, oldest, err := db.Backlog(ctx); err != nil || p != 0 || !oldest.IsZero() {
		t.Errorf("after delivery: %d pending, oldest %v (%v)", p, oldest, err)
	}
}

// TestCallbackHistoryInTimeOrder: a controller that adopts a callback
// after a restart records what happened meanwhile with the times it
// happened, after entries written later; the history is listed by time,
// not by when entries were inserted.
func TestCallbackHistoryInTimeOrder(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	acct := newCallbackAccount(t, db)
	s := postgres.NewCallbackService(db)
	created, _, err := s.CreateCallback(ctx, callbackRequest(acct))
	if err != nil {
		t.Fatal(err)
	}
	cb, err := s.ClaimCallback(ctx, "w1", "node1", time.Minute)
	if err != nil || cb == nil {
		t.Fatalf("claim: %+v %v", cb, err)
	}
	// The adopter learns of a ringing and an answer that happened a
	// while ago, recorded now (after the claim's entry), oldest last.
	past := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Microsecond)
	err = s.UpdateCallback(ctx, &callbridge.CallbackUpdate{ID: cb.ID, Owner: "w1", Events: []callbridge.CallbackEvent{
		{Type: "leg_answered", Leg: "a", Detail: "seen after restart", At: past.Add(2 * time.Second)},
		{Type: "leg_ringing", Leg: "a", Detail: "seen after restart", At: past},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Callback(ctx, acct, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for i, e := range got.Events {
		types = append(types, e.Type)
		if i > 0 && e.At.Before(got.Events[i-1].At) {
			t.Errorf("entry %d (%s at %v) listed after %s at %v", i, e.Type, e.At, got.Events[i-1].Type, got.Events[i-1].At)
		}
	}
	if len(types) < 4 || types[0] != "leg_ringing" || types[1] != "leg_answered" {
		t.Errorf("history %v, want the two past leg entries first", types)
	}
}

// TestAdoptCarriesAttempts: an adopted callback comes with the history
// entries of its current attempt that name a carrier attempt, in order,
// so that the adopter goes on from them.
func TestAdoptCarriesAttempts(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	acct := newCallbackAccount(t, db)
	s := postgres.NewCallbackService(db)
	live, _, _ := s.CreateCallback(ctx, callbackRequest(acct))
	cb, err := s.ClaimCallback(ctx, "w1", "node1", time.Millisecond)
	if err != nil || cb.ID != live.ID {
		t.Fatalf("claim: %v %v", cb, err)
	}
	t1 := time.Now().UTC().Truncate(time.Millisecond)
	steps := []callbridge.CallbackUpdate{
		{Leg: &callbridge.LegUpdate{Leg: "a", Attempt: cb.Attempt, UUID: "0b8e3a7e-8a43-4c1e-9d52-5a0a4b6f1a01", Node: "node1", Number: cb.A, Gateway: "cheap"},
			Events: []callbridge.CallbackEvent{{Type: callbridge.EventLegCreated, Leg: "a", At: t1, Gateway: "cheap", GatewayAttempt: 1}}},
		{Events: []callbridge.CallbackEvent{{Type: callbridge.EventLegRinging, Leg: "a", At: t1.Add(time.Second)}}},
		{Events: []callbridge.CallbackEvent{{Type: callbridge.EventGatewayAttempt, Leg: "a", At: t1.Add(2 * time.Second), Gateway: "cheap", GatewayAttempt: 1,
			Cause: "NORMAL_TEMPORARY_FAILURE", SIPStatus: 503, Detail: "carrier failure"}}},
	}
	for _, u := range steps {
		u.ID, u.Owner = cb.ID, "w1"
		if err := s.UpdateCallback(ctx, &u); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Millisecond) // the 1 ms lease runs out
	adopted, err := s.AdoptCallbacks(ctx, "w2", time.Minute, 10, false, nil)
	if err != nil || len(adopted) != 1 {
		t.Fatalf("adopt: %v %v", adopted, err)
	}
	var got []string
	for _, e := range adopted[0].Events {
		got = append(got, fmt.Sprintf("%s %s %s#%d %s %d +%s", e.Type, e.Leg, e.Gateway, e.GatewayAttempt, e.Cause, e.SIPStatus, e.At.Sub(t1)))
	}
	want := []string{"leg_created a cheap#1  0 +0s", "gateway_attempt a cheap#1 NORMAL_TEMPORARY_FAILURE 503 +2s"}
	if !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if l := adopted[0].Legs; len(l) != 1 || l[0].Gateway != "cheap" {
		t.Errorf("legs %+v, want A through cheap", l)
	}
}
