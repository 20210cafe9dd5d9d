// Package routeplan stores carrier route plans and their routes, and
// keeps a routing.Plans equal to them (PlanSync). It is part of the
// postgres adapter: build it through postgres.NewRoutePlanService and
// postgres.NewPlanSync.
package routeplan

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"callbridge"
	"callbridge/postgres/internal/pg"
	"callbridge/rating"
	"callbridge/routing"

	"github.com/lib/pq"
)

// RouteChannel is the LISTEN/NOTIFY channel on which every change to a
// route plan or its routes is announced with the plan's id
// (sql/0019_route_plans.sql).
const RouteChannel = "callbridge_routes"

// Service stores route plans and their routes.
type Service struct{ db *pg.DB }

// New returns a Service backed by db.
func New(db *pg.DB) *Service { return &Service{db: db} }

const planColumns = `id, coalesce(account_id::text, '') AS account_id, is_default, name, time_zone, currency,
	max_attempts, post_dial_ms, failover_causes, failover_sip_codes, version, created_at`

type planRow struct {
	ID               string         `db:"id"`
	AccountID        string         `db:"account_id"`
	IsDefault        bool           `db:"is_default"`
	Name             string         `db:"name"`
	TimeZone         string         `db:"time_zone"`
	Currency         string         `db:"currency"`
	MaxAttempts      int            `db:"max_attempts"`
	PostDialMS       int64          `db:"post_dial_ms"`
	FailoverCauses   pq.StringArray `db:"failover_causes"`
	FailoverSIPCodes pq.Int64Array  `db:"failover_sip_codes"`
	Version          int64          `db:"version"`
	CreatedAt        time.Time      `db:"created_at"`
}

func (r *planRow) info() *routing.PlanInfo {
	p := &routing.PlanInfo{
		ID: r.ID, AccountID: r.AccountID, Default: r.IsDefault, Name: r.Name, TimeZone: r.TimeZone,
		Currency: r.Currency, MaxAttempts: r.MaxAttempts, PostDialMS: r.PostDialMS,
		Version: r.Version, CreatedAt: r.CreatedAt.UTC(),
	}
	if len(r.FailoverCauses) > 0 {
		p.FailoverCauses = []string(r.FailoverCauses)
	}
	for _, c := range r.FailoverSIPCodes {
		p.FailoverSIPCodes = append(p.FailoverSIPCodes, int(c))
	}
	return p
}

const routeColumns = `prefix, description, strategy, gateways, weights, days, time_from, time_until, priority`

type routeRow struct {
	Prefix      string         `db:"prefix"`
	Description string         `db:"description"`
	Strategy    string         `db:"strategy"`
	Gateways    pq.StringArray `db:"gateways"`
	Weights     pq.Int64Array  `db:"weights"`
	Days        int16          `db:"days"`
	TimeFrom    int32          `db:"time_from"`
	TimeUntil   int32          `db:"time_until"`
	Priority    int32          `db:"priority"`
}

func (r *routeRow) route() routing.Route {
	rt := routing.Route{
		Prefix: r.Prefix, Description: r.Description, Strategy: routing.Strategy(r.Strategy),
		Days: rating.Days(r.Days), From: rating.TimeOfDay(r.TimeFrom), Until: rating.TimeOfDay(r.TimeUntil),
		Priority: r.Priority, Gateways: make([]routing.Target, len(r.Gateways)),
	}
	for i, g := range r.Gateways {
		rt.Gateways[i].Gateway = g
		if i < len(r.Weights) {
			rt.Gateways[i].Weight = int32(r.Weights[i])
		}
	}
	return rt
}

// CreateRoutePlan stores a new plan with no routes and fills in its ID,
// Version, CreatedAt and defaulted settings. EINVALID (including an
// unknown time zone or account), ECONFLICT when the account already has a
// plan or another plan is the default.
func (s *Service) CreateRoutePlan(ctx context.Context, p *routing.PlanInfo) error {
	p.ID, p.Version = "", 0
	if err := prepare(p); err != nil {
		return err
	}
	causes, codes := failoverArrays(p)
	var row planRow
	err := s.db.QueryRowxContext(ctx, `INSERT INTO route_plans (account_id, is_default, name, time_zone, currency,
			max_attempts, post_dial_ms, failover_causes, failover_sip_codes)
		VALUES (nullif($1, '')::uuid, $2, $3, $4, $5, $6, $7, $8, $9)
		RETURNING `+planColumns,
		p.AccountID, p.Default, p.Name, p.TimeZone, p.Currency, p.MaxAttempts, p.PostDialMS,
		causes, codes).StructScan(&row)
	if err != nil {
		return fmt.Errorf("postgres: create route plan: %w", planWriteError(err))
	}
	*p = *row.info()
	return nil
}

