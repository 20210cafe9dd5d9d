package binding

import (
	"context"
	"encoding/base64"
	"strconv"

	"callbridge"
	"callbridge/postgres/internal/pg"

	"github.com/lib/pq"
)

// NumberService implements callbridge.NumberService.
type NumberService struct{ db *pg.DB }

var _ callbridge.NumberService = (*NumberService)(nil)

// NewNumberService returns a NumberService backed by db.
func NewNumberService(db *pg.DB) *NumberService { return &NumberService{db: db} }

// numberRow is the stored form of a callbridge.VirtualNumber.
type numberRow struct {
	callbridge.VirtualNumber
	Labels pq.StringArray `db:"labels"`
}

func (r *numberRow) number() *callbridge.VirtualNumber {
	n := r.VirtualNumber
	n.Labels = []string(r.Labels)
	if n.Labels == nil {
		n.Labels = []string{}
	}
	return &n
}

const numberColumns = `number, account_id, gateway, area, labels, enabled, created_at, updated_at`

// CreateNumbers implements callbridge.NumberService.
func (s *NumberService) CreateNumbers(ctx context.Context, accountID string, ns []*callbridge.VirtualNumber) ([]*callbridge.VirtualNumber, error) {
	if !callbridge.IsUUID(accountID) {
		return nil, pg.NotFound("account")
	}
	if len(ns) == 0 || len(ns) > 1000 {
		return nil, callbridge.FieldError("numbers", "give 1 to 1000 numbers")
	}
	seen := make(map[callbridge.Number]bool, len(ns))
	for _, n := range ns {
		if n.Labels == nil {
			n.Labels = []string{}
		}
		if err := n.Validate(); err != nil {
			return nil, err
		}
		if seen[n.Number] {
			return nil, callbridge.FieldError("number", "%s is given twice", n.Number)
		}
		seen[n.Number] = true
	}
	out := make([]*callbridge.VirtualNumber, 0, len(ns))
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		for _, n := range ns {
			var r numberRow
			err := tx.GetContext(ctx, &r, `INSERT INTO numbers (number, account_id, gateway, area, labels, enabled)
				VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+numberColumns,
				n.Number, accountID, n.Gateway, n.Area, pq.StringArray(n.Labels), n.Enabled)
			if err != nil {
				if callbridge.ErrorCode(pg.Error(err)) == callbridge.ECONFLICT {
					return callbridge.Errorf(callbridge.ECONFLICT, "number %s already exists", n.Number)
				}
				return pg.Error(err)
			}
			out = append(out, r.number())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Number implements callbridge.NumberService.
func (s *NumberService) Number(ctx context.Context, accountID string, n callbridge.Number) (*callbridge.VirtualNumber, error) {
	if !callbridge.IsUUID(accountID) || n.Validate() != nil {
		return nil, pg.NotFound("number")
	}
	var r numberRow
	err := s.db.GetContext(ctx, &r, `SELECT `+numberColumns+` FROM numbers WHERE number = $1 AND account_id = $2`, n, accountID)
	if err != nil {
		return nil, pg.NotFoundAs(pg.Error(err), "number")
	}
	return r.number(), nil
}

// Numbers implements callbridge.NumberService. Numbers are listed in
// ascending order; the cursor is the last number of the page.
func (s *NumberService) Numbers(ctx context.Context, accountID string, f callbridge.NumberFilter) ([]*callbridge.VirtualNumber, string, error) {
	if !callbridge.IsUUID(accountID) {
		return nil, "", pg.NotFound("account")
	}
	limit := pageLimit(f.Limit)
	after := ""
	if f.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		if err != nil || callbridge.Number(b).Validate() != nil {
			return nil, "", callbridge.FieldError("cursor", "is not a cursor from a previous page")
		}
		after = string(b)
	}
	q := `SELECT ` + numberColumns + ` FROM numbers WHERE account_id = $1 AND number > $2`
	args := []any{accountID, after}
	if f.Area != "" {
		args = append(args, f.Area)
		q += ` AND area = $3`
	}
	if f.Enabled != nil {
		args = append(args, *f.Enabled)
		q += ` AND enabled = $` + strconv.Itoa(len(args))
	}
	args = append(args, limit+1)
	q += ` ORDER BY number LIMIT $` + strconv.Itoa(len(args))
	var rows []numberRow
	if err := s.db.SelectContext(ctx, &rows, q, args...); err != nil {
		return nil, "", pg.Error(err)
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(rows[limit-1].Number))
	}
	out := make([]*callbridge.VirtualNumber, len(rows))
	for i := range rows {
		out[i] = rows[i].number()
	}
	return out, next, nil
}

// UpdateNumber implements callbridge.NumberService.
func (s *NumberService) UpdateNumber(ctx context.Context, accountID string, n callbridge.Number, u callbridge.NumberUpdate) (*callbridge.VirtualNumber, error) {
	var out *callbridge.VirtualNumber
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		var r numberRow
		err := tx.GetContext(ctx, &r, `SELECT `+numberColumns+` FROM numbers WHERE number = $1 AND account_id = $2 FOR UPDATE`, n, accountID)
		if err != nil {
			return pg.NotFoundAs(pg.Error(err), "number")
		}
		v := r.number()
		if u.Gateway != nil {
			v.Gateway = *u.Gateway
		}
		if u.Area != nil {
			v.Area = *u.Area
		}
		if u.Labels != nil {
			v.Labels = *u.Labels
			if v.Labels == nil {
				v.Labels = []string{}
			}
		}
		if u.Enabled != nil {
			v.Enabled = *u.Enabled
		}
		if err := v.Validate(); err != nil {
			return err
		}
		err = tx.GetContext(ctx, &r, `UPDATE numbers SET gateway = $3, area = $4, labels = $5, enabled = $6, updated_at = now()
			WHERE number = $1 AND account_id = $2 RETURNING `+numberColumns,
			n, accountID, v.Gateway, v.Area, pq.StringArray(v.Labels), v.Enabled)
		if err != nil {
			return pg.Error(err)
		}
		out = r.number()
		return nil
	})
	return out, err
}

// DeleteNumber implements callbridge.NumberService. The number's row is
// locked first, and binding writers lock it too, so no binding can appear
// between the check and the delete.
func (s *NumberService) DeleteNumber(ctx context.Context, accountID string, n callbridge.Number) error {
	if !callbridge.IsUUID(accountID) || n.Validate() != nil {
		return pg.NotFound("number")
	}
	return s.db.Tx(ctx, func(tx *pg.Tx) error {
		var x string
		err := tx.GetContext(ctx, &x, `SELECT number FROM numbers WHERE number = $1 AND account_id = $2 FOR UPDATE`, n, accountID)
		if err != nil {
			return pg.NotFoundAs(pg.Error(err), "number")
		}
		if _, err := tx.ExecContext(ctx, `SELECT bindings_expire_x($1)`, n); err != nil {
			return pg.Error(err)
		}
		var used bool
		if err := tx.GetContext(ctx, &used, `SELECT EXISTS (SELECT 1 FROM bindings WHERE x = $1 AND status IN ('binding', 'active', 'unbinding'))`, n); err != nil {
			return pg.Error(err)
		}
		if used {
			return callbridge.Errorf(callbridge.ECONFLICT, "number %s has an active binding", n)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM numbers WHERE number = $1`, n); err != nil {
			return pg.Error(err)
		}
		return nil
	})
}

// pageLimit clamps a requested page size to 1..500, 50 by default.
func pageLimit(n int) int {
	switch {
	case n <= 0:
		return 50
	case n > 500:
		return 500
	}
	return n
}
