// Package binding stores the pool of virtual numbers and the privacy
// bindings (XB, AXB) on them, and streams the routable ones to the
// controller's index. It is part of the postgres adapter: build it
// through postgres.NewBindingService and postgres.NewNumberService.
package binding

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"callbridge"
	"callbridge/postgres/internal/pg"

	"github.com/lib/pq"
)

// Channel is the LISTEN/NOTIFY channel on which every change to a
// number or a binding is announced, with the X it concerns as payload.
// Triggers send it (sql/0003_bindings.sql), so every writer does.
const Channel = "callbridge_bindings"

// DefaultMaxTTL is the longest life a binding may have when
// Service.MaxTTL is zero.
const DefaultMaxTTL = 90 * 24 * time.Hour

// Service implements callbridge.BindingService. The routing rules are
// constraints of the bindings table; this code only maps their violations
// to ECONFLICT and retries allocation on another X.
type Service struct {
	db *pg.DB
	// MaxTTL is the longest life of a binding; 0 means DefaultMaxTTL.
	MaxTTL time.Duration
	// Now returns the current time; nil means time.Now. Validation of
	// expiry uses it; routing checks inside SQL use the database clock.
	Now func() time.Time
}

var _ callbridge.BindingService = (*Service)(nil)

// New returns a Service backed by db.
func New(db *pg.DB) *Service { return &Service{db: db} }

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) maxTTL() time.Duration {
	if s.MaxTTL > 0 {
		return s.MaxTTL
	}
	return DefaultMaxTTL
}

const bindingColumns = `id, account_id, mode, x, a, b, status, expires_at, record, caller_display,
	external_id, webhook_url, created_at, updated_at`

// bindingRow adds the stored idempotency fields to a binding.
type bindingRow struct {
	callbridge.Binding
	RequestHash sql.NullString `db:"request_hash"`
}

// errRetryX says the X tried is taken; allocation moves to the next one.
var errRetryX = errors.New("binding: x taken")

// candidates is how many free numbers one allocation attempt considers.
const candidates = 16

// CreateBinding implements callbridge.BindingService.
func (s *Service) CreateBinding(ctx context.Context, r *callbridge.BindingRequest) (*callbridge.Binding, error) {
	if !callbridge.IsUUID(r.AccountID) {
		return nil, pg.NotFound("account")
	}
	if err := r.Validate(s.now(), s.maxTTL()); err != nil {
		return nil, err
	}
	if r.IdempotencyKey != "" {
		if b, err := s.byIdempotencyKey(ctx, r); b != nil || err != nil {
			return b, err
		}
	}
	var out *callbridge.Binding
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		out, err = s.create(ctx, r)
		if err == nil || !pg.Retryable(err) {
			break
		}
	}
	if err != nil {
		var pe *pq.Error
		if r.IdempotencyKey != "" && errors.As(err, &pe) && pe.Constraint == "bindings_idempotency" {
			// A concurrent request with the same key won the race.
			if b, err := s.byIdempotencyKey(ctx, r); b != nil || err != nil {
				return b, err
			}
		}
		if errors.As(err, &pe) {
			return nil, pg.Error(err)
		}
		return nil, err
	}
	return out, nil
}

// byIdempotencyKey returns the binding an earlier request with r's key
// created, nil if none, or ECONFLICT when that request differed.
func (s *Service) byIdempotencyKey(ctx context.Context, r *callbridge.BindingRequest) (*callbridge.Binding, error) {
	var row bindingRow
	err := s.db.GetContext(ctx, &row, `SELECT `+bindingColumns+`, request_hash FROM bindings
		WHERE account_id = $1 AND idempotency_key = $2`, r.AccountID, r.IdempotencyKey)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, pg.Error(err)
	}
	if row.RequestHash.String != r.RequestHash {
		return nil, callbridge.Errorf(callbridge.ECONFLICT, "Idempotency-Key was already used with a different request")
	}
	return fixTimes(&row.Binding), nil
}

