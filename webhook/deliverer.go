// Package webhook delivers the webhook outbox: signed POSTs, at least once and
// in order per key, with retries and backoff, to public addresses only (its
// SSRF guard refuses internal ones after DNS resolution). It writes no
// outbox entries itself; every feature enqueues its own.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"callbridge"
)

// Outbox is what the deliverer needs of the outbox (implemented by
// *postgres.WebhookService).
type Outbox interface {
	// ClaimWebhooks claims due entries, at most one per key, hiding them
	// from other deliverers for hold, and counts the attempt.
	ClaimWebhooks(ctx context.Context, n int, hold time.Duration) ([]*callbridge.Webhook, error)
	// WebhookDelivered marks an entry delivered.
	WebhookDelivered(ctx context.Context, id int64) error
	// WebhookFailed schedules the next attempt, or marks the entry dead.
	WebhookFailed(ctx context.Context, id int64, reason string, next time.Time, dead bool) error
}

// Config configures a Deliverer.
type Config struct {
	// Secret keys the HMAC-SHA256 signature of every body.
	Secret []byte
	// Timeout bounds one POST (default 10 s).
	Timeout time.Duration
	// Concurrency is how many entries are posted at once (default 8).
	Concurrency int
	// PollInterval is how often an idle deliverer looks for due entries
	// (default 500 ms).
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the delay before a retry, which
	// doubles per attempt (defaults 5 s and 1 h).
	MinBackoff, MaxBackoff time.Duration
	// RetryWindow is how long after it was enqueued an entry is retried
	// before it is marked dead (default 25 h, so never less than 24 h).
	RetryWindow time.Duration
	// Transport, when set, replaces the deliverer's own transport (tests).
	Transport http.RoundTripper
	// Resolver, when set, resolves webhook hosts for the deliverer's own
	// transport instead of the system's resolver (tests).
	Resolver *net.Resolver
	// AllowPrivate lets webhooks reach loopback, private, link-local and
	// other non-public addresses. Off by default, so a tenant's webhook_url
	// cannot make the controller POST to internal services (SSRF); the
	// address is checked when connecting, after DNS resolution, so a name
	// that resolves to an internal address is refused too.
	AllowPrivate bool
	// Logger receives failed deliveries and dead entries.
	Logger *slog.Logger
	// OnOutcome, when set, is told of every attempt's outcome:
	// Delivered, Retry (failed, to be retried) or Dead.
	OnOutcome func(outcome string)
}

// Outcomes of a delivery attempt (Config.OnOutcome).
const (
	Delivered = "delivered"
	Retry     = "retry"
	Dead      = "dead"
)

// Deliverer posts the webhook outbox: each entry as a signed JSON
// POST (header X-Callbridge-Signature: sha256=<hex HMAC of the body>),
// at least once, in order per key, retrying with exponential backoff
// until the retry window closes, then marking it dead (listed by
// GET /v1/webhooks?status=dead). Any number of deliverers may share an
// outbox. A receiver deduplicates by X-Callbridge-Delivery. Redirects are
// not followed: a 3xx is a failed attempt.
type Deliverer struct {
	outbox Outbox
	cfg    Config
	client *http.Client
	log    *slog.Logger
	wake   chan struct{}
}

// NewDeliverer returns a deliverer; Run starts it.
func NewDeliverer(outbox Outbox, cfg Config) *Deliverer {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 500 * time.Millisecond
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 5 * time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(time.Hour, cfg.MinBackoff)
	}
	if cfg.RetryWindow <= 0 {
		cfg.RetryWindow = 25 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tr := cfg.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil // a proxy would connect on our behalf, past the address check
		dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Resolver: cfg.Resolver}
		if !cfg.AllowPrivate {
			dialer.Control = publicAddressOnly
		}
		t.DialContext = dialer.DialContext
		tr = t
	}
	return &Deliverer{
		outbox: outbox, cfg: cfg, log: cfg.Logger,
		client: &http.Client{
			Transport:     tr,
			Timeout:       cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		wake: make(chan struct{}, 1),
	}
}

