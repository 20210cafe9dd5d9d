package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"callbridge"
	"callbridge/postgres/internal/pg"

	"github.com/jmoiron/sqlx"
)

// WebhookService is the durable webhook outbox: it implements
// callbridge.WebhookService for the API and the claim/mark methods the
// deliverer uses.
type WebhookService struct{ db *pg.DB }

var _ callbridge.WebhookService = (*WebhookService)(nil)

// NewWebhookService returns a WebhookService backed by db.
func NewWebhookService(db *DB) *WebhookService { return &WebhookService{db: db.pg} }

// maxWebhookPayload caps one webhook body.
const maxWebhookPayload = 64 << 10

// EnqueueWebhook implements callbridge.WebhookEnqueuer in a statement of
// its own.
func (s *WebhookService) EnqueueWebhook(ctx context.Context, accountID, url, eventType, key, eventID string, payload any) error {
	return enqueueWebhookTx(ctx, s.db, accountID, url, eventType, key, eventID, payload)
}

// enqueueWebhookTx puts a webhook in the outbox through q, which is
// normally the *pg.Tx that writes the change the webhook reports, so the
// webhook exists if and only if the change does. Other stores of this
// package call it inside their transactions. Entries with the same key are
// delivered one at a time, oldest first. A non-empty eventID stores the
// webhook only if the account has none with that event id yet. An empty
// url enqueues nothing. Errors: EINVALID for a bad url, event type, key,
// event id or payload.
func enqueueWebhookTx(ctx context.Context, q sqlx.ExecerContext, accountID, url, eventType, key, eventID string, payload any) error {
	if url == "" {
		return nil
	}
	if err := callbridge.ValidateWebhookURL(url); err != nil {
		return err
	}
	if !callbridge.IsUUID(accountID) {
		return notFound("account")
	}
	if eventType == "" || len(eventType) > 64 {
		return callbridge.FieldError("event_type", "must have 1 to 64 characters")
	}
	if key == "" || len(key) > 200 {
		return callbridge.FieldError("key", "must have 1 to 200 characters")
	}
	if len(eventID) > 200 {
		return callbridge.FieldError("event_id", "must have at most 200 characters")
	}
	body, err := json.Marshal(payload)
	if err != nil || len(body) == 0 || body[0] != '{' {
		return callbridge.FieldError("payload", "must marshal to a JSON object")
	}
	if len(body) > maxWebhookPayload {
		return callbridge.FieldError("payload", "must be at most %d bytes", maxWebhookPayload)
	}
	var id any // NULL: no event id
	if eventID != "" {
		id = eventID
	}
	_, err = q.ExecContext(ctx, `INSERT INTO webhooks (account_id, url, event_type, key, event_id, payload)
		VALUES ($1, $2, $3, $4, $5, $6::jsonb)
		ON CONFLICT (account_id, event_id) WHERE event_id IS NOT NULL DO NOTHING`,
		accountID, url, eventType, key, id, string(body))
	return Error(err)
}

const webhookColumns = `id, account_id, url, event_type, key, payload, status, attempts,
	next_attempt_at, last_error, created_at, delivered_at`

func scanWebhooks(rows *sqlx.Rows) ([]*callbridge.Webhook, error) {
	defer rows.Close()
	var out []*callbridge.Webhook
	for rows.Next() {
		var w callbridge.Webhook
		var body []byte
		if err := rows.Scan(&w.ID, &w.AccountID, &w.URL, &w.EventType, &w.Key, &body, &w.Status, &w.Attempts,
			&w.NextAttemptAt, &w.LastError, &w.CreatedAt, &w.DeliveredAt); err != nil {
			return nil, Error(err)
		}
		w.Payload = json.RawMessage(body)
		w.NextAttemptAt, w.CreatedAt, w.DeliveredAt = w.NextAttemptAt.UTC(), w.CreatedAt.UTC(), cbUTCPtr(w.DeliveredAt)
		out = append(out, &w)
	}
	return out, Error(rows.Err())
}