// UpdateRoutePlan changes the terms u gives of plan id, checked as
// CreateRoutePlan checks a new plan's, in one transaction, and returns
// the plan. A change increases the plan's version, which every process's
// PlanSync reloads it at (the row's trigger announces it); an empty u
// changes nothing. ENOTFOUND, EINVALID (including an unknown time zone or
// account), ECONFLICT when the account already has another plan or
// another plan is the default.
func (s *Service) UpdateRoutePlan(ctx context.Context, id string, u routing.PlanUpdate) (*routing.PlanInfo, error) {
	if !callbridge.IsUUID(id) {
		return nil, pg.NotFound("route plan")
	}
	var out *routing.PlanInfo
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		var row planRow
		err := tx.GetContext(ctx, &row, `SELECT `+planColumns+` FROM route_plans WHERE id = $1 FOR UPDATE`, id)
		if err != nil {
			return pg.NotFoundAs(pg.Error(err), "route plan")
		}
		p := row.info()
		if u.Empty() {
			out = p
			return nil
		}
		u.Apply(p)
		if err := prepare(p); err != nil {
			return err
		}
		causes, codes := failoverArrays(p)
		err = tx.GetContext(ctx, &row, `UPDATE route_plans SET account_id = nullif($2, '')::uuid, is_default = $3,
				name = $4, time_zone = $5, currency = $6, max_attempts = $7, post_dial_ms = $8,
				failover_causes = $9, failover_sip_codes = $10, version = version + 1, updated_at = now()
			WHERE id = $1 RETURNING `+planColumns,
			id, p.AccountID, p.Default, p.Name, p.TimeZone, p.Currency, p.MaxAttempts, p.PostDialMS, causes, codes)
		if err != nil {
			return planWriteError(err)
		}
		out = row.info()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: update route plan: %w", err)
	}
	return out, nil
}

// prepare fills in p's defaulted settings and checks it as a plan to
// store: Validate, a time zone that loads, an account id that can be one.
func prepare(p *routing.PlanInfo) error {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = routing.DefaultMaxAttempts
	}
	if p.PostDialMS == 0 {
		p.PostDialMS = routing.DefaultPostDialMS
	}
	if err := p.Validate(); err != nil {
		return err
	}
	if _, err := time.LoadLocation(p.TimeZone); err != nil || p.TimeZone == "Local" {
		return callbridge.FieldError("time_zone", "unknown IANA time zone %q", p.TimeZone)
	}
	if p.AccountID != "" && !callbridge.IsUUID(p.AccountID) {
		return callbridge.FieldError("account_id", "no such account")
	}
	return nil
}

// failoverArrays returns p's failover lists as the columns take them
// (empty, not NULL, for the defaults).
func failoverArrays(p *routing.PlanInfo) (causes, codes any) {
	c := p.FailoverCauses
	if c == nil {
		c = []string{}
	}
	n := make([]int64, len(p.FailoverSIPCodes))
	for i, v := range p.FailoverSIPCodes {
		n[i] = int64(v)
	}
	return pq.Array(c), pq.Array(n)
}

// planWriteError maps the errors of writing a plan's row: an unknown
// account, and the account's or the default plan's uniqueness.
func planWriteError(err error) error {
	var pe *pq.Error
	switch {
	case errors.As(err, &pe) && pe.Code == pg.CodeForeignKey:
		return callbridge.FieldError("account_id", "no such account")
	case errors.As(err, &pe) && pe.Constraint == "route_plans_account_key":
		return callbridge.Errorf(callbridge.ECONFLICT, "the account already has a route plan")
	case errors.As(err, &pe) && pe.Constraint == "route_plans_default_key":
		return callbridge.Errorf(callbridge.ECONFLICT, "another route plan is the default")
	}
	return pg.Error(err)
}

