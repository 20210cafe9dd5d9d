package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"callbridge"
	"callbridge/postgres/internal/batch"
	"callbridge/postgres/internal/pg"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// CallbackService implements callbridge.CallbackService, and the work
// queue the callback engine claims from.
//
// A creation whose statement was sent, but whose connection failed before
// the server answered, may have committed. CreateCallback settles it in the database, which every
// controller shares: if the callback is there, it is returned as created;
// if not, a row in status 'void' takes its id, so the insert can no longer
// commit and no controller claims it (sql/0018_callback_void.sql), and the
// request is answered as not created. When the database cannot be reached
// to do either, the answer is EOUTCOMEUNKNOWN: the callback may exist, and
// another controller may dial it. No void is kept in memory to write
// later: by then a repeat of the request with its idempotency key may have
// been answered with the callback, on any controller, and a late void
// would undo what that answer promised. The repeat is how the client
// learns the outcome; it creates the callback if the first did not.
type CallbackService struct {
	db *pg.DB

	creates batch.Batcher[*createCall]
}

// createBatches is how many creation statements run at once; more
// requests than that wait for the next batch.
const createBatches = 2

var _ callbridge.CallbackService = (*CallbackService)(nil)

// NewCallbackService returns a CallbackService backed by db.
func NewCallbackService(db *DB) *CallbackService {
	s := &CallbackService{db: db.pg}
	s.creates = batch.Batcher[*createCall]{MaxRunning: createBatches, MaxBatch: 256, Flush: s.flushCreates}
	return s
}

// callbackColumns are the columns scanned into callbridge.Callback.
const callbackColumns = `id, account_id, status, reason, a, b, caller_id_a, caller_id_b,
	ring_timeout_a, ring_timeout_b, max_duration, prompt, record, webhook_url,
	metadata, attempt, node, cancel_requested, created_at, updated_at, ended_at`

// callbackRow is a callbacks row with nullable columns.
type callbackRow struct {
	callbridge.Callback
	MetadataJSON []byte `db:"metadata"`
}

func (r *callbackRow) callback() *callbridge.Callback {
	cb := r.Callback
	if len(r.MetadataJSON) > 0 {
		cb.Metadata = json.RawMessage(r.MetadataJSON)
	}
	cb.CreatedAt = cb.CreatedAt.UTC()
	cb.UpdatedAt = cb.UpdatedAt.UTC()
	if cb.EndedAt != nil {
		t := cb.EndedAt.UTC()
		cb.EndedAt = &t
	}
	return &cb
}

// statusPayload is the webhook body of a callback status change.
func statusPayload(cb *callbridge.Callback, at time.Time, detail string) map[string]any {
	p := map[string]any{
		"type":        "callback.status",
		"callback_id": cb.ID,
		"status":      cb.Status,
		"attempt":     cb.Attempt,
		"at":          at.UTC().Format(time.RFC3339Nano),
	}
	if cb.Reason != "" {
		p["reason"] = cb.Reason
	}
	if detail != "" {
		p["detail"] = detail
	}
	if len(cb.Metadata) > 0 {
		p["metadata"] = cb.Metadata
	}
	return p
}

// webhookKey is the outbox ordering key of a callback's webhooks.
func webhookKey(callbackID string) string { return "callback:" + callbackID }

// CreateCallback implements callbridge.CallbackService. The callback, its
// first history entry and its first webhook are written by one statement,
// so an accepted request is durable before it is answered. Concurrent
// creations share that statement (see batch.Batcher): one round trip and one
// commit then serve many requests. The per-account queue bound is checked
// in the same statement, exactly within a batch; requests in two batches
// running at once may exceed it by the requests of one of them, as two
// single inserts at once would.
//
// The callback's id is chosen before the statement is sent. When the
// connection fails after the statement was sent and before the server
// answered, the statement may have committed; inDoubt settles it (see
// CallbackService). So an error answer means no controller will dial the
// callback, unless it is EOUTCOMEUNKNOWN.
func (s *CallbackService) CreateCallback(ctx context.Context, r *callbridge.CallbackRequest) (*callbridge.Callback, bool, error) {
	if !callbridge.IsUUID(r.AccountID) {
		return nil, false, notFound("account")
	}
	if err := r.Validate(); err != nil {
		return nil, false, err
	}
	c := &createCall{r: r, id: uuid.NewString()}
	if err := s.creates.Do(ctx, c); err != nil {
		return nil, false, err // never sent
	}
	if c.err != nil {
		var pe *pq.Error
		if errors.As(c.err, &pe) {
			return nil, false, Error(c.err) // the server refused it: rolled back
		}
		if c.unsent {
			return nil, false, Error(c.err) // it never reached the server
		}
		cb, err := s.inDoubt(ctx, r, c.id, c.err)
		return cb, err == nil, err
	}
	if c.row != nil {
		return c.row.callback(), true, nil
	}
	if r.IdempotencyKey != "" {
		var existing callbackRow
		var stored *string
		err := s.db.QueryRowxContext(ctx, `SELECT `+callbackColumns+`, request_hash
			FROM callbacks WHERE account_id = $1 AND idempotency_key = $2`, r.AccountID, r.IdempotencyKey).
			Scan(cbScanTargets(&existing, &stored)...)
		if err == nil {
			if stored == nil || *stored != r.RequestHash {
				return nil, false, callbridge.Errorf(callbridge.ECONFLICT, "Idempotency-Key was used with another request")
			}
			return existing.callback(), false, nil
		}
		if err != sql.ErrNoRows {
			return nil, false, Error(err)
		}
	}
	var exists bool
	if err := s.db.GetContext(ctx, &exists, `SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)`, r.AccountID); err != nil {
		return nil, false, Error(err)
	}
	if !exists {
		return nil, false, notFound("account")
	}
	return nil, false, callbridge.Errorf(callbridge.ERATELIMIT, "the account's callback queue is full")
}

