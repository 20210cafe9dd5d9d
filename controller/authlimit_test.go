package controller

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"callbridge"
)

// countingAccounts is an AccountService that knows one key and counts
// lookups, as the database would be asked.
type countingAccounts struct {
	callbridge.AccountService
	good    string
	lookups atomic.Int64
}

func (a *countingAccounts) Authenticate(_ context.Context, key string) (*callbridge.Account, error) {
	a.lookups.Add(1)
	if key == a.good {
		return &callbridge.Account{ID: "00000000-0000-4000-8000-000000000001", Name: "shop"}, nil
	}
	return nil, callbridge.Errorf(callbridge.EUNAUTHORIZED, "invalid API key")
}

// TestAuthFailuresLimitedPerAddress: after its burst of failed API-key
// authentications, an address gets 429 with Retry-After and costs no
// lookup, for any key; another address is unaffected; the admin token
// and requests without a key are not counted.
func TestAuthFailuresLimitedPerAddress(t *testing.T) {
	accounts := &countingAccounts{good: "good-key"}
	s := &Server{Accounts: accounts, AdminToken: "admin-secret", AuthFailureLimit: RateLimit{PerSecond: 0.01, Burst: 3}}
	h := s.Handler()
	get := func(from, key string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/v1/account", nil)
		req.RemoteAddr = from
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	const attacker = "203.0.113.7:40000"
	for i := range 3 {
		if rec := get(attacker, "guess"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d: got %d, want 401", i+1, rec.Code)
		}
	}
	for _, key := range []string{"guess", "another guess", "good-key"} {
		rec := get(attacker, key)
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
			t.Errorf("key %q after the burst: got %d (Retry-After %q), want 429 with Retry-After", key, rec.Code, rec.Header().Get("Retry-After"))
		}
	}
	if n := accounts.lookups.Load(); n != 3 {
		t.Errorf("got %d lookups, want 3: a limited address must not reach the database", n)
	}
	// Another port of the same host is the same client; an address in the
	// same IPv6 /64 too.
	if rec := get("203.0.113.7:40001", "guess"); rec.Code != http.StatusTooManyRequests {
		t.Errorf("same host, another port: got %d, want 429", rec.Code)
	}
	for i := range 3 {
		get("[2001:db8:1:2::1]:5000", "guess"+string(rune('a'+i)))
	}
	if rec := get("[2001:db8:1:2:ffff::9]:5000", "guess"); rec.Code != http.StatusTooManyRequests {
		t.Errorf("same IPv6 /64: got %d, want 429", rec.Code)
	}
	if rec := get("198.51.100.9:1234", "good-key"); rec.Code != http.StatusOK {
		t.Errorf("another address with a good key: got %d, want 200", rec.Code)
	}
	if rec := get("198.51.100.9:1234", ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("no key: got %d, want 401", rec.Code)
	}
	for range 5 { // successes and missing keys cost nothing
		get("198.51.100.9:1234", "good-key")
		get("198.51.100.9:1234", "")
	}
	if rec := get("198.51.100.9:1234", "good-key"); rec.Code != http.StatusOK {
		t.Errorf("after successes: got %d, want 200", rec.Code)
	}
}