// create runs one allocation transaction.
func (s *Service) create(ctx context.Context, r *callbridge.BindingRequest) (*callbridge.Binding, error) {
	want := r.Binding()
	var out *callbridge.Binding
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT set_config('callbridge.binding_detail', 'created', true)`); err != nil {
			return err
		}
		if want.X != "" {
			var enabled bool
			err := tx.GetContext(ctx, &enabled, `SELECT enabled FROM numbers WHERE number = $1 AND account_id = $2 FOR SHARE`, want.X, want.AccountID)
			if err != nil {
				return pg.NotFoundAs(pg.Error(err), "number")
			}
			if !enabled {
				return callbridge.Errorf(callbridge.ECONFLICT, "number %s is disabled", want.X)
			}
			b, err := s.bindX(ctx, tx, want, r)
			if errors.Is(err, errRetryX) {
				return callbridge.Errorf(callbridge.ECONFLICT, "number %s is already bound in a way that conflicts with this binding", want.X)
			}
			out = b
			return err
		}
		var xs []string
		err := tx.SelectContext(ctx, &xs, `
			SELECT n.number FROM numbers n
			 WHERE n.account_id = $1 AND n.enabled AND n.number NOT IN ($3, $4)
			   AND NOT EXISTS (
			       SELECT 1 FROM bindings b
			        WHERE b.x = n.number AND b.status = 'active' AND b.expires_at > now()
			          AND ($2 = 'XB' OR b.mode = 'XB' OR b.a IN ($3, $4) OR b.b IN ($3, $4)))
			 ORDER BY (n.area = $5) DESC, random()
			 LIMIT $6`, want.AccountID, want.Mode, want.A, want.B, r.Area, candidates)
		if err != nil {
			return pg.Error(err)
		}
		for _, x := range xs {
			want.X = callbridge.Number(x)
			if _, err := tx.ExecContext(ctx, `SAVEPOINT try_x`); err != nil {
				return err
			}
			b, err := s.bindX(ctx, tx, want, r)
			if errors.Is(err, errRetryX) {
				if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT try_x`); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			out = b
			return nil
		}
		return callbridge.Errorf(callbridge.ENONUMBER, "no number of the pool is free for this binding")
	})
	return out, err
}

// bindX stores want on want.X: it locks the number, marks the X's expired
// bindings, inserts the binding and activates it. It returns errRetryX
// when a routing constraint refuses the activation.
func (s *Service) bindX(ctx context.Context, tx *pg.Tx, want *callbridge.Binding, r *callbridge.BindingRequest) (*callbridge.Binding, error) {
	if err := lockX(ctx, tx, want.X); err != nil {
		return nil, err
	}
	var gw string
	if err := tx.GetContext(ctx, &gw, `SELECT gateway FROM numbers WHERE number = $1 FOR SHARE`, want.X); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errRetryX // deleted meanwhile
		}
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `SELECT bindings_expire_x($1)`, want.X); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `SELECT set_config('callbridge.binding_detail', 'created', true)`); err != nil {
		return nil, err
	}
	var key, hash any
	if r.IdempotencyKey != "" {
		key, hash = r.IdempotencyKey, r.RequestHash
	}
	var id string
	err := tx.GetContext(ctx, &id, `INSERT INTO bindings (account_id, mode, x, a, b, status, expires_at, record,
			caller_display, external_id, webhook_url, idempotency_key, request_hash)
		VALUES ($1, $2, $3, $4, $5, 'binding', $6, $7, $8, $9, $10, $11, $12) RETURNING id`,
		want.AccountID, want.Mode, want.X, want.A, want.B, want.ExpiresAt, want.Record,
		want.CallerDisplay, want.ExternalID, want.WebhookURL, key, hash)
	if err != nil {
		return nil, err // the idempotency index; handled by CreateBinding
	}
	var b callbridge.Binding
	err = tx.GetContext(ctx, &b, `UPDATE bindings SET status = 'active', updated_at = now() WHERE id = $1 RETURNING `+bindingColumns, id)
	if err != nil {
		return nil, constraintError(err)
	}
	return fixTimes(&b), nil
}

// bindingXLock is the first key of the advisory locks of lockX ("bind").
const bindingXLock = 0x62696e64

// lockX makes tx the only writer of x's bindings until it ends (or the
// savepoint it took the lock under is rolled back, which releases it).
// Without it, two transactions binding conflicting parties on one X each
// insert a row and then wait for the other's uncommitted row in the
// routing constraints: a deadlock, which PostgreSQL breaks only after
// deadlock_timeout by failing one of them. A transaction holds at most
// one X's lock when it waits for another (allocation tries each candidate
// under a savepoint), so these locks cannot deadlock among themselves.
func lockX(ctx context.Context, tx *pg.Tx, x callbridge.Number) error {
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, bindingXLock, string(x))
	return pg.Error(err)
}