// createCall is one CreateCallback in a batch: its request and id, and
// the batch's outcome for it: the row if it was inserted, nil if it was
// not (an idempotent repeat, a full queue, an unknown account), or the
// statement's error, and whether that error means the statement never
// reached the server (pg.NotSent).
type createCall struct {
	r      *callbridge.CallbackRequest
	id     string
	row    *callbackRow
	err    error
	unsent bool
}

// createTimeout bounds a batch of creations; it does not depend on any
// one caller's context, since the batch serves them all.
const createTimeout = 15 * time.Second

// flushCreates inserts a batch of callbacks. If the server refuses the
// batch, nothing of it was written, and one request may be at fault (a
// value a CHECK refuses, say): each is then tried alone, so it fails only
// itself.
func (s *CallbackService) flushCreates(calls []*createCall) {
	defer func() {
		if p := recover(); p != nil {
			for _, c := range calls {
				c.row, c.err = nil, fmt.Errorf("postgres: create callbacks: panic: %v", p)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), createTimeout)
	defer cancel()
	err := s.insertCallbacks(ctx, calls)
	var pe *pq.Error
	if err != nil && errors.As(err, &pe) && len(calls) > 1 {
		for _, c := range calls {
			c.err = s.insertCallbacks(ctx, []*createCall{c})
		}
		return
	}
	for _, c := range calls {
		c.err = err
	}
}

// insertCallbacks is the statement behind CreateCallback, for a batch: it
// inserts the callbacks whose account exists and whose idempotency key is
// new, in the order given, while their account's queue has room, with
// their first history entries and webhooks, and sets the row of each call
// it inserted. created_at (and run_at, so the queue keeps that order) is
// the clock when the row is made, so a batch keeps its order in lists.
func (s *CallbackService) insertCallbacks(ctx context.Context, calls []*createCall) error {
	n := len(calls)
	var (
		ids, accounts, as, bs, cidAs, cidBs, prompts, urls = make([]string, n), make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		ringAs, ringBs, maxDurs = make([]int64, n), make([]int64, n), make([]int64, n)
		records                 = make([]bool, n)
		metas, keys, hashes     = make([]sql.NullString, n), make([]sql.NullString, n), make([]sql.NullString, n)
	)
	for i, c := range calls {
		r := c.r
		ids[i], accounts[i], as[i], bs[i] = c.id, r.AccountID, string(r.A), string(r.B)
		cidAs[i], cidBs[i], prompts[i], urls[i] = string(r.CallerIDA), string(r.CallerIDB), r.Prompt, r.WebhookURL
		ringAs[i], ringBs[i], maxDurs[i], records[i] = int64(r.RingTimeoutA), int64(r.RingTimeoutB), int64(r.MaxDuration), r.Record
		metas[i] = sql.NullString{String: string(r.Metadata), Valid: len(r.Metadata) > 0}
		if r.IdempotencyKey != "" {
			keys[i] = sql.NullString{String: r.IdempotencyKey, Valid: true}
			hashes[i] = sql.NullString{String: r.RequestHash, Valid: true}
		}
		c.row, c.unsent = nil, false
	}
	rows, err := s.db.QueryxContext(ctx, `
		WITH input AS (
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
				$7::int[], $8::int[], $9::int[], $10::text[], $11::bool[], $12::text[], $13::jsonb[],
				$14::text[], $15::text[])
				WITH ORDINALITY AS t(id, account_id, a, b, caller_id_a, caller_id_b, ring_timeout_a,
					ring_timeout_b, max_duration, prompt, record, webhook_url, metadata,
					idempotency_key, request_hash, ord)
		), acct AS (
			SELECT a.id, a.callback_queue_limit AS lim,
				(SELECT count(*) FROM (SELECT 1 FROM callbacks c
					WHERE c.account_id = a.id AND c.status = 'queued'
					LIMIT a.callback_queue_limit) q) AS depth
			FROM accounts a WHERE a.id IN (SELECT account_id FROM input)
		), fresh AS (
			-- the requests that would take a place in the queue, numbered per account
			SELECT i.*, row_number() OVER (PARTITION BY i.account_id ORDER BY i.ord) AS k
			FROM input i
			WHERE i.idempotency_key IS NULL OR NOT EXISTS (SELECT 1 FROM callbacks c
				WHERE c.account_id = i.account_id AND c.idempotency_key = i.idempotency_key)
		), ins AS (
			INSERT INTO callbacks (id, account_id, a, b, caller_id_a, caller_id_b, ring_timeout_a,
				ring_timeout_b, max_duration, prompt, record, webhook_url, metadata,
				idempotency_key, request_hash, created_at, updated_at, run_at)
			SELECT id, account_id, a, b, caller_id_a, caller_id_b, ring_timeout_a, ring_timeout_b,
				max_duration, prompt, record, webhook_url, metadata, idempotency_key, request_hash,
				at, at, at
			FROM (SELECT f.*, clock_timestamp() AS at
				FROM fresh f JOIN acct ON acct.id = f.account_id
				WHERE acct.depth + f.k <= acct.lim
				ORDER BY f.ord) admitted
			ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
			RETURNING `+callbackColumns+`
		), ev AS (
			INSERT INTO callback_events (callback_id, type, status, attempt, detail, at)
			SELECT id, 'status', 'queued', 1, 'created', created_at FROM ins
		), wh AS (
			INSERT INTO webhooks (account_id, url, event_type, key, payload, created_at, next_attempt_at)
			SELECT account_id, webhook_url, 'callback.status', 'callback:' || id,
				jsonb_strip_nulls(jsonb_build_object('type', 'callback.status', 'callback_id', id,
					'status', 'queued', 'attempt', 1, 'detail', 'created',
					'at', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
					'metadata', metadata)),
				created_at, created_at
			FROM ins WHERE webhook_url <> ''
		)
		SELECT * FROM ins`,
		pq.Array(ids), pq.Array(accounts), pq.Array(as), pq.Array(bs), pq.Array(cidAs), pq.Array(cidBs),
		pq.Array(ringAs), pq.Array(ringBs), pq.Array(maxDurs), pq.Array(prompts), pq.Array(records),
		pq.Array(urls), pq.Array(metas), pq.Array(keys), pq.Array(hashes))
	if err != nil {
		for _, c := range calls {
			c.unsent = pg.NotSent(err)
		}
		return err
	}
	defer rows.Close()
	byID := make(map[string]*createCall, n)
	for _, c := range calls {
		byID[c.id] = c
	}
	for rows.Next() {
		row := new(callbackRow)
		if err := rows.Scan(cbScanTargets(row)...); err != nil {
			return err
		}
		if c := byID[row.ID]; c != nil {
			c.row = row
		}
	}
	return rows.Err()
}

// inDoubt settles a creation whose statement failed with cause before
// the server answered, and returns CreateCallback's answer. It writes the
// void of id: if the creation committed, the void leaves it alone
// (waiting for the creation's transaction if it is still open) and the
// callback is returned as created; otherwise the void takes the id and
// the answer is cause (EUNAVAILABLE): not created, and it can no longer
// be. If the database cannot be reached to learn either, the answer is
// EOUTCOMEUNKNOWN.
func (s *CallbackService) inDoubt(ctx context.Context, r *callbridge.CallbackRequest, id string, cause error) (*callbridge.Callback, error) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var err error
	for i := 0; i < 3; i++ {
		var voided bool
		if voided, err = writeVoid(lctx, s.db, r, id); err == nil {
			if voided {
				return nil, Error(cause)
			}
			var row callbackRow
			err = s.db.QueryRowxContext(lctx, `SELECT `+callbackColumns+` FROM callbacks
				WHERE id = $1 AND account_id = $2 AND status <> 'void'`, id, r.AccountID).Scan(cbScanTargets(&row)...)
			if err == nil {
				return row.callback(), nil
			}
			if err == sql.ErrNoRows {
				return nil, Error(cause) // voided by an attempt whose answer was lost, or its account is gone
			}
		}
		select {
		case <-lctx.Done():
		case <-time.After(time.Duration(100<<i) * time.Millisecond):
		}
	}
	msg := fmt.Sprintf("the database could not be reached to learn whether callback %s was created; it may be dialled. "+
		"Send the request again with the same idempotency key: that returns the callback if it was created, and creates it if not", id)
	if r.IdempotencyKey == "" {
		msg = fmt.Sprintf("the database could not be reached to learn whether callback %s was created; it may be dialled. "+
			"Look it up by its id before sending the request again, which would create another; requests with an idempotency key can be repeated safely", id)
	}
	return nil, fmt.Errorf("%w: creating: %v; settling: %v", &callbridge.Error{Code: callbridge.EOUTCOMEUNKNOWN, Message: msg}, cause, err)
}

