package billing

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"callbridge"
	"callbridge/postgres/internal/pg"
)

// Topup implements callbridge.BillingService.
func (s *Store) Topup(ctx context.Context, accountID string, amount int64, reference string) (*callbridge.LedgerEntry, error) {
	if amount <= 0 {
		return nil, callbridge.FieldError("amount_micros", "must be positive")
	}
	if len(reference) > 200 || strings.ContainsAny(reference, "\x00\r\n") {
		return nil, callbridge.FieldError("reference", "must be at most 200 characters on one line")
	}
	if !callbridge.IsUUID(accountID) {
		return nil, pg.NotFound("account")
	}
	e := &callbridge.LedgerEntry{AccountID: accountID, Kind: callbridge.LedgerTopup, Amount: amount, Reference: reference}
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		var prepaid bool
		if err := tx.QueryRowContext(ctx, `SELECT prepaid FROM accounts WHERE id = $1`, accountID).Scan(&prepaid); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return pg.NotFound("account")
			}
			return pg.Error(err)
		}
		if !prepaid {
			return callbridge.Errorf(callbridge.ECONFLICT, "the account is postpaid; top-ups are for prepaid accounts")
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO ledger_entries (account_id, kind, amount, reference)
			VALUES ($1, 'topup', $2, $3) ON CONFLICT DO NOTHING RETURNING id, created_at`,
			accountID, amount, reference).Scan(&e.ID, &e.CreatedAt)
		if errors.Is(err, sql.ErrNoRows) {
			var prev callbridge.LedgerEntry
			if err := tx.GetContext(ctx, &prev, `SELECT id, account_id, kind, amount, reference, created_at
				FROM ledger_entries WHERE account_id = $1 AND kind = 'topup' AND reference = $2`, accountID, reference); err != nil {
				return pg.Error(err)
			}
			if prev.Amount != amount {
				return callbridge.FieldError("reference", "was used by an earlier top-up of another amount")
			}
			*e = prev
			return nil
		}
		return pg.Error(err)
	})
	if err != nil {
		return nil, err
	}
	e.CreatedAt = e.CreatedAt.UTC()
	return e, nil
}

// Balance implements callbridge.BillingService.
func (s *Store) Balance(ctx context.Context, accountID string) (*callbridge.Balance, error) {
	if !callbridge.IsUUID(accountID) {
		return nil, pg.NotFound("account")
	}
	var b callbridge.Balance
	err := s.db.GetContext(ctx, &b, `
		SELECT a.id AS account_id, a.currency, a.prepaid, coalesce(b.balance, 0) AS balance,
		       coalesce((SELECT sum(amount) FROM reservations r WHERE r.account_id = a.id AND r.expires_at > now()), 0) AS reserved
		FROM accounts a LEFT JOIN balances b ON b.account_id = a.id WHERE a.id = $1`, accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, pg.NotFound("account")
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: balance: %w", pg.Error(err))
	}
	b.Available = b.Balance - b.Reserved
	return &b, nil
}

// Ledger implements callbridge.BillingService.
func (s *Store) Ledger(ctx context.Context, accountID string, limit int) ([]callbridge.LedgerEntry, error) {
	if !callbridge.IsUUID(accountID) {
		return nil, pg.NotFound("account")
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	es := []callbridge.LedgerEntry{}
	if err := s.db.SelectContext(ctx, &es, `SELECT id, account_id, kind, amount, reference, created_at
		FROM ledger_entries WHERE account_id = $1 ORDER BY id DESC LIMIT $2`, accountID, limit); err != nil {
		return nil, fmt.Errorf("postgres: ledger: %w", pg.Error(err))
	}
	for i := range es {
		es[i].CreatedAt = es[i].CreatedAt.UTC()
	}
	return es, nil
}

// Reserve holds money for call callID of a prepaid account. It locks the
// account's balance, so concurrent reservations of one account are
// serialised and each sees the others' holds, asks quote what the
// available money (balance minus live reservations) buys (the duration
// granted and the amount to hold; an error refuses the call), and stores the
// reservation until the call's CDR is stored or ttl after the granted
// duration. For a postpaid account it returns (nil, false, nil) without
// calling quote. ENOTFOUND, EINVALID (callID), ECONFLICT (callID reused),
// and quote's error.
func (s *Store) Reserve(ctx context.Context, accountID, callID string, ttl time.Duration, quote func(available int64) (maxMS, amount int64, err error)) (*callbridge.Reservation, bool, error) {
	if !callbridge.IsUUID(accountID) {
		return nil, false, pg.NotFound("account")
	}
	if !callbridge.IsUUID(callID) {
		return nil, false, callbridge.FieldError("call_id", "must be a UUID")
	}
	var res *callbridge.Reservation
	var prepaid bool
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT prepaid FROM accounts WHERE id = $1`, accountID).Scan(&prepaid); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return pg.NotFound("account")
			}
			return pg.Error(err)
		}
		if !prepaid {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO balances (account_id) VALUES ($1) ON CONFLICT DO NOTHING`, accountID); err != nil {
			return pg.Error(err)
		}
		var balance, reserved int64
		if err := tx.QueryRowContext(ctx, `SELECT balance FROM balances WHERE account_id = $1 FOR UPDATE`, accountID).Scan(&balance); err != nil {
			return pg.Error(err)
		}
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(sum(amount), 0) FROM reservations
			WHERE account_id = $1 AND expires_at > now()`, accountID).Scan(&reserved); err != nil {
			return pg.Error(err)
		}
		maxMS, amount, err := quote(balance - reserved)
		if err != nil {
			return err
		}
		res = &callbridge.Reservation{AccountID: accountID, CallID: callID, Amount: amount, MaxMS: maxMS}
		return pg.Error(tx.QueryRowContext(ctx, `INSERT INTO reservations (account_id, call_id, amount, max_ms, expires_at)
			VALUES ($1, $2, $3, $4, now() + $5 * interval '1 millisecond') RETURNING id, expires_at`,
			accountID, callID, amount, maxMS, maxMS+ttl.Milliseconds()).Scan(&res.ID, &res.ExpiresAt))
	})
	if err != nil {
		return nil, prepaid, err
	}
	if res != nil {
		res.ExpiresAt = res.ExpiresAt.UTC()
	}
	return res, prepaid, nil
}