// RoutePlans lists every route plan, the default first, then by account
// and creation.
func (s *Service) RoutePlans(ctx context.Context) ([]*routing.PlanInfo, error) {
	var rows []planRow
	if err := s.db.SelectContext(ctx, &rows, `SELECT `+planColumns+` FROM route_plans
		ORDER BY is_default DESC, account_id NULLS FIRST, created_at, id`); err != nil {
		return nil, fmt.Errorf("postgres: route plans: %w", pg.Error(err))
	}
	out := make([]*routing.PlanInfo, len(rows))
	for i := range rows {
		out[i] = rows[i].info()
	}
	return out, nil
}

// RoutePlan returns a plan by id. ENOTFOUND.
func (s *Service) RoutePlan(ctx context.Context, id string) (*routing.PlanInfo, error) {
	if !callbridge.IsUUID(id) {
		return nil, pg.NotFound("route plan")
	}
	var row planRow
	if err := s.db.GetContext(ctx, &row, `SELECT `+planColumns+` FROM route_plans WHERE id = $1`, id); err != nil {
		return nil, fmt.Errorf("postgres: route plan: %w", pg.NotFoundAs(pg.Error(err), "route plan"))
	}
	return row.info(), nil
}

// DeleteRoutePlan deletes a plan and its routes. ENOTFOUND.
func (s *Service) DeleteRoutePlan(ctx context.Context, id string) error {
	if !callbridge.IsUUID(id) {
		return pg.NotFound("route plan")
	}
	res, err := s.db.ExecContext(ctx, `DELETE FROM route_plans WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("postgres: delete route plan: %w", pg.Error(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return pg.NotFound("route plan")
	}
	return nil
}

// ImportRoutes adds the routes of src to a plan, replacing all of its
// routes when replace is set, in one transaction: every route is stored
// or none is. The plan's version increases; it returns the updated plan.
//
// It streams, as ImportRates does: rows go through COPY into a temporary
// table as src yields them, so memory does not grow with the file; rows
// the file repeats (same prefix, days, from, until and priority) are
// found by the database and reported with src's own bad rows. EINVALID (a
// *rating.CSVError for bad or repeated rows), ENOTFOUND, ECONFLICT when a
// route duplicates one already in the plan. A failure to read src is
// returned wrapped.
func (s *Service) ImportRoutes(ctx context.Context, planID string, src routing.RouteSource, replace bool) (*routing.PlanInfo, error) {
	if !callbridge.IsUUID(planID) {
		return nil, pg.NotFound("route plan")
	}
	var info *routing.PlanInfo
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		var row planRow
		err := tx.GetContext(ctx, &row, `UPDATE route_plans SET version = version + 1, updated_at = now()
			WHERE id = $1 RETURNING `+planColumns, planID)
		if err != nil {
			return pg.NotFoundAs(pg.Error(err), "route plan")
		}
		info = row.info()
		if err := copyRoutes(ctx, tx, src); err != nil {
			return err
		}
		if err := duplicateRoutes(ctx, tx, src.Err()); err != nil {
			return err
		}
		if replace {
			if _, err := tx.ExecContext(ctx, `DELETE FROM routes WHERE plan_id = $1`, planID); err != nil {
				return pg.Error(err)
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO routes (plan_id, `+routeColumns+`)
			SELECT $1, `+routeColumns+` FROM route_import`, planID)
		var pe *pq.Error
		if errors.As(err, &pe) && pe.Constraint == "routes_key" {
			return callbridge.Errorf(callbridge.ECONFLICT, "a route repeats one of the plan's (same prefix, days, from, until and priority); import with mode=replace to replace them")
		}
		return pg.Error(err)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: import routes: %w", err)
	}
	return info, nil
}