// writeVoid takes id for a void row of r's account and reports whether it
// did: then the creation that chose id can no longer insert it. An id
// already stored is left alone, as is the id of an account that no longer
// exists. Void rows older than a day are deleted on the way: no creation
// runs that long.
func writeVoid(ctx context.Context, q sqlx.QueryerContext, r *callbridge.CallbackRequest, id string) (bool, error) {
	var voided string
	err := q.QueryRowxContext(ctx, `
		WITH pruned AS (
			DELETE FROM callbacks WHERE status = 'void' AND created_at < now() - interval '1 day'
		)
		INSERT INTO callbacks (id, account_id, status, a, b, ring_timeout_a, ring_timeout_b, max_duration)
		SELECT $1::uuid, $2::uuid, 'void', $3, $4, $5, $6, $7
		WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $2::uuid)
		ON CONFLICT (id) DO NOTHING
		RETURNING id::text`,
		id, r.AccountID, string(r.A), string(r.B), r.RingTimeoutA, r.RingTimeoutB, r.MaxDuration).Scan(&voided)
	if err == sql.ErrNoRows {
		return false, nil
	}
	return err == nil, err
}

// scanTargets lists the destinations of callbackColumns in r, then extra.
func cbScanTargets(r *callbackRow, extra ...any) []any {
	c := &r.Callback
	return append([]any{&c.ID, &c.AccountID, &c.Status, &c.Reason, &c.A, &c.B, &c.CallerIDA, &c.CallerIDB,
		&c.RingTimeoutA, &c.RingTimeoutB, &c.MaxDuration, &c.Prompt, &c.Record, &c.WebhookURL,
		&r.MetadataJSON, &c.Attempt, &c.Node, &c.CancelRequested, &c.CreatedAt, &c.UpdatedAt, &c.EndedAt}, extra...)
}

