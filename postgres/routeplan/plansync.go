package routeplan

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"callbridge"
	"callbridge/postgres/internal/pg"
	"callbridge/routing"

	"github.com/jmoiron/sqlx"
)

// PlanSync keeps a routing.Plans equal to the route plans in the
// database, as DeckSync does for rate decks: Run loads every plan, then
// reloads each plan a notification on RouteChannel names, and everything
// after the LISTEN connection was lost. It also keeps the plans' tables
// fresh: after each load and every RefreshEvery it calls Plans.Refresh
// with Prices (the rate-deck registry), so a deck change or a band edge
// is priced into the tables within that period (calls meanwhile are
// resolved from the plans, with the same answers).
type PlanSync struct {
	store  *Service
	plans  *routing.Plans
	prices routing.PriceSource
	log    *slog.Logger
	// RetryDelay is how long Run waits before trying again after a
	// failed load; zero means one second.
	RetryDelay time.Duration
	// RefreshEvery is how often Run refreshes stale tables; zero means
	// ten seconds.
	RefreshEvery time.Duration
	// Now is the clock tables are built at; nil means time.Now.
	Now func() time.Time
}

// NewPlanSync returns a PlanSync that fills plans from store and prices
// their tables with prices (nil: no buy decks).
func NewPlanSync(store *Service, plans *routing.Plans, prices routing.PriceSource, log *slog.Logger) *PlanSync {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PlanSync{store: store, plans: plans, prices: prices, log: log}
}

func (s *PlanSync) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Run listens on RouteChannel, loads every plan, closes ready (if not
// nil), then applies every change until ctx ends. It returns the
// listener's error, or nil when ctx ends.
func (s *PlanSync) Run(ctx context.Context, ready chan<- struct{}) error {
	every := s.RefreshEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	return s.store.db.Follow(ctx, pg.Follower{
		What:       "route plans",
		Name:       "route plan",
		Key:        "plan",
		Channel:    RouteChannel,
		Queue:      1024,
		RetryDelay: s.RetryDelay,
		Reload:     s.Reload,
		Refresh:    s.Refresh,
		Loaded:     s.refreshTables,
		Every:      every,
		Tick:       s.refreshTables,
	}, s.log, ready)
}

func (s *PlanSync) refreshTables() {
	start := time.Now()
	if n := s.plans.Refresh(s.prices, s.now()); n > 0 {
		s.log.Info("route tables built", "tables", n, "took", time.Since(start).String())
	}
}

// Reload reads every plan and makes them the set's content; plans held
// at the version the database has are reused, not read again.
func (s *PlanSync) Reload(ctx context.Context) error {
	mark := s.plans.Mark()
	var plans []*routing.Plan
	err := s.store.LoadPlans(ctx, func(id string, version int64) *routing.Plan {
		if p := s.plans.Plan(id); p != nil && p.Info().Version == version {
			return p
		}
		return nil
	}, func(p *routing.Plan) { plans = append(plans, p) })
	if err != nil {
		return err
	}
	s.plans.Replace(plans, mark)
	return nil
}

// Refresh reads plan id again into the set, or removes it when it no
// longer exists. API handlers call it after their own writes.
func (s *PlanSync) Refresh(ctx context.Context, id string) error {
	p, err := s.store.LoadPlan(ctx, id)
	switch {
	case callbridge.ErrorCode(err) == callbridge.ENOTFOUND:
		s.plans.Remove(id)
		return nil
	case err != nil:
		return err
	}
	s.plans.Put(p)
	return nil
}

// LoadPlans reads every plan in one snapshot and calls fn with each,
// compiled one at a time. have returns a compiled plan the caller holds
// at the given id and version, or nil; such a plan's routes are not read
// again. A plan that does not compile is logged and left out.
func (s *Service) LoadPlans(ctx context.Context, have func(id string, version int64) *routing.Plan, fn func(*routing.Plan)) error {
	tx, err := s.db.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("postgres: load route plans: %w", pg.Error(err))
	}
	defer tx.Rollback()
	var rows []planRow
	if err := tx.SelectContext(ctx, &rows, `SELECT `+planColumns+` FROM route_plans ORDER BY id`); err != nil {
		return fmt.Errorf("postgres: load route plans: %w", pg.Error(err))
	}
	for i := range rows {
		if p := have(rows[i].ID, rows[i].Version); p != nil {
			fn(p)
			continue
		}
		p, err := compilePlan(ctx, tx, &rows[i])
		if err != nil {
			if callbridge.ErrorCode(err) == callbridge.EINVALID {
				s.db.Logger.Error("route plan does not compile; left out", "plan", rows[i].ID, "error", err)
				continue
			}
			return fmt.Errorf("postgres: load route plans: %w", err)
		}
		fn(p)
	}
	return nil
}

// compilePlan reads the routes of the plan in row and compiles it.
func compilePlan(ctx context.Context, tx *sqlx.Tx, row *planRow) (*routing.Plan, error) {
	info := row.info()
	loc, err := time.LoadLocation(info.TimeZone)
	if err != nil {
		return nil, callbridge.FieldError("time_zone", "route plan %s: unknown zone %q: %v", info.ID, info.TimeZone, err)
	}
	rows, err := tx.QueryxContext(ctx, `SELECT `+routeColumns+` FROM routes WHERE plan_id = $1`, info.ID)
	if err != nil {
		return nil, pg.Error(err)
	}
	defer rows.Close()
	var routes []routing.Route
	var rr routeRow
	for rows.Next() {
		if err := rows.StructScan(&rr); err != nil {
			return nil, pg.Error(err)
		}
		routes = append(routes, rr.route())
	}
	if err := rows.Err(); err != nil {
		return nil, pg.Error(err)
	}
	p, err := routing.NewPlan(*info, loc, routes)
	if err != nil {
		return nil, fmt.Errorf("compile route plan %s: %w", info.ID, err)
	}
	return p, nil
}
