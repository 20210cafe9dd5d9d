package realswitch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"callbridge"
)

// Client calls callbridge's public HTTP API with one bearer token: the
// admin token (Env.Admin) or an account's API key (Env.NewAccount).
type Client struct {
	// URL is the API's base URL; Token the bearer token.
	URL, Token string
	// AccountID is the account an API key belongs to ("" for the admin).
	AccountID string
}

// APIError is an answer other than the one expected.
type APIError struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("realswitch: %s %s: %d %s", e.Method, e.Path, e.Status, e.Body)
}

// Do sends a request with body as JSON (none when nil), expects status
// want and decodes the answer into out (unless nil). Any other status is
// an *APIError.
func (c *Client) Do(ctx context.Context, method, path string, body any, want int, out any) error {
	if body == nil {
		return c.send(ctx, method, path, "", nil, want, out)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return c.send(ctx, method, path, "application/json", b, want, out)
}

func (c *Client) send(ctx context.Context, method, path, contentType string, body []byte, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return &APIError{Method: method, Path: path, Status: resp.StatusCode, Body: string(raw)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("realswitch: %s %s: %w: %s", method, path, err, raw)
	}
	return nil
}

// AccountRequest is the body of POST /v1/admin/accounts.
type AccountRequest struct {
	Name          string `json:"name"`
	ServiceNumber string `json:"service_number"`
	HideCallerID  bool   `json:"hide_caller_id,omitempty"`
	Prepaid       bool   `json:"prepaid,omitempty"`
	Currency      string `json:"currency"`
}

// CreateAccount creates an account with the admin client and returns a
// client holding its API key.
func (c *Client) CreateAccount(ctx context.Context, req AccountRequest) (*Client, error) {
	var out struct {
		Account callbridge.Account `json:"account"`
		APIKey  string             `json:"api_key"`
	}
	if err := c.Do(ctx, "POST", "/v1/admin/accounts", req, http.StatusCreated, &out); err != nil {
		return nil, err
	}
	return &Client{URL: c.URL, Token: out.APIKey, AccountID: out.Account.ID}, nil
}

// Topup credits a prepaid account (admin client).
func (c *Client) Topup(ctx context.Context, accountID string, micros int64, reference string) error {
	body := map[string]any{"amount_micros": micros, "reference": reference}
	return c.Do(ctx, "POST", "/v1/accounts/"+accountID+"/topups", body, http.StatusCreated, nil)
}

// CallbackRequest is the body of POST /v1/callbacks; nil fields take the
// API's defaults.
type CallbackRequest struct {
	A            string  `json:"a"`
	B            string  `json:"b"`
	CallerIDA    *string `json:"caller_id_a,omitempty"`
	CallerIDB    *string `json:"caller_id_b,omitempty"`
	RingTimeoutA *int    `json:"ring_timeout_a,omitempty"`
	RingTimeoutB *int    `json:"ring_timeout_b,omitempty"`
	MaxDuration  *int    `json:"max_duration,omitempty"`
	Prompt       *string `json:"prompt,omitempty"`
	WebhookURL   string  `json:"webhook_url,omitempty"`
}

// CreateCallback asks for a callback (202).
func (c *Client) CreateCallback(ctx context.Context, req CallbackRequest) (*callbridge.Callback, error) {
	var cb callbridge.Callback
	if err := c.Do(ctx, "POST", "/v1/callbacks", req, http.StatusAccepted, &cb); err != nil {
		return nil, err
	}
	return &cb, nil
}

// Callback returns a callback with its legs and history.
func (c *Client) Callback(ctx context.Context, id string) (*callbridge.Callback, error) {
	var cb callbridge.Callback
	if err := c.Do(ctx, "GET", "/v1/callbacks/"+id, nil, http.StatusOK, &cb); err != nil {
		return nil, err
	}
	return &cb, nil
}

// CancelCallback is DELETE /v1/callbacks/{id}.
func (c *Client) CancelCallback(ctx context.Context, id string) (*callbridge.Callback, error) {
	var cb callbridge.Callback
	if err := c.Do(ctx, "DELETE", "/v1/callbacks/"+id, nil, http.StatusOK, &cb); err != nil {
		return nil, err
	}
	return &cb, nil
}

// WaitCallback polls the callback until cond holds, and returns it.
func (c *Client) WaitCallback(ctx context.Context, id string, cond func(*callbridge.Callback) bool) (*callbridge.Callback, error) {
	for {
		cb, err := c.Callback(ctx, id)
		if err == nil && cond(cb) {
			return cb, nil
		}
		select {
		case <-ctx.Done():
			if cb != nil {
				return cb, fmt.Errorf("realswitch: callback %s stays %s %s: %w", id, cb.Status, cb.Reason, ctx.Err())
			}
			return nil, fmt.Errorf("realswitch: callback %s: %v: %w", id, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Ended is a WaitCallback condition: the callback is completed or failed.
func Ended(cb *callbridge.Callback) bool {
	return cb.Status == callbridge.CallbackCompleted || cb.Status == callbridge.CallbackFailed
}

// Status is a WaitCallback condition: the callback has status s.
func Status(s callbridge.CallbackStatus) func(*callbridge.Callback) bool {
	return func(cb *callbridge.Callback) bool { return cb.Status == s }
}

// AccountCDRs returns every CDR of an account as the operator sees it
// (admin client), filtered by query (callback_id=..., binding_id=...).
func (c *Client) AccountCDRs(ctx context.Context, accountID string, query url.Values) ([]*callbridge.CDR, error) {
	var out []*callbridge.CDR
	q := url.Values{"limit": {"1000"}}
	for k, v := range query {
		q[k] = v
	}
	for {
		var page struct {
			CDRs []*callbridge.CDR `json:"cdrs"`
			Next string            `json:"next_cursor"`
		}
		if err := c.Do(ctx, "GET", "/v1/admin/accounts/"+accountID+"/cdrs?"+q.Encode(), nil, http.StatusOK, &page); err != nil {
			return nil, err
		}
		out = append(out, page.CDRs...)
		if page.Next == "" {
			return out, nil
		}
		q.Set("cursor", page.Next)
	}
}

// CreateSellDeck creates the account's own (sell) rate deck in EUR and
// imports rates, a CSV with a header line (docs/api.md); it returns the
// deck's id.
func (c *Client) CreateSellDeck(ctx context.Context, name, rates string) (string, error) {
	var d struct {
		ID string `json:"id"`
	}
	req := map[string]string{"name": name, "currency": "EUR", "time_zone": "UTC", "rounding": "up"}
	if err := c.Do(ctx, "POST", "/v1/rate-decks", req, http.StatusCreated, &d); err != nil {
		return "", err
	}
	return d.ID, c.send(ctx, "POST", "/v1/rate-decks/"+d.ID+"/rates?mode=replace", "text/csv", []byte(rates), http.StatusOK, nil)
}

// Balance returns the account's balance (prepaid accounts).
func (c *Client) Balance(ctx context.Context) (*callbridge.Balance, error) {
	var b callbridge.Balance
	if err := c.Do(ctx, "GET", "/v1/balance", nil, http.StatusOK, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// CreateBuyDeck creates a carrier gateway's buy deck in EUR (admin
// client) and imports rates, a CSV with a header line; it returns the
// deck's id.
func (c *Client) CreateBuyDeck(ctx context.Context, gateway, rates string) (string, error) {
	var d struct {
		ID string `json:"id"`
	}
	req := map[string]string{"gateway": gateway, "name": gateway + " buy", "currency": "EUR", "time_zone": "UTC"}
	if err := c.Do(ctx, "POST", "/v1/rate-decks", req, http.StatusCreated, &d); err != nil {
		return "", err
	}
	return d.ID, c.send(ctx, "POST", "/v1/rate-decks/"+d.ID+"/rates?mode=replace", "text/csv", []byte(rates), http.StatusOK, nil)
}

// CreateRoutePlan creates a route plan (admin client) from its terms
// (POST /v1/admin/route-plans) and imports its routes, a CSV with a
// header line (docs/api.md); it returns the plan's id.
func (c *Client) CreateRoutePlan(ctx context.Context, plan map[string]any, routes string) (string, error) {
	var p struct {
		ID string `json:"id"`
	}
	if err := c.Do(ctx, "POST", "/v1/admin/route-plans", plan, http.StatusCreated, &p); err != nil {
		return "", err
	}
	return p.ID, c.send(ctx, "POST", "/v1/admin/route-plans/"+p.ID+"/routes?mode=replace", "text/csv", []byte(routes), http.StatusOK, nil)
}
