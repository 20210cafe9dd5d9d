package callbridge

import (
	"context"
	"time"
)

// Account is a tenant. It owns API keys, virtual numbers, bindings,
// callbacks, rate decks and CDRs; every query is filtered by it.
type Account struct {
	ID   string `json:"id" db:"id"`
	Name string `json:"name" db:"name"`
	// ServiceNumber is what a callback's A leg sees by default, and what B
	// sees when the account hides A's number.
	ServiceNumber Number `json:"service_number,omitempty" db:"service_number"`
	// HideCallerID makes callbacks present ServiceNumber to B instead of A.
	HideCallerID bool `json:"hide_caller_id" db:"hide_caller_id"`
	// Prepaid accounts must hold a balance before calls are placed.
	Prepaid bool `json:"prepaid" db:"prepaid"`
	// Currency is the ISO 4217 code the account is billed in.
	Currency  string    `json:"currency" db:"currency"`
	CreatedAt time.Time `json:"created_at" db:"created_at"`
}

// AccountService manages accounts and their API keys.
type AccountService interface {
	// CreateAccount stores a new account and returns it with a fresh API
	// key in clear text (the only time it is visible). EINVALID, ECONFLICT.
	CreateAccount(ctx context.Context, a *Account) (key string, err error)
	// Account returns an account by id. ENOTFOUND.
	Account(ctx context.Context, id string) (*Account, error)
	// Authenticate returns the account owning a clear-text API key.
	// EUNAUTHORIZED for unknown or revoked keys.
	Authenticate(ctx context.Context, key string) (*Account, error)
	// CreateAPIKey adds a key to an account. ENOTFOUND.
	CreateAPIKey(ctx context.Context, accountID string) (key string, err error)
	// RevokeAPIKey revokes a key by id or by its clear text. ENOTFOUND.
	RevokeAPIKey(ctx context.Context, accountID, keyIDOrKey string) error
}

type accountKey struct{}

// NewContextWithAccount returns a context carrying the authenticated account.
func NewContextWithAccount(ctx context.Context, a *Account) context.Context {
	return context.WithValue(ctx, accountKey{}, a)
}

// AccountFromContext returns the authenticated account, or nil.
func AccountFromContext(ctx context.Context) *Account {
	a, _ := ctx.Value(accountKey{}).(*Account)
	return a
}
