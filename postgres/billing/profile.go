package billing

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"callbridge"
	"callbridge/postgres/internal/pg"
)

func profile(ctx context.Context, q interface {
	GetContext(ctx context.Context, dest any, query string, args ...any) error
}, accountID string) (*callbridge.BillingProfile, error) {
	p := &callbridge.BillingProfile{AccountID: accountID}
	err := q.GetContext(ctx, p, `SELECT a.id AS account_id, coalesce(p.issuer, 'default') AS issuer,
		coalesce(p.tax_bps, 0) AS tax_bps, coalesce(p.tax_label, '') AS tax_label,
		coalesce(p.payment_days, 30) AS payment_days, p.low_balance, coalesce(p.low_balance_url, '') AS low_balance_url,
		coalesce(p.missing_hangup, 'estimate') AS missing_hangup, coalesce(p.customer_name, '') AS customer_name,
		coalesce(p.customer_address, '') AS customer_address, coalesce(p.customer_tax_number, '') AS customer_tax_number
		FROM accounts a LEFT JOIN billing_profiles p ON p.account_id = a.id WHERE a.id = $1`, accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, pg.NotFound("account")
	}
	if err != nil {
		return nil, pg.Error(err)
	}
	return p, nil
}

// Profile implements callbridge.BillingService.
func (s *Store) Profile(ctx context.Context, accountID string) (*callbridge.BillingProfile, error) {
	if !callbridge.IsUUID(accountID) {
		return nil, pg.NotFound("account")
	}
	p, err := profile(ctx, s.db, accountID)
	if err != nil {
		return nil, fmt.Errorf("postgres: billing profile: %w", err)
	}
	return p, nil
}

// SetProfile implements callbridge.BillingService.
func (s *Store) SetProfile(ctx context.Context, p *callbridge.BillingProfile) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if !callbridge.IsUUID(p.AccountID) {
		return pg.NotFound("account")
	}
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO billing_profiles (account_id, issuer, tax_bps, tax_label, payment_days, low_balance, low_balance_url,
		                              missing_hangup, customer_name, customer_address, customer_tax_number)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (account_id) DO UPDATE SET issuer = $2, tax_bps = $3, tax_label = $4, payment_days = $5,
			low_balance = $6, low_balance_url = $7, missing_hangup = $8, customer_name = $9,
			customer_address = $10, customer_tax_number = $11`,
		p.AccountID, p.Issuer, p.TaxBPS, p.TaxLabel, p.PaymentDays, p.LowBalance, p.LowBalanceURL,
		p.MissingHangup, p.CustomerName, p.CustomerAddress, p.CustomerTaxNumber)
	if err != nil {
		if pg.Code(err) == pg.CodeForeignKey {
			return pg.NotFound("account")
		}
		return fmt.Errorf("postgres: set billing profile: %w", pg.Error(err))
	}
	return nil
}

// MissingHangupPolicy implements controller.HangupPolicies: the
// account's missing-hangup policy, HangupEstimate for an account without
// a billing profile or without a row at all.
func (s *Store) MissingHangupPolicy(ctx context.Context, accountID string) (string, error) {
	policy := callbridge.HangupEstimate
	if !callbridge.IsUUID(accountID) {
		return policy, nil
	}
	err := s.db.QueryRowContext(ctx, `SELECT missing_hangup FROM billing_profiles WHERE account_id = $1`, accountID).Scan(&policy)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("postgres: missing-hangup policy: %w", pg.Error(err))
	}
	return policy, nil
}
