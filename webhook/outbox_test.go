package webhook_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"callbridge"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
	"callbridge/webhook"
)

// TestWebhookDead gives an entry up once its retry window has passed
// while every attempt failed: the outbox marks it dead with the last
// error, and OnOutcome hears of it once.
func TestWebhookDead(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	acct := &callbridge.Account{Name: "crm", ServiceNumber: "4930100100"}
	if _, err := postgres.NewAccountService(db).CreateAccount(ctx, acct); err != nil {
		t.Fatal(err)
	}
	outbox := postgres.NewWebhookService(db)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer recv.Close()
	var dead atomic.Int32
	d := webhook.NewDeliverer(outbox, webhook.Config{PollInterval: 10 * time.Millisecond,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond, RetryWindow: 500 * time.Millisecond, AllowPrivate: true,
		OnOutcome: func(o string) {
			if o == webhook.Dead {
				dead.Add(1)
			}
		}})
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if err := outbox.EnqueueWebhook(ctx, acct.ID, recv.URL, "callback.status", "callback:1", "", map[string]any{"status": "queued"}); err != nil {
		t.Fatal(err)
	}
	var ws []*callbridge.Webhook
	wait.For(t, "a dead webhook", func() bool {
		var err error
		ws, _, err = outbox.Webhooks(ctx, acct.ID, callbridge.WebhookFilter{Status: callbridge.WebhookDead})
		if err != nil {
			t.Fatal(err)
		}
		return len(ws) == 1
	})
	if w := ws[0]; w.LastError != "HTTP 500" || w.Attempts < 2 {
		t.Errorf("dead webhook %+v, want last error HTTP 500 after at least 2 attempts", w)
	}
	if n := dead.Load(); n != 1 {
		t.Errorf("OnOutcome heard %d deaths, want 1", n)
	}
}