// Callback implements callbridge.CallbackService.
func (s *CallbackService) Callback(ctx context.Context, accountID, id string) (*callbridge.Callback, error) {
	if !callbridge.IsUUID(accountID) || !callbridge.IsUUID(id) {
		return nil, notFound("callback")
	}
	var row callbackRow
	err := s.db.QueryRowxContext(ctx, `SELECT `+callbackColumns+` FROM callbacks
		WHERE id = $1 AND account_id = $2 AND status <> 'void'`, id, accountID).Scan(cbScanTargets(&row)...)
	if err == sql.ErrNoRows {
		return nil, notFound("callback")
	}
	if err != nil {
		return nil, Error(err)
	}
	cb := row.callback()
	if err := s.db.SelectContext(ctx, &cb.Legs, `SELECT callback_id, leg, attempt, uuid, node, number,
		caller_id, created_at, ringing_at, answered_at, hangup_at, hangup_cause, gateway
		FROM callback_legs WHERE callback_id = $1 ORDER BY attempt, leg`, id); err != nil {
		return nil, Error(err)
	}
	for _, l := range cb.Legs {
		l.CreatedAt = l.CreatedAt.UTC()
		l.RingingAt, l.AnsweredAt, l.HangupAt = cbUTCPtr(l.RingingAt), cbUTCPtr(l.AnsweredAt), cbUTCPtr(l.HangupAt)
	}
	// By time, not insertion: a controller adopting a callback after a
	// restart records what happened meanwhile with the times it happened.
	if err := s.db.SelectContext(ctx, &cb.Events, `SELECT id, type, status, reason, leg, attempt, detail, at,
			gateway, gateway_attempt, cause, sip_status, duration_ms
		FROM callback_events WHERE callback_id = $1 ORDER BY at, id`, id); err != nil {
		return nil, Error(err)
	}
	for _, e := range cb.Events {
		e.At = e.At.UTC()
	}
	ids, err := s.cdrIDs(ctx, accountID, id)
	if err != nil {
		return nil, err
	}
	cb.CDRIDs = ids
	return cb, nil
}

// cdrIDs returns the ids (call uuids) of the CDRs rated for a callback's
// legs, oldest first. The cdrs table belongs to the CDR pipeline's
// migration; until it exists there are none.
func (s *CallbackService) cdrIDs(ctx context.Context, accountID, id string) ([]string, error) {
	var ok bool
	if err := s.db.GetContext(ctx, &ok, `SELECT to_regclass('cdrs') IS NOT NULL`); err != nil {
		return nil, Error(err)
	}
	if !ok {
		return nil, nil
	}
	var ids []string
	err := s.db.SelectContext(ctx, &ids, `SELECT uuid::text FROM cdrs
		WHERE callback_id = $1 AND account_id = $2 ORDER BY start_at, uuid`, id, accountID)
	return ids, Error(err)
}

func cbUTCPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// Callbacks implements callbridge.CallbackService.
func (s *CallbackService) Callbacks(ctx context.Context, accountID string, f callbridge.CallbackFilter) ([]*callbridge.Callback, string, error) {
	if !callbridge.IsUUID(accountID) {
		return nil, "", notFound("account")
	}
	if f.Status != "" && !f.Status.Valid() {
		return nil, "", callbridge.FieldError("status", "is not a callback status")
	}
	limit := f.Limit
	if limit == 0 {
		limit = 50
	}
	if limit < 1 || limit > 500 {
		return nil, "", callbridge.FieldError("limit", "must be between 1 and 500")
	}
	var curAt *time.Time
	var curID *string
	if f.Cursor != "" {
		at, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		curAt, curID = &at, &id
	}
	var since *time.Time
	if !f.Since.IsZero() {
		since = &f.Since
	}
	rows, err := s.db.QueryxContext(ctx, `SELECT `+callbackColumns+` FROM callbacks
		WHERE account_id = $1 AND status <> 'void'
		  AND ($2 = '' OR status = $2)
		  AND ($3::timestamptz IS NULL OR created_at >= $3)
		  AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
		ORDER BY created_at DESC, id DESC LIMIT $6`,
		accountID, string(f.Status), since, curAt, curID, limit+1)
	if err != nil {
		return nil, "", Error(err)
	}
	defer rows.Close()
	var out []*callbridge.Callback
	for rows.Next() {
		var row callbackRow
		if err := rows.Scan(cbScanTargets(&row)...); err != nil {
			return nil, "", Error(err)
		}
		out = append(out, row.callback())
	}
	if err := rows.Err(); err != nil {
		return nil, "", Error(err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		next = encodeCursor(last.CreatedAt, last.ID)
	}
	return out, next, nil
}

// CancelCallback implements callbridge.CallbackService.
func (s *CallbackService) CancelCallback(ctx context.Context, accountID, id string) (*callbridge.Callback, error) {
	if !callbridge.IsUUID(accountID) || !callbridge.IsUUID(id) {
		return nil, notFound("callback")
	}
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		var row callbackRow
		err := tx.QueryRowxContext(ctx, `SELECT `+callbackColumns+` FROM callbacks
			WHERE id = $1 AND account_id = $2 AND status <> 'void' FOR UPDATE`, id, accountID).Scan(cbScanTargets(&row)...)
		if err == sql.ErrNoRows {
			return notFound("callback")
		}
		if err != nil {
			return Error(err)
		}
		cb := row.callback()
		switch {
		case cb.Status == callbridge.CallbackQueued:
			return setStatusTx(ctx, tx, cb, callbridge.CallbackFailed, callbridge.ReasonCancelled, "cancelled while queued", nil)
		case cb.Status.Live() && !cb.CancelRequested:
			if _, err := tx.ExecContext(ctx, `UPDATE callbacks SET cancel_requested = true, updated_at = now()
				WHERE id = $1`, id); err != nil {
				return Error(err)
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO callback_events (callback_id, type, attempt, detail)
				VALUES ($1, 'cancel_requested', $2, 'DELETE while '||$3)`, id, cb.Attempt, string(cb.Status))
			return Error(err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.Callback(ctx, accountID, id)
}

// setStatusTx moves cb (locked by tx) to status, writes the history entry
// and the webhook. extra columns are set by the caller's own statement.
func setStatusTx(ctx context.Context, tx *pg.Tx, cb *callbridge.Callback, status callbridge.CallbackStatus, reason callbridge.FailReason, detail string, runAt *time.Time) error {
	var at time.Time
	err := tx.QueryRowxContext(ctx, `UPDATE callbacks SET status = $2, reason = $3, updated_at = now(),
			ended_at = CASE WHEN $2 IN ('completed', 'failed') THEN now() END,
			owner = CASE WHEN $2 IN ('queued', 'completed', 'failed') THEN '' ELSE owner END,
			lease_until = CASE WHEN $2 IN ('queued', 'completed', 'failed') THEN NULL ELSE lease_until END,
			cancel_requested = CASE WHEN $2 IN ('completed', 'failed') THEN false ELSE cancel_requested END,
			attempt = CASE WHEN $4::timestamptz IS NOT NULL THEN attempt + 1 ELSE attempt END,
			run_at = coalesce($4::timestamptz, run_at)
		WHERE id = $1 RETURNING attempt, updated_at`, cb.ID, string(status), string(reason), runAt).Scan(&cb.Attempt, &at)
	if err != nil {
		return Error(err)
	}
	cb.Status, cb.Reason = status, reason
	if _, err := tx.ExecContext(ctx, `INSERT INTO callback_events (callback_id, type, status, reason, attempt, detail)
		VALUES ($1, 'status', $2, $3, $4, $5)`, cb.ID, string(status), string(reason), cb.Attempt, detail); err != nil {
		return Error(err)
	}
	if cb.WebhookURL == "" {
		return nil
	}
	return enqueueWebhookTx(ctx, tx, cb.AccountID, cb.WebhookURL, "callback.status", webhookKey(cb.ID), "", statusPayload(cb, at, detail))
}

// ClaimCallbacks claims up to n of the oldest due queued callbacks for
// owner, on node, with a lease, and moves them to calling_a, in one
// transaction. Rows locked by another worker are skipped, so two workers
// never claim the same callback.
func (s *CallbackService) ClaimCallbacks(ctx context.Context, owner, node string, lease time.Duration, n int) ([]*callbridge.Callback, error) {
	var cbs []*callbridge.Callback
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		cbs = nil
		rows, err := tx.QueryxContext(ctx, `SELECT `+callbackColumns+` FROM callbacks
			WHERE status = 'queued' AND run_at <= now()
			ORDER BY run_at, id LIMIT $1 FOR UPDATE SKIP LOCKED`, max(n, 1))
		if err != nil {
			return Error(err)
		}
		for rows.Next() {
			var row callbackRow
			if err := rows.Scan(cbScanTargets(&row)...); err != nil {
				rows.Close()
				return Error(err)
			}
			cbs = append(cbs, row.callback())
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return Error(err)
		}
		for _, cb := range cbs {
			if _, err := tx.ExecContext(ctx, `UPDATE callbacks SET owner = $2, node = $3,
				lease_until = now() + $4 * interval '1 millisecond' WHERE id = $1`,
				cb.ID, owner, node, lease.Milliseconds()); err != nil {
				return Error(err)
			}
			cb.Node = node
			if err := setStatusTx(ctx, tx, cb, callbridge.CallbackCallingA, "", "claimed by "+owner, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, cb := range cbs {
		if err := s.retryPolicy(ctx, cb); err != nil {
			return nil, err
		}
	}
	return cbs, nil
}

// DueQueue returns how many queued callbacks are due and when the oldest
// of them became due (zero when none): the callback queue's backlog,
// shared by every controller.
func (s *CallbackService) DueQueue(ctx context.Context) (int, time.Time, error) {
	var n int
	var oldest sql.NullTime
	err := s.db.QueryRowContext(ctx, `SELECT count(*), min(run_at) FROM callbacks
		WHERE status = 'queued' AND run_at <= now()`).Scan(&n, &oldest)
	if err != nil {
		return 0, time.Time{}, Error(err)
	}
	if !oldest.Valid {
		return n, time.Time{}, nil
	}
	return n, oldest.Time.UTC(), nil
}

func (s *CallbackService) retryPolicy(ctx context.Context, cb *callbridge.Callback) error {
	var n, ms int64
	err := s.db.QueryRowContext(ctx, `SELECT callback_retry_attempts, callback_retry_delay_ms
		FROM accounts WHERE id = $1`, cb.AccountID).Scan(&n, &ms)
	if err != nil {
		return Error(err)
	}
	cb.Retry = callbridge.RetryPolicy{Attempts: int(n), Delay: time.Duration(ms) * time.Millisecond}
	return nil
}

func cbQualified(alias string) string {
	return fmt.Sprintf(`%[1]s.id, %[1]s.account_id, %[1]s.status, %[1]s.reason, %[1]s.a, %[1]s.b,
		%[1]s.caller_id_a, %[1]s.caller_id_b, %[1]s.ring_timeout_a, %[1]s.ring_timeout_b,
		%[1]s.max_duration, %[1]s.prompt, %[1]s.record, %[1]s.webhook_url, %[1]s.metadata,
		%[1]s.attempt, %[1]s.node, %[1]s.cancel_requested, %[1]s.created_at, %[1]s.updated_at,
		%[1]s.ended_at`, alias)
}

// AdoptCallbacks takes over up to n live callbacks whose lease has run
// out, with a fresh lease, and returns them with their legs for
// reconciliation and the history entries of their carrier attempts
// (the adopter fails over from them). With own, it also takes those owner holds under a lease
// still running: what a controller restarted under the same name left,
// which only its first pass, before it claims anything, may take. held
// are the callbacks owner drives now; they are never taken, even when
// their lease ran out while a renewal was late.
func (s *CallbackService) AdoptCallbacks(ctx context.Context, owner string, lease time.Duration, n int, own bool, held []string) ([]*callbridge.Callback, error) {
	if held == nil {
		held = []string{} // a NULL array would exclude every row
	}
	var out []*callbridge.Callback
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		rows, err := tx.QueryxContext(ctx, `UPDATE callbacks c SET owner = $1,
				lease_until = now() + $2 * interval '1 millisecond', updated_at = now()
			WHERE id IN (SELECT id FROM callbacks
				WHERE status IN ('calling_a', 'a_answered', 'calling_b', 'bridged')
				  AND (lease_until IS NULL OR lease_until < now() OR ($4 AND owner = $1))
				  AND id <> ALL($5::uuid[])
				ORDER BY lease_until NULLS FIRST LIMIT $3 FOR UPDATE SKIP LOCKED)
			RETURNING `+cbQualified("c"), owner, lease.Milliseconds(), n, own, pq.Array(held))
		if err != nil {
			return Error(err)
		}
		defer rows.Close()
		for rows.Next() {
			var row callbackRow
			if err := rows.Scan(cbScanTargets(&row)...); err != nil {
				return Error(err)
			}
			out = append(out, row.callback())
		}
		return Error(rows.Err())
	})
	if err != nil {
		return nil, err
	}
	for _, cb := range out {
		if err := s.db.SelectContext(ctx, &cb.Legs, `SELECT callback_id, leg, attempt, uuid, node, number,
			caller_id, created_at, ringing_at, answered_at, hangup_at, hangup_cause, gateway
			FROM callback_legs WHERE callback_id = $1 AND attempt = $2 ORDER BY leg`, cb.ID, cb.Attempt); err != nil {
			return nil, Error(err)
		}
		// The carrier attempts made: the adopter goes on from them.
		if err := s.db.SelectContext(ctx, &cb.Events, `SELECT id, type, status, reason, leg, attempt, detail, at,
				gateway, gateway_attempt, cause, sip_status, duration_ms
			FROM callback_events WHERE callback_id = $1 AND attempt = $2 AND gateway_attempt > 0 ORDER BY at, id`,
			cb.ID, cb.Attempt); err != nil {
			return nil, Error(err)
		}
		if err := s.retryPolicy(ctx, cb); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// RenewLeases extends owner's leases on ids and returns the ids whose
// cancellation was requested and those owner no longer holds (taken over
// or ended elsewhere).
func (s *CallbackService) RenewLeases(ctx context.Context, owner string, ids []string, lease time.Duration) (cancel, lost []string, err error) {
	if len(ids) == 0 {
		return nil, nil, nil
	}
	rows, err := s.db.QueryContext(ctx, `UPDATE callbacks SET lease_until = now() + $3 * interval '1 millisecond'
		WHERE id = ANY($1::uuid[]) AND owner = $2 AND status IN ('calling_a', 'a_answered', 'calling_b', 'bridged')
		RETURNING id, cancel_requested`, pq.Array(ids), owner, lease.Milliseconds())
	if err != nil {
		return nil, nil, Error(err)
	}
	defer rows.Close()
	held := map[string]bool{}
	for rows.Next() {
		var id string
		var c bool
		if err := rows.Scan(&id, &c); err != nil {
			return nil, nil, Error(err)
		}
		held[id] = true
		if c {
			cancel = append(cancel, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, Error(err)
	}
	for _, id := range ids {
		if !held[id] {
			lost = append(lost, id)
		}
	}
	return cancel, lost, nil
}

// CancelRequested reports whether a DELETE asked for the callback to end.
func (s *CallbackService) CancelRequested(ctx context.Context, id string) (bool, error) {
	var c bool
	err := s.db.GetContext(ctx, &c, `SELECT cancel_requested FROM callbacks WHERE id = $1`, id)
	return c, Error(err)
}

// ErrLeaseLost is returned by UpdateCallback when the worker no longer
// holds the callback (another controller took it over, or it ended).
// Updates without a status change (leg facts, history) are accepted for
// callbacks that ended or were queued again.
var ErrLeaseLost = callbridge.Errorf(callbridge.ECONFLICT, "postgres: callback lease lost")

// UpdateCallback applies one step of a callback worker atomically: leg
// facts, history entries, a status change with its webhook. It returns
// ErrLeaseLost if u.Owner does not hold the callback any more.
func (s *CallbackService) UpdateCallback(ctx context.Context, u *callbridge.CallbackUpdate) error {
	return s.db.Tx(ctx, func(tx *pg.Tx) error {
		var row callbackRow
		// Facts about legs may arrive after the callback ended or was queued
		// again (a leg's last hangup); they are recorded whoever owns it.
		err := tx.QueryRowxContext(ctx, `UPDATE callbacks SET updated_at = now(),
				node = CASE WHEN $3 = '' THEN node ELSE $3 END
			WHERE id = $1 AND (
				(owner = $2 AND status IN ('calling_a', 'a_answered', 'calling_b', 'bridged'))
				OR ($4 AND status IN ('queued', 'completed', 'failed')))
			RETURNING `+callbackColumns, u.ID, u.Owner, u.Node, u.Status == "").Scan(cbScanTargets(&row)...)
		if err == sql.ErrNoRows {
			return ErrLeaseLost
		}
		if err != nil {
			return Error(err)
		}
		cb := row.callback()
		if l := u.Leg; l != nil && l.Replaces {
			if err := replaceLegTx(ctx, tx, cb, l); err != nil {
				return err
			}
		} else if l != nil {
			var created bool
			if err := tx.QueryRowxContext(ctx, `INSERT INTO callback_legs (callback_id, leg, attempt, uuid, node,
					number, caller_id, ringing_at, answered_at, hangup_at, hangup_cause, gateway)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
				ON CONFLICT (callback_id, leg, attempt) DO UPDATE SET
					ringing_at = coalesce(callback_legs.ringing_at, EXCLUDED.ringing_at),
					answered_at = coalesce(callback_legs.answered_at, EXCLUDED.answered_at),
					hangup_at = coalesce(callback_legs.hangup_at, EXCLUDED.hangup_at),
					hangup_cause = CASE WHEN callback_legs.hangup_cause = '' THEN EXCLUDED.hangup_cause
						ELSE callback_legs.hangup_cause END
				RETURNING xmax = 0`,
				u.ID, l.Leg, l.Attempt, l.UUID, l.Node, l.Number, l.CallerID,
				cbNullTime(l.Ringing), cbNullTime(l.Answered), cbNullTime(l.Hangup), l.Cause, l.Gateway).Scan(&created); err != nil {
				return Error(err)
			}
			if created && l.Hangup.IsZero() {
				if err := liveLegTx(ctx, tx, cb, l); err != nil {
					return err
				}
			}
		}
		for _, e := range u.Events {
			if _, err := tx.ExecContext(ctx, `INSERT INTO callback_events (callback_id, type, leg, attempt, detail, at,
					gateway, gateway_attempt, cause, sip_status, duration_ms)
				VALUES ($1, $2, $3, $4, $5, coalesce($6, clock_timestamp()), $7, $8, $9, $10, $11)`,
				u.ID, e.Type, e.Leg, cb.Attempt, e.Detail, cbNullTime(e.At),
				e.Gateway, e.GatewayAttempt, e.Cause, e.SIPStatus, e.DurationMS); err != nil {
				return Error(err)
			}
		}
		if u.Status == "" {
			return nil
		}
		var runAt *time.Time
		if u.Status == callbridge.CallbackQueued {
			t := u.RunAt
			if t.IsZero() {
				t = time.Now()
			}
			runAt = &t
		}
		return setStatusTx(ctx, tx, cb, u.Status, u.Reason, u.Detail, runAt)
	})
}

func cbNullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// replaceLegTx resets a leg's record to its new placement (l.UUID) after
// the node refused the previous one before anything rang, and records the
// new channel as live.
func replaceLegTx(ctx context.Context, tx *pg.Tx, cb *callbridge.Callback, l *callbridge.LegUpdate) error {
	res, err := tx.ExecContext(ctx, `UPDATE callback_legs SET uuid = $4, node = $5, number = $6, caller_id = $7,
			created_at = clock_timestamp(), ringing_at = NULL, answered_at = NULL, hangup_at = NULL, hangup_cause = '', gateway = $8
		WHERE callback_id = $1 AND leg = $2 AND attempt = $3`,
		cb.ID, l.Leg, l.Attempt, l.UUID, l.Node, l.Number, l.CallerID, l.Gateway)
	if err != nil {
		return Error(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return callbridge.Errorf(callbridge.ENOTFOUND, "postgres: leg %s of callback %s attempt %d to replace", l.Leg, cb.ID, l.Attempt)
	}
	return liveLegTx(ctx, tx, cb, l)
}

// liveLegTx records a callback leg about to be originated in
// live_channels, in the transaction that records the leg and so before
// the originate is sent. The CDR pipeline's reconciliation and sweep then
// close the leg even if none of its events is ever received (the
// controller was killed, the event connection was down, FreeSWITCH never
// created the channel); the leg's own events fill in the rest and its
// CDR removes the row. The gateway is left empty for the channel's events
// to fill in; max_ms stays 0 until they bring callbridge_max_ms.
func liveLegTx(ctx context.Context, tx *pg.Tx, cb *callbridge.Callback, l *callbridge.LegUpdate) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO live_channels (uuid, node, leg, account_id, callback_id,
			direction, caller, callee, presented, gateway, start_at, max_ms, seen_at)
		SELECT $1, $2, $3, $4, $5, 'outbound', $6, $7, $6, $8, clock_timestamp(), 0, clock_timestamp()
		WHERE NOT EXISTS (SELECT 1 FROM cdr_keys WHERE uuid = $1)
		ON CONFLICT (uuid) DO NOTHING`,
		l.UUID, l.Node, l.Leg, cb.AccountID, cb.ID, string(l.CallerID), string(l.Number), l.Gateway)
	return Error(err)
}
