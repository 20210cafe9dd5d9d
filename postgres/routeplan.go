package postgres

import (
	"log/slog"

	"callbridge/postgres/routeplan"
	"callbridge/routing"
)

// RoutePlanService stores carrier route plans and their routes, and reads
// them compiled (package routeplan).
type RoutePlanService = routeplan.Service

// NewRoutePlanService returns a RoutePlanService backed by db.
func NewRoutePlanService(db *DB) *RoutePlanService { return routeplan.New(db.pg) }

// RouteChannel is the LISTEN/NOTIFY channel on which every change to a
// route plan or its routes is announced with the plan's id.
const RouteChannel = routeplan.RouteChannel

// PlanSync keeps a routing.Plans equal to the route plans in the database
// and their tables fresh (package routeplan).
type PlanSync = routeplan.PlanSync

// NewPlanSync returns a PlanSync that fills plans from db's route plans
// and prices their tables with prices (nil: no buy decks).
func NewPlanSync(db *DB, plans *routing.Plans, prices routing.PriceSource, log *slog.Logger) *PlanSync {
	return routeplan.NewPlanSync(NewRoutePlanService(db), plans, prices, log)
}