// Release drops the reservation of callID, if any.
func (s *Store) Release(ctx context.Context, callID string) error {
	if !callbridge.IsUUID(callID) {
		return nil
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM reservations WHERE call_id = $1`, callID); err != nil {
		return fmt.Errorf("postgres: release reservation: %w", pg.Error(err))
	}
	return nil
}

// ExpireReservations deletes reservations past their expiry and returns
// how many.
func (s *Store) ExpireReservations(ctx context.Context) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM reservations WHERE expires_at <= now()`)
	if err != nil {
		return 0, fmt.Errorf("postgres: expire reservations: %w", pg.Error(err))
	}
	return res.RowsAffected()
}

// PendingLowBalance returns up to limit undelivered low-balance events
// that are due, oldest first.
func (s *Store) PendingLowBalance(ctx context.Context, limit int) ([]callbridge.LowBalanceEvent, error) {
	es := []callbridge.LowBalanceEvent{}
	if err := s.db.SelectContext(ctx, &es, `SELECT id, account_id, balance, threshold, url, created_at
		FROM low_balance_events WHERE delivered_at IS NULL AND next_at <= now() ORDER BY id LIMIT $1`, limit); err != nil {
		return nil, fmt.Errorf("postgres: low-balance events: %w", pg.Error(err))
	}
	for i := range es {
		es[i].CreatedAt = es[i].CreatedAt.UTC()
	}
	return es, nil
}

// LowBalanceHandled marks a low-balance event delivered (failure nil) or
// schedules another attempt with exponential backoff.
func (s *Store) LowBalanceHandled(ctx context.Context, id int64, failure error) error {
	var err error
	if failure == nil {
		_, err = s.db.ExecContext(ctx, `UPDATE low_balance_events SET delivered_at = now(), attempts = attempts + 1, last_error = '' WHERE id = $1`, id)
	} else {
		_, err = s.db.ExecContext(ctx, `UPDATE low_balance_events SET attempts = attempts + 1, last_error = $2,
			next_at = now() + least(3600, 10 * power(2, attempts)) * interval '1 second' WHERE id = $1`, id, failure.Error())
	}
	if err != nil {
		return fmt.Errorf("postgres: low-balance event %d: %w", id, pg.Error(err))
	}
	return nil
}