// lockBindingX takes the X lock of binding id (whose X never changes)
// before the caller locks the binding itself, in the order allocation
// takes them.
func lockBindingX(ctx context.Context, tx *pg.Tx, accountID, id string) error {
	var x callbridge.Number
	if err := tx.GetContext(ctx, &x, `SELECT x FROM bindings WHERE id = $1 AND account_id = $2`, id, accountID); err != nil {
		return pg.NotFoundAs(pg.Error(err), "binding")
	}
	return lockX(ctx, tx, x)
}

// constraintError turns a violation of a routing constraint into
// errRetryX, and an external_id clash into ECONFLICT.
func constraintError(err error) error {
	var pe *pq.Error
	if !errors.As(err, &pe) {
		return err
	}
	switch pe.Constraint {
	case "bindings_one_mode", "bindings_axb_parties", "bindings_xb_one":
		return errRetryX
	case "bindings_external_id":
		return callbridge.Errorf(callbridge.ECONFLICT, "external_id is already used by an active binding")
	}
	return err
}

// Binding implements callbridge.BindingService.
func (s *Service) Binding(ctx context.Context, accountID, id string) (*callbridge.Binding, error) {
	if !callbridge.IsUUID(accountID) || !callbridge.IsUUID(id) {
		return nil, pg.NotFound("binding")
	}
	var b callbridge.Binding
	err := s.db.GetContext(ctx, &b, `SELECT `+bindingColumns+` FROM bindings WHERE id = $1 AND account_id = $2`, id, accountID)
	if err != nil {
		return nil, pg.NotFoundAs(pg.Error(err), "binding")
	}
	return fixTimes(&b), nil
}

// Bindings implements callbridge.BindingService.
func (s *Service) Bindings(ctx context.Context, accountID string, f callbridge.BindingFilter) ([]*callbridge.Binding, string, error) {
	if !callbridge.IsUUID(accountID) {
		return nil, "", pg.NotFound("account")
	}
	limit := pageLimit(f.Limit)
	q := `SELECT ` + bindingColumns + ` FROM bindings WHERE account_id = $1`
	args := []any{accountID}
	add := func(cond string, v any) {
		args = append(args, v)
		q += " AND " + strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args)))
	}
	if f.Cursor != "" {
		at, id, err := pg.DecodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		args = append(args, at, id)
		q += fmt.Sprintf(" AND (created_at, id) < ($%d, $%d)", len(args)-1, len(args))
	}
	if f.X != "" {
		add("x = ?", f.X)
	}
	if f.Number != "" {
		add("? IN (a, b)", f.Number)
	}
	if f.ExternalID != "" {
		add("external_id = ?", f.ExternalID)
	}
	switch f.Status {
	case "":
	case callbridge.StatusActive:
		add("status = ? AND expires_at > now()", f.Status)
	case callbridge.StatusExpired:
		add("(status = ? OR (status = 'active' AND expires_at <= now()))", f.Status)
	case callbridge.StatusBinding, callbridge.StatusUnbinding, callbridge.StatusUnbound:
		add("status = ?", f.Status)
	default:
		return nil, "", callbridge.FieldError("status", "unknown status %q", f.Status)
	}
	args = append(args, limit+1)
	q += " ORDER BY created_at DESC, id DESC LIMIT $" + strconv.Itoa(len(args))
	var rows []*callbridge.Binding
	if err := s.db.SelectContext(ctx, &rows, q, args...); err != nil {
		return nil, "", pg.Error(err)
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		last := rows[limit-1]
		next = pg.EncodeCursor(last.CreatedAt, last.ID)
	}
	now := s.now()
	for _, b := range rows {
		fixTimes(b)
		presentStatus(b, now)
	}
	return rows, next, nil
}

// presentStatus shows an active binding whose time has passed as expired,
// as it routes nothing any more even if the sweep has not marked it yet.
func presentStatus(b *callbridge.Binding, now time.Time) {
	if b.Status == callbridge.StatusActive && !now.Before(b.ExpiresAt) {
		b.Status = callbridge.StatusExpired
	}
}