// copyRoutes streams src into the temporary table route_import, each
// route with its line.
func copyRoutes(ctx context.Context, tx *pg.Tx, src routing.RouteSource) error {
	var gws []string
	var weights []int64
	return pg.CopyRows(ctx, tx, "route_import", "routes", routeColumns, func() ([]any, error) {
		if !src.Next() {
			return nil, rating.ReadFailure(src.Err())
		}
		r := src.Route()
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("line %d: %w", src.Line(), err)
		}
		gws, weights = gws[:0], weights[:0]
		for _, g := range r.Gateways {
			gws = append(gws, g.Gateway)
			weights = append(weights, int64(max(g.Weight, 1)))
		}
		return []any{src.Line(), r.Prefix, r.Description, string(r.Strategy),
			pq.Array(gws), pq.Array(weights), int16(r.Days), int32(r.From), int32(r.Until), r.Priority}, nil
	})
}

// duplicateRoutes refuses the import when the file repeats a route's key
// or srcErr lists bad rows: one *rating.CSVError with both, in line order.
func duplicateRoutes(ctx context.Context, tx *pg.Tx, srcErr error) error {
	dups, total, err := pg.Duplicates(ctx, tx, "route_import", "prefix, days, time_from, time_until, priority", rating.MaxRowErrors)
	if err != nil {
		return err
	}
	rows := make([]rating.RowError, len(dups))
	for i, d := range dups {
		rows[i] = rating.RowError{Line: d.Line, Message: fmt.Sprintf("duplicates line %d (same prefix, days, from, until and priority)", d.First)}
	}
	return rating.WithDuplicates(srcErr, rows, total-len(dups))
}

// EachRoute calls fn with each route of a plan, in export order (prefix,
// priority, days, from), reading them row by row: an export holds one
// route in memory at a time. It stops at fn's first error and returns it.
// ENOTFOUND.
func (s *Service) EachRoute(ctx context.Context, planID string, fn func(*routing.Route) error) error {
	if _, err := s.RoutePlan(ctx, planID); err != nil {
		return err
	}
	rows, err := s.db.QueryxContext(ctx, `SELECT `+routeColumns+` FROM routes WHERE plan_id = $1
		ORDER BY prefix, priority, days, time_from`, planID)
	if err != nil {
		return fmt.Errorf("postgres: routes: %w", pg.Error(err))
	}
	defer rows.Close()
	var row routeRow
	for rows.Next() {
		if err := rows.StructScan(&row); err != nil {
			return fmt.Errorf("postgres: routes: %w", pg.Error(err))
		}
		r := row.route()
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: routes: %w", pg.Error(err))
	}
	return nil
}

// LoadPlan reads a plan and its routes, from one snapshot, and compiles
// them. ENOTFOUND; EINVALID if the stored routes do not compile (they
// were checked on the way in, so only a hand-made row can do that).
func (s *Service) LoadPlan(ctx context.Context, id string) (*routing.Plan, error) {
	if !callbridge.IsUUID(id) {
		return nil, pg.NotFound("route plan")
	}
	return s.loadPlan(ctx, `SELECT `+planColumns+` FROM route_plans WHERE id = $1`, id)
}

// LoadPlanFor is LoadPlan of the plan that routes an account's calls: its
// own, else the default plan. accountID empty asks for the default plan.
// ENOTFOUND when there is neither.
func (s *Service) LoadPlanFor(ctx context.Context, accountID string) (*routing.Plan, error) {
	if accountID != "" && !callbridge.IsUUID(accountID) {
		accountID = ""
	}
	return s.loadPlan(ctx, `SELECT `+planColumns+` FROM route_plans
		WHERE (account_id = nullif($1, '')::uuid) OR is_default ORDER BY is_default LIMIT 1`, accountID)
}

// loadPlan reads the plan query selects and its routes in one
// repeatable-read transaction, so the routes are those of the version
// read, and compiles them.
func (s *Service) loadPlan(ctx context.Context, query string, arg string) (*routing.Plan, error) {
	tx, err := s.db.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("postgres: load route plan: %w", pg.Error(err))
	}
	defer tx.Rollback()
	var row planRow
	if err := tx.GetContext(ctx, &row, query, arg); err != nil {
		return nil, fmt.Errorf("postgres: load route plan: %w", pg.NotFoundAs(pg.Error(err), "route plan"))
	}
	p, err := compilePlan(ctx, tx, &row)
	if err != nil {
		return nil, fmt.Errorf("postgres: load route plan: %w", err)
	}
	return p, nil
}