// Wake makes the deliverer look for due entries now.
func (d *Deliverer) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx is done; posts in flight finish first (each is
// bounded by Timeout), and an entry cut short is retried later.
func (d *Deliverer) Run(ctx context.Context) error {
	hold := d.cfg.Timeout + 5*time.Second
	for {
		hooks, err := d.outbox.ClaimWebhooks(ctx, d.cfg.Concurrency, hold)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("webhooks: claim", "error", err)
		}
		if len(hooks) > 0 {
			var wg sync.WaitGroup
			for _, w := range hooks {
				wg.Add(1)
				go func() {
					defer wg.Done()
					d.deliver(context.WithoutCancel(ctx), w)
				}()
			}
			wg.Wait()
			if len(hooks) == d.cfg.Concurrency {
				continue
			}
		}
		t := time.NewTimer(d.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-d.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// deliver posts one entry and records the outcome.
func (d *Deliverer) deliver(ctx context.Context, w *callbridge.Webhook) {
	err := d.post(ctx, w)
	if err == nil {
		d.outcome(Delivered)
		if err := d.outbox.WebhookDelivered(ctx, w.ID); err != nil {
			d.log.Warn("webhooks: mark delivered", "id", w.ID, "error", err)
		}
		return
	}
	now := time.Now()
	next := now.Add(d.Backoff(w.Attempts))
	dead := now.Sub(w.CreatedAt) >= d.cfg.RetryWindow
	if dead {
		d.outcome(Dead)
		d.log.Error("webhook dead", "id", w.ID, "url", w.URL, "attempts", w.Attempts, "error", err)
	} else {
		d.outcome(Retry)
		d.log.Info("webhook attempt failed", "id", w.ID, "attempt", w.Attempts, "retry_at", next, "error", err)
	}
	if err := d.outbox.WebhookFailed(ctx, w.ID, err.Error(), next, dead); err != nil {
		d.log.Warn("webhooks: mark failed", "id", w.ID, "error", err)
	}
}

func (d *Deliverer) outcome(o string) {
	if d.cfg.OnOutcome != nil {
		d.cfg.OnOutcome(o)
	}
}

// Backoff returns the delay after the given number of failed attempts:
// MinBackoff doubled per attempt, capped at MaxBackoff, plus up to 10 %
// jitter so that receivers that come back are not hit all at once.
func (d *Deliverer) Backoff(attempts int) time.Duration {
	b := d.cfg.MinBackoff
	for i := 1; i < attempts && b < d.cfg.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, d.cfg.MaxBackoff)
	return b + time.Duration(rand.Int64N(int64(b)/10+1))
}

func (d *Deliverer) post(ctx context.Context, w *callbridge.Webhook) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(w.Payload))
	if err != nil {
		return fmt.Errorf("bad url: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "callbridge-webhook/1")
	req.Header.Set(callbridge.SignatureHeader, callbridge.SignWebhook(d.cfg.Secret, w.Payload))
	req.Header.Set("X-Callbridge-Event", w.EventType)
	req.Header.Set("X-Callbridge-Delivery", strconv.FormatInt(w.ID, 10))
	resp, err := d.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			if ue.Timeout() {
				return errors.New("timeout")
			}
			return errors.New("request failed: " + ue.Err.Error())
		}
		return errors.New("request failed: " + err.Error())
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// errPrivateAddress refuses webhook connections to non-public addresses.
var errPrivateAddress = errors.New("webhook: webhook destination is not a public address")

// publicAddressOnly is a net.Dialer Control function: it lets a connection
// proceed only to an address isPublicAddress accepts. It runs after name
// resolution and before connect(2), for every address tried, so a name
// that resolves to an internal address is refused too, and nothing is
// sent to a refused address.
func publicAddressOnly(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !isPublicAddress(ap.Addr()) {
		return errPrivateAddress
	}
	return nil
}
