package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"sync"
	"time"

	"callbridge"
	"callbridge/postgres/internal/pg"
)

// keyPrefix starts every API key so leaked keys are recognisable by secret
// scanners and people.
const keyPrefix = "cbk_"

// AccountService implements callbridge.AccountService.
type AccountService struct {
	db *pg.DB
	// AuthCacheTTL is how long a successful key lookup is remembered in
	// this process (default 5 s; negative disables the cache). A key
	// revoked through this process stops working at once; on other
	// controllers it stops within the TTL.
	AuthCacheTTL time.Duration

	mu    sync.Mutex
	cache map[[32]byte]authEntry
}

type authEntry struct {
	account *callbridge.Account
	expires time.Time
}

var _ callbridge.AccountService = (*AccountService)(nil)

// NewAccountService returns an AccountService backed by db.
func NewAccountService(db *DB) *AccountService {
	return &AccountService{db: db.pg, AuthCacheTTL: 5 * time.Second, cache: map[[32]byte]authEntry{}}
}

// maxAuthCache bounds the cache; it is emptied when full.
const maxAuthCache = 100_000

// CreateAccount implements callbridge.AccountService.
func (s *AccountService) CreateAccount(ctx context.Context, a *callbridge.Account) (string, error) {
	if err := validateAccount(a); err != nil {
		return "", err
	}
	var key string
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		err := tx.QueryRowxContext(ctx, `
			INSERT INTO accounts (name, service_number, hide_caller_id, prepaid, currency)
			VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at`,
			a.Name, a.ServiceNumber, a.HideCallerID, a.Prepaid, a.Currency).Scan(&a.ID, &a.CreatedAt)
		if err != nil {
			return Error(err)
		}
		key, err = insertKey(ctx, tx, a.ID)
		return err
	})
	return key, err
}

func validateAccount(a *callbridge.Account) error {
	a.Name = strings.TrimSpace(a.Name)
	if a.Name == "" || len(a.Name) > 200 {
		return callbridge.FieldError("name", "name must have 1 to 200 characters")
	}
	if err := callbridge.CheckText("name", a.Name); err != nil {
		return err
	}
	if a.ServiceNumber != "" {
		if err := a.ServiceNumber.Validate(); err != nil {
			return callbridge.FieldError("service_number", "%s", callbridge.ErrorMessage(err))
		}
	}
	if a.Currency == "" {
		a.Currency = "USD"
	}
	if err := callbridge.ValidateCurrency("currency", a.Currency); err != nil {
		return err
	}
	return nil
}

// Account implements callbridge.AccountService.
func (s *AccountService) Account(ctx context.Context, id string) (*callbridge.Account, error) {
	if !callbridge.IsUUID(id) {
		return nil, notFound("account")
	}
	var a callbridge.Account
	err := s.db.GetContext(ctx, &a, `SELECT id, name, service_number, hide_caller_id, prepaid, currency, created_at
		FROM accounts WHERE id = $1`, id)
	if err != nil {
		if callbridge.ErrorCode(Error(err)) == callbridge.ENOTFOUND {
			return nil, notFound("account")
		}
		return nil, Error(err)
	}
	return &a, nil
}

// Authenticate implements callbridge.AccountService. The key is hashed and
// looked up by its hash: the comparison happens inside an index lookup on a
// SHA-256 digest, so timing reveals nothing about the stored key.
func (s *AccountService) Authenticate(ctx context.Context, key string) (*callbridge.Account, error) {
	if !strings.HasPrefix(key, keyPrefix) || len(key) > 128 {
		return nil, callbridge.Errorf(callbridge.EUNAUTHORIZED, "invalid API key")
	}
	h := sha256.Sum256([]byte(key))
	now := time.Now()
	if s.AuthCacheTTL > 0 {
		s.mu.Lock()
		e, ok := s.cache[h]
		s.mu.Unlock()
		if ok && now.Before(e.expires) {
			a := *e.account
			return &a, nil
		}
	}
	var a callbridge.Account
	err := s.db.GetContext(ctx, &a, `SELECT a.id, a.name, a.service_number, a.hide_caller_id, a.prepaid, a.currency, a.created_at
		FROM api_keys k JOIN accounts a ON a.id = k.account_id
		WHERE k.hash = $1 AND k.revoked_at IS NULL`, h[:])
	if err != nil {
		if callbridge.ErrorCode(Error(err)) == callbridge.ENOTFOUND {
			return nil, callbridge.Errorf(callbridge.EUNAUTHORIZED, "invalid API key")
		}
		return nil, Error(err)
	}
	if s.AuthCacheTTL > 0 {
		s.mu.Lock()
		if len(s.cache) >= maxAuthCache {
			clear(s.cache)
		}
		cached := a
		s.cache[h] = authEntry{account: &cached, expires: now.Add(s.AuthCacheTTL)}
		s.mu.Unlock()
	}
	return &a, nil
}

// forgetKeys empties the authentication cache (after a revocation).
func (s *AccountService) forgetKeys() {
	s.mu.Lock()
	clear(s.cache)
	s.mu.Unlock()
}

// CreateAPIKey implements callbridge.AccountService.
func (s *AccountService) CreateAPIKey(ctx context.Context, accountID string) (string, error) {
	if _, err := s.Account(ctx, accountID); err != nil {
		return "", err
	}
	var key string
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		var err error
		key, err = insertKey(ctx, tx, accountID)
		return err
	})
	return key, err
}

// RevokeAPIKey implements callbridge.AccountService.
func (s *AccountService) RevokeAPIKey(ctx context.Context, accountID, keyIDOrKey string) error {
	if !callbridge.IsUUID(accountID) {
		return notFound("account")
	}
	var res interface{ RowsAffected() (int64, error) }
	var err error
	if strings.HasPrefix(keyIDOrKey, keyPrefix) {
		res, err = s.db.ExecContext(ctx, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
			WHERE account_id = $1 AND hash = $2`, accountID, hashKey(keyIDOrKey))
	} else if callbridge.IsUUID(keyIDOrKey) {
		res, err = s.db.ExecContext(ctx, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
			WHERE account_id = $1 AND id = $2`, accountID, keyIDOrKey)
	} else {
		return callbridge.Errorf(callbridge.ENOTFOUND, "no such API key")
	}
	if err != nil {
		return Error(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return callbridge.Errorf(callbridge.ENOTFOUND, "no such API key")
	}
	s.forgetKeys()
	return nil
}

func insertKey(ctx context.Context, tx *pg.Tx, accountID string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	key := keyPrefix + base64.RawURLEncoding.EncodeToString(b)
	_, err := tx.ExecContext(ctx, `INSERT INTO api_keys (account_id, prefix, hash) VALUES ($1, $2, $3)`,
		accountID, key[:len(keyPrefix)+6], hashKey(key))
	if err != nil {
		return "", Error(err)
	}
	return key, nil
}

func hashKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}
