package callbridge

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// WebhookStatus is the delivery state of an outbox entry:
// pending → delivered, or pending → dead once retries ran out.
type WebhookStatus string

// Webhook states.
const (
	WebhookPending   WebhookStatus = "pending"
	WebhookDelivered WebhookStatus = "delivered"
	WebhookDead      WebhookStatus = "dead"
)

// SignatureHeader carries "sha256=<hex HMAC-SHA256 of the body>" keyed by
// the deployment's webhook secret.
const SignatureHeader = "X-Callbridge-Signature"

// Webhook is one entry of the durable outbox: a JSON body to POST to URL.
// Entries with the same Key are delivered one at a time, in the order they
// were enqueued.
type Webhook struct {
	ID        int64           `json:"id" db:"id"`
	AccountID string          `json:"account_id" db:"account_id"`
	URL       string          `json:"url" db:"url"`
	EventType string          `json:"event_type" db:"event_type"`
	Key       string          `json:"key" db:"key"`
	Payload   json.RawMessage `json:"payload" db:"payload"`
	Status    WebhookStatus   `json:"status" db:"status"`
	Attempts  int             `json:"attempts" db:"attempts"`
	// NextAttemptAt is when a pending entry is tried next.
	NextAttemptAt time.Time `json:"next_attempt_at" db:"next_attempt_at"`
	// LastError says why the last attempt failed ("HTTP 503", a network
	// error), "" after success.
	LastError   string     `json:"last_error,omitempty" db:"last_error"`
	CreatedAt   time.Time  `json:"created_at" db:"created_at"`
	DeliveredAt *time.Time `json:"delivered_at,omitempty" db:"delivered_at"`
}

// WebhookFilter selects an account's outbox entries for listing, newest
// first.
type WebhookFilter struct {
	Status WebhookStatus
	Key    string
	Cursor string
	Limit  int
}

// WebhookEnqueuer puts a webhook in the outbox. Features that report
// events (callbacks, bindings) use it; the deliverer does the rest.
type WebhookEnqueuer interface {
	// EnqueueWebhook stores payload (marshalled to JSON) for delivery to
	// url. key orders deliveries: entries with the same key go out one at
	// a time, oldest first (use "callback:<id>", "binding:<id>"). eventID,
	// when not empty, names the event reported: a webhook of the account
	// with that event id already stored is not stored again (the same
	// event heard by several controllers, or offered again after a lost
	// reply), and that is no error. An empty url enqueues nothing.
	// EINVALID (url, event id or payload).
	EnqueueWebhook(ctx context.Context, accountID, url, eventType, key, eventID string, payload any) error
}

// WebhookService is the outbox as the API sees it.
type WebhookService interface {
	WebhookEnqueuer
	// Webhooks lists an account's outbox entries and the next cursor.
	// EINVALID.
	Webhooks(ctx context.Context, accountID string, f WebhookFilter) ([]*Webhook, string, error)
}

// SignWebhook returns the value of SignatureHeader for body.
func SignWebhook(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifyWebhook reports, in constant time, whether sig is the signature of
// body under secret. Receivers use it.
func VerifyWebhook(secret, body []byte, sig string) bool {
	return hmac.Equal([]byte(SignWebhook(secret, body)), []byte(sig))
}