// UpdateBinding implements callbridge.BindingService.
func (s *Service) UpdateBinding(ctx context.Context, accountID, id string, u callbridge.BindingUpdate) (*callbridge.Binding, error) {
	if !callbridge.IsUUID(accountID) || !callbridge.IsUUID(id) {
		return nil, pg.NotFound("binding")
	}
	now := s.now()
	var out *callbridge.Binding
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		if err := lockBindingX(ctx, tx, accountID, id); err != nil {
			return err
		}
		b, err := lockBinding(ctx, tx, accountID, id)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `SELECT bindings_expire_x($1)`, b.X); err != nil {
			return pg.Error(err)
		}
		if b.Status != callbridge.StatusActive || !b.Routable(now) {
			return callbridge.Errorf(callbridge.ECONFLICT, "binding is not active")
		}
		if u.A != nil {
			b.A = *u.A
		}
		if u.B != nil {
			b.B = *u.B
		}
		if u.Record != nil {
			b.Record = *u.Record
		}
		if u.ExpiresAt != nil {
			if err := callbridge.ValidateExpiry(*u.ExpiresAt, now, s.maxTTL()); err != nil {
				return err
			}
			b.ExpiresAt = u.ExpiresAt.UTC()
		}
		if err := b.Validate(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `SELECT set_config('callbridge.binding_detail', 'updated', true)`); err != nil {
			return pg.Error(err)
		}
		var nb callbridge.Binding
		err = tx.GetContext(ctx, &nb, `UPDATE bindings SET a = $2, b = $3, record = $4, expires_at = $5, updated_at = now()
			WHERE id = $1 RETURNING `+bindingColumns, id, b.A, b.B, b.Record, b.ExpiresAt)
		if err != nil {
			if errors.Is(constraintError(err), errRetryX) {
				return callbridge.Errorf(callbridge.ECONFLICT, "a party of this binding is already bound on %s", b.X)
			}
			return pg.Error(constraintError(err))
		}
		out = fixTimes(&nb)
		return nil
	})
	return out, err
}

// Unbind implements callbridge.BindingService. It moves an active binding
// through unbinding to unbound in one transaction (both changes are
// recorded); routing stops when it commits. Unbinding a binding that is
// already unbound or expired returns it unchanged.
func (s *Service) Unbind(ctx context.Context, accountID, id string) (*callbridge.Binding, error) {
	if !callbridge.IsUUID(accountID) || !callbridge.IsUUID(id) {
		return nil, pg.NotFound("binding")
	}
	var out *callbridge.Binding
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		if err := lockBindingX(ctx, tx, accountID, id); err != nil {
			return err
		}
		b, err := lockBinding(ctx, tx, accountID, id)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `SELECT bindings_expire_x($1)`, b.X); err != nil {
			return pg.Error(err)
		}
		if _, err := tx.ExecContext(ctx, `SELECT set_config('callbridge.binding_detail', 'unbind', true)`); err != nil {
			return pg.Error(err)
		}
		var nb callbridge.Binding
		err = tx.GetContext(ctx, &nb, `UPDATE bindings SET status = 'unbinding', updated_at = now()
			WHERE id = $1 AND status IN ('binding', 'active') RETURNING `+bindingColumns, id)
		if errors.Is(err, sql.ErrNoRows) {
			err = tx.GetContext(ctx, &nb, `SELECT `+bindingColumns+` FROM bindings WHERE id = $1`, id)
			out = fixTimes(&nb)
			return pg.Error(err)
		}
		if err != nil {
			return pg.Error(err)
		}
		err = tx.GetContext(ctx, &nb, `UPDATE bindings SET status = 'unbound', updated_at = now()
			WHERE id = $1 RETURNING `+bindingColumns, id)
		out = fixTimes(&nb)
		return pg.Error(err)
	})
	return out, err
}