// Webhooks implements callbridge.WebhookService. The cursor is the id of
// the last entry of the previous page.
func (s *WebhookService) Webhooks(ctx context.Context, accountID string, f callbridge.WebhookFilter) ([]*callbridge.Webhook, string, error) {
	if !callbridge.IsUUID(accountID) {
		return nil, "", notFound("account")
	}
	switch f.Status {
	case "", callbridge.WebhookPending, callbridge.WebhookDelivered, callbridge.WebhookDead:
	default:
		return nil, "", callbridge.FieldError("status", "must be pending, delivered or dead")
	}
	limit := f.Limit
	if limit == 0 {
		limit = 50
	}
	if limit < 1 || limit > 500 {
		return nil, "", callbridge.FieldError("limit", "must be between 1 and 500")
	}
	var before int64
	if f.Cursor != "" {
		n, err := strconv.ParseInt(f.Cursor, 10, 64)
		if err != nil || n <= 0 {
			return nil, "", callbridge.FieldError("cursor", "is not a cursor from a previous page")
		}
		before = n
	}
	rows, err := s.db.QueryxContext(ctx, `SELECT `+webhookColumns+` FROM webhooks
		WHERE account_id = $1 AND ($2 = '' OR status = $2) AND ($3 = '' OR key = $3)
		  AND ($4 = 0 OR id < $4)
		ORDER BY id DESC LIMIT $5`, accountID, string(f.Status), f.Key, before, limit+1)
	if err != nil {
		return nil, "", Error(err)
	}
	out, err := scanWebhooks(rows)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = strconv.FormatInt(out[limit-1].ID, 10)
	}
	return out, next, nil
}

// ClaimWebhooks claims up to n due pending entries, each the oldest
// pending entry of its key, and hides them from other deliverers for hold
// (longer than one delivery attempt takes) by moving next_attempt_at. The
// attempt counter is incremented. Rows locked by another deliverer are
// skipped, and a key with an entry in flight yields nothing else, so each
// key's entries go out in order.
func (s *WebhookService) ClaimWebhooks(ctx context.Context, n int, hold time.Duration) ([]*callbridge.Webhook, error) {
	rows, err := s.db.QueryxContext(ctx, `UPDATE webhooks w
		SET next_attempt_at = now() + $2 * interval '1 millisecond', attempts = attempts + 1
		WHERE id IN (
			SELECT c.id FROM webhooks c
			WHERE c.status = 'pending' AND c.next_attempt_at <= now()
			  AND NOT EXISTS (SELECT 1 FROM webhooks p
				WHERE p.key = c.key AND p.status = 'pending' AND p.id < c.id)
			ORDER BY c.next_attempt_at, c.id LIMIT $1
			FOR UPDATE OF c SKIP LOCKED)
		RETURNING `+webhookColumns, n, hold.Milliseconds())
	if err != nil {
		return nil, Error(err)
	}
	return scanWebhooks(rows)
}

// WebhookDelivered marks an entry delivered.
func (s *WebhookService) WebhookDelivered(ctx context.Context, id int64) error {
	_, err := s.db.ExecContext(ctx, `UPDATE webhooks SET status = 'delivered', delivered_at = now(),
		last_error = '' WHERE id = $1 AND status = 'pending'`, id)
	return Error(err)
}

// WebhookFailed records a failed attempt: the entry is tried again at next,
// or marked dead when dead is true.
func (s *WebhookService) WebhookFailed(ctx context.Context, id int64, reason string, next time.Time, dead bool) error {
	if len(reason) > 500 {
		reason = reason[:500]
	}
	reason = strings.ToValidUTF8(strings.ReplaceAll(reason, "\x00", ""), "")
	status := callbridge.WebhookPending
	if dead {
		status = callbridge.WebhookDead
	}
	_, err := s.db.ExecContext(ctx, `UPDATE webhooks SET status = $2, last_error = $3, next_attempt_at = $4
		WHERE id = $1 AND status = 'pending'`, id, string(status), reason, next.UTC())
	return Error(err)
}

// Backlog reports the work waiting in the database for every controller:
// callbacks not yet placed, webhooks neither delivered nor dead, and when
// the oldest of those was made (zero when none). Both counts read partial
// indexes of the waiting rows, so the cost follows the backlog, not the
// history.
func (db *DB) Backlog(ctx context.Context) (queuedCallbacks, pendingWebhooks int64, oldestPending time.Time, err error) {
	var oldest sql.NullTime
	err = db.QueryRowContext(ctx, `SELECT
			(SELECT count(*) FROM callbacks WHERE status = 'queued'),
			(SELECT count(*) FROM webhooks WHERE status = 'pending'),
			(SELECT min(created_at) FROM webhooks WHERE status = 'pending')`).
		Scan(&queuedCallbacks, &pendingWebhooks, &oldest)
	if err != nil {
		return 0, 0, time.Time{}, Error(err)
	}
	if oldest.Valid {
		oldestPending = oldest.Time.UTC()
	}
	return queuedCallbacks, pendingWebhooks, oldestPending, nil
}