// ExpireBindings implements callbridge.BindingService.
func (s *Service) ExpireBindings(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT set_config('callbridge.binding_detail', 'expired', true)`); err != nil {
			return pg.Error(err)
		}
		res, err := tx.ExecContext(ctx, `UPDATE bindings SET status = 'expired', updated_at = now()
			WHERE status = 'active' AND expires_at <= $1`, now)
		if err != nil {
			return pg.Error(err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// BindingEvents implements callbridge.BindingService.
func (s *Service) BindingEvents(ctx context.Context, accountID, id string) ([]*callbridge.BindingEvent, error) {
	if _, err := s.Binding(ctx, accountID, id); err != nil {
		return nil, err
	}
	var evs []*callbridge.BindingEvent
	err := s.db.SelectContext(ctx, &evs, `SELECT id, binding_id, from_status, to_status, detail, at
		FROM binding_events WHERE binding_id = $1 ORDER BY id`, id)
	for _, e := range evs {
		e.At = e.At.UTC()
	}
	return evs, pg.Error(err)
}

func lockBinding(ctx context.Context, tx *pg.Tx, accountID, id string) (*callbridge.Binding, error) {
	var b callbridge.Binding
	err := tx.GetContext(ctx, &b, `SELECT `+bindingColumns+` FROM bindings WHERE id = $1 AND account_id = $2 FOR UPDATE`, id, accountID)
	if err != nil {
		return nil, pg.NotFoundAs(pg.Error(err), "binding")
	}
	return fixTimes(&b), nil
}

func fixTimes(b *callbridge.Binding) *callbridge.Binding {
	b.ExpiresAt = pg.UTC(b.ExpiresAt)
	b.CreatedAt = pg.UTC(b.CreatedAt)
	b.UpdatedAt = pg.UTC(b.UpdatedAt)
	return b
}

// RoutableBindings calls fn for every number of every pool, in number
// order, with its bindings that are active and not yet expired by the
// database clock. It streams, so it suits a pool of millions of bindings;
// the controller's index is built from it.
func (s *Service) RoutableBindings(ctx context.Context, fn func(n *callbridge.VirtualNumber, bs []*callbridge.Binding) error) error {
	rows, err := s.db.QueryxContext(ctx, `
		SELECT n.number, n.account_id, n.gateway, n.enabled,
		       b.id, b.account_id, b.mode, b.x, b.a, b.b, b.status, b.expires_at, b.record,
		       b.caller_display, b.external_id, b.webhook_url, b.created_at, b.updated_at
		  FROM numbers n
		  LEFT JOIN bindings b ON b.x = n.number AND b.status = 'active' AND b.expires_at > now()
		 ORDER BY n.number`)
	if err != nil {
		return pg.Error(err)
	}
	defer rows.Close()
	var cur *callbridge.VirtualNumber
	var bs []*callbridge.Binding
	for rows.Next() {
		var n callbridge.VirtualNumber
		var id, acct, mode, x, a, bn, status, display, ext, hook sql.NullString
		var exp, created, updated sql.NullTime
		var record sql.NullBool
		if err := rows.Scan(&n.Number, &n.AccountID, &n.Gateway, &n.Enabled,
			&id, &acct, &mode, &x, &a, &bn, &status, &exp, &record, &display, &ext, &hook, &created, &updated); err != nil {
			return pg.Error(err)
		}
		if cur == nil || cur.Number != n.Number {
			if cur != nil {
				if err := fn(cur, bs); err != nil {
					return err
				}
			}
			cur, bs = &n, nil
		}
		if id.Valid {
			bs = append(bs, &callbridge.Binding{
				ID: id.String, AccountID: acct.String, Mode: callbridge.BindingMode(mode.String),
				X: callbridge.Number(x.String), A: callbridge.Number(a.String), B: callbridge.Number(bn.String),
				Status: callbridge.BindingStatus(status.String), ExpiresAt: exp.Time.UTC(), Record: record.Bool,
				CallerDisplay: display.String, ExternalID: ext.String, WebhookURL: hook.String,
				CreatedAt: created.Time.UTC(), UpdatedAt: updated.Time.UTC(),
			})
		}
	}
	if err := rows.Err(); err != nil {
		return pg.Error(err)
	}
	if cur != nil {
		return fn(cur, bs)
	}
	return nil
}

// RoutableLine returns the number x with its routable bindings, or a nil
// number (and no error) when x is in no pool.
func (s *Service) RoutableLine(ctx context.Context, x callbridge.Number) (*callbridge.VirtualNumber, []*callbridge.Binding, error) {
	if x.Validate() != nil {
		return nil, nil, nil
	}
	var r numberRow
	err := s.db.GetContext(ctx, &r, `SELECT `+numberColumns+` FROM numbers WHERE number = $1`, x)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, pg.Error(err)
	}
	var bs []*callbridge.Binding
	err = s.db.SelectContext(ctx, &bs, `SELECT `+bindingColumns+` FROM bindings
		WHERE x = $1 AND status = 'active' AND expires_at > now() ORDER BY created_at`, x)
	if err != nil {
		return nil, nil, pg.Error(err)
	}
	for _, b := range bs {
		fixTimes(b)
	}
	return r.number(), bs, nil
}

// ListenBindings listens on Channel until ctx ends. It calls
// changed with the X of every notification, and resync after the
// listener's connection was lost and re-established (notifications may
// have been missed then, so the whole index must be rebuilt). Both run on
// ListenBindings' goroutine. ready, if not nil, is closed once the LISTEN
// is in place.
func (s *Service) ListenBindings(ctx context.Context, changed func(callbridge.Number), resync func(), ready chan<- struct{}) error {
	return s.db.Listen(ctx, "binding", Channel, func(x string) { changed(callbridge.Number(x)) }, resync, ready)
}
