package pricing

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"callbridge"
	"callbridge/controller/internal/handler"
	"callbridge/rating"
	"callbridge/routing"

	"github.com/gin-gonic/gin"
)

// RoutePlanStore is what the route-plan routes need of the database
// (*postgres.DB is one).
type RoutePlanStore interface {
	// CreateRoutePlan stores a plan and fills in its ID, Version,
	// CreatedAt and defaulted settings. EINVALID, ECONFLICT.
	CreateRoutePlan(ctx context.Context, p *routing.PlanInfo) error
	// RoutePlans lists every plan.
	RoutePlans(ctx context.Context) ([]*routing.PlanInfo, error)
	// RoutePlan returns a plan. ENOTFOUND.
	RoutePlan(ctx context.Context, id string) (*routing.PlanInfo, error)
	// UpdateRoutePlan changes the settings u gives, checked as
	// CreateRoutePlan checks them, and returns the plan. ENOTFOUND,
	// EINVALID, ECONFLICT.
	UpdateRoutePlan(ctx context.Context, id string, u routing.PlanUpdate) (*routing.PlanInfo, error)
	// DeleteRoutePlan deletes a plan and its routes. ENOTFOUND.
	DeleteRoutePlan(ctx context.Context, id string) error
	// ImportRoutes stores the routes of src all or none, replacing the
	// plan's routes when replace is set, reading src as it goes.
	// EINVALID (a *rating.CSVError for bad rows), ENOTFOUND, ECONFLICT;
	// a failure to read src is returned wrapped.
	ImportRoutes(ctx context.Context, planID string, src routing.RouteSource, replace bool) (*routing.PlanInfo, error)
	// EachRoute calls fn with each route of a plan, one at a time.
	// ENOTFOUND.
	EachRoute(ctx context.Context, planID string, fn func(*routing.Route) error) error
	// LoadPlan reads and compiles a plan. ENOTFOUND.
	LoadPlan(ctx context.Context, id string) (*routing.Plan, error)
	// LoadPlanFor reads and compiles the plan of an account's calls (its
	// own, else the default; "" for the default). ENOTFOUND.
	LoadPlanFor(ctx context.Context, accountID string) (*routing.Plan, error)
}

// PlanRefresher reloads one plan into the process's set
// (postgres.PlanSync).
type PlanRefresher interface {
	// Refresh reads plan id again, or drops it when it no longer exists.
	Refresh(ctx context.Context, id string) error
}

// RefreshingPlans reloads a plan into this controller's set as soon as
// its API wrote it, as RefreshingDecks does for decks.
type RefreshingPlans struct {
	RoutePlanStore
	Sync PlanRefresher
	Log  *slog.Logger
}

func (r RefreshingPlans) refresh(ctx context.Context, id string) {
	if err := r.Sync.Refresh(ctx, id); err != nil {
		r.Log.Warn("route plan reload failed; waiting for NOTIFY", "plan", id, "error", err)
	}
}

func (r RefreshingPlans) CreateRoutePlan(ctx context.Context, p *routing.PlanInfo) error {
	err := r.RoutePlanStore.CreateRoutePlan(ctx, p)
	if err == nil {
		r.refresh(ctx, p.ID)
	}
	return err
}

func (r RefreshingPlans) UpdateRoutePlan(ctx context.Context, id string, u routing.PlanUpdate) (*routing.PlanInfo, error) {
	p, err := r.RoutePlanStore.UpdateRoutePlan(ctx, id, u)
	if err == nil {
		r.refresh(ctx, id)
	}
	return p, err
}

func (r RefreshingPlans) DeleteRoutePlan(ctx context.Context, id string) error {
	err := r.RoutePlanStore.DeleteRoutePlan(ctx, id)
	if err == nil {
		r.refresh(ctx, id)
	}
	return err
}

func (r RefreshingPlans) ImportRoutes(ctx context.Context, planID string, src routing.RouteSource, replace bool) (*routing.PlanInfo, error) {
	info, err := r.RoutePlanStore.ImportRoutes(ctx, planID, src, replace)
	if err == nil {
		r.refresh(ctx, planID)
	}
	return info, err
}

// RouteImportRoute is the route whose body may be as large as
// Server.MaxCSVBytes, as a rate deck's.
const RouteImportRoute = "/v1/admin/route-plans/:id/routes"

// CreateRoutePlan answers POST /v1/admin/route-plans with a
// routing.PlanInfo body (without id, version and created_at).
func CreateRoutePlan(store RoutePlanStore) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in struct {
			AccountID        string   `json:"account_id"`
			Default          bool     `json:"default"`
			Name             string   `json:"name"`
			TimeZone         string   `json:"time_zone"`
			Currency         string   `json:"currency"`
			MaxAttempts      int      `json:"max_attempts"`
			PostDialMS       int64    `json:"post_dial_ms"`
			FailoverCauses   []string `json:"failover_causes"`
			FailoverSIPCodes []int    `json:"failover_sip_codes"`
		}
		if err := handler.DecodeJSON(c, &in); err != nil {
			handler.WriteError(c, err)
			return
		}
		p := &routing.PlanInfo{
			AccountID: in.AccountID, Default: in.Default, Name: in.Name, TimeZone: in.TimeZone, Currency: in.Currency,
			MaxAttempts: in.MaxAttempts, PostDialMS: in.PostDialMS,
			FailoverCauses: in.FailoverCauses, FailoverSIPCodes: in.FailoverSIPCodes,
		}
		if err := store.CreateRoutePlan(c.Request.Context(), p); err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusCreated, p)
	}
}

// ListRoutePlans answers GET /v1/admin/route-plans.
func ListRoutePlans(store RoutePlanStore) gin.HandlerFunc {
	return func(c *gin.Context) {
		list, err := store.RoutePlans(c.Request.Context())
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{"route_plans": list})
	}
}

// GetRoutePlan answers GET /v1/admin/route-plans/{id}.
func GetRoutePlan(store RoutePlanStore) gin.HandlerFunc {
	return func(c *gin.Context) {
		p, err := store.RoutePlan(c.Request.Context(), c.Param("id"))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, p)
	}
}

// routePlanPatch is the body of PATCH /v1/admin/route-plans/{id}: the
// fields of a create, each optional (absent or null: kept).
type routePlanPatch struct {
	AccountID        *string   `json:"account_id"`
	Default          *bool     `json:"default"`
	Name             *string   `json:"name"`
	TimeZone         *string   `json:"time_zone"`
	Currency         *string   `json:"currency"`
	MaxAttempts      *int      `json:"max_attempts"`
	PostDialMS       *int64    `json:"post_dial_ms"`
	FailoverCauses   *[]string `json:"failover_causes"`
	FailoverSIPCodes *[]int    `json:"failover_sip_codes"`
}

// UpdateRoutePlan answers PATCH /v1/admin/route-plans/{id} with the
// changed plan: the settings the body gives replace the plan's, checked
// as a create's are ("account_id": "" makes it no account's; 0 and []
// mean the defaults). Every controller routes with them from its next
// call (RefreshingPlans here, LISTEN/NOTIFY elsewhere).
func UpdateRoutePlan(store RoutePlanStore) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in routePlanPatch
		if err := handler.DecodeJSON(c, &in); err != nil {
			handler.WriteError(c, err)
			return
		}
		p, err := store.UpdateRoutePlan(c.Request.Context(), c.Param("id"), routing.PlanUpdate(in))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, p)
	}
}

// DeleteRoutePlan answers DELETE /v1/admin/route-plans/{id} with 204.
func DeleteRoutePlan(store RoutePlanStore) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := store.DeleteRoutePlan(c.Request.Context(), c.Param("id")); err != nil {
			handler.WriteError(c, err)
			return
		}
		c.Status(http.StatusNoContent)
	}
}

// ImportRoutes answers POST /v1/admin/route-plans/{id}/routes with a
// text/csv body in routing.Columns' format; ?mode=append (the default)
// adds the rows, ?mode=replace replaces every route of the plan. A bad
// file is refused whole (400) with its bad rows. The body is streamed
// into the database, in constant memory; imports share the rate decks'
// slots (429 beyond).
func ImportRoutes(store RoutePlanStore, slots *ImportSlots) gin.HandlerFunc {
	return func(c *gin.Context) {
		replace, ok := importMode(c)
		if !ok {
			return
		}
		if _, err := store.RoutePlan(c.Request.Context(), c.Param("id")); err != nil {
			handler.WriteError(c, err)
			return
		}
		release, err := slots.acquire(handler.AdminOwner)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		defer release()
		src := &countingRoutes{RouteSource: routing.NewRouteReader(c.Request.Body)}
		info, err := store.ImportRoutes(c.Request.Context(), c.Param("id"), src, replace)
		if writeImportError(c, err) {
			return
		}
		c.JSON(http.StatusOK, gin.H{"route_plan": info, "imported": src.n, "replaced": replace})
	}
}

// writeImportError answers a failed CSV import of rates or routes: 413
// for a body over the limit, 400 with every bad row for a refused file.
// It reports whether err was one (nil is not).
func writeImportError(c *gin.Context, err error) bool {
	var ce *rating.CSVError
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
		return false
	case errors.As(err, &mbe):
		handler.WriteError(c, callbridge.Errorf(callbridge.ETOOLARGE, "request body is larger than %d bytes", mbe.Limit))
	case errors.As(err, &ce):
		var body csvErrorJSON
		body.Error.Code = callbridge.EINVALID
		body.Error.Message = strconv.Itoa(ce.Bad()) + " bad row(s); nothing was imported"
		if ce.Omitted > 0 {
			body.Error.Message += "; the first " + strconv.Itoa(len(ce.Rows)) + " are listed"
		}
		body.Error.Rows = ce.Rows
		c.AbortWithStatusJSON(http.StatusBadRequest, body)
	default:
		handler.WriteError(c, err)
	}
	return true
}

// countingRoutes counts the routes read from a source.
type countingRoutes struct {
	routing.RouteSource
	n int
}

func (s *countingRoutes) Next() bool {
	ok := s.RouteSource.Next()
	if ok {
		s.n++
	}
	return ok
}

// ExportRoutes answers GET /v1/admin/route-plans/{id}/routes: CSV,
// streamed row by row, when the client accepts text/csv, else JSON.
func ExportRoutes(store RoutePlanStore) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		p, err := store.RoutePlan(ctx, c.Param("id"))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		if strings.Contains(c.GetHeader("Accept"), "text/csv") {
			c.Header("Content-Type", "text/csv; charset=utf-8")
			c.Header("Content-Disposition", `attachment; filename="routes-`+p.ID+`.csv"`)
			c.Status(http.StatusOK)
			w := routing.NewCSVWriter(c.Writer)
			err := store.EachRoute(ctx, p.ID, w.Write)
			if err == nil {
				err = w.Flush()
			}
			if err != nil {
				c.Error(err) // the status is sent; the client sees a short file
			}
			return
		}
		routes := []routing.Route{}
		if err := store.EachRoute(ctx, p.ID, func(r *routing.Route) error {
			routes = append(routes, *r)
			return nil
		}); err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{"route_plan": p, "routes": routes})
	}
}

// resolveJSON is the answer of GET /v1/admin/routes/resolve.
type resolveJSON struct {
	Plan    planRef             `json:"plan"`
	Number  string              `json:"number"`
	At      time.Time           `json:"at"`
	Causes  []string            `json:"failover_causes"`
	Codes   []int               `json:"failover_sip_codes"`
	Resolve *routing.Resolution `json:"resolution"`
}

type planRef struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version int64  `json:"version"`
}

// ResolveRoute answers GET /v1/admin/routes/resolve?number=&at=
// [&account_id=|&plan_id=]: the gateways a call to number at at (default
// now) would try, in order, with their buy prices, and every gateway of
// the matched route with why it was kept or skipped. The plan is the
// account's (its own, else the default), the default without account_id,
// or plan_id's. Health is the process's view (unknown without one).
func ResolveRoute(store RoutePlanStore, plans *routing.Plans, prices routing.PriceSource, health routing.HealthSource) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		number, at, ok := numberAt(c)
		if !ok {
			return
		}
		accountID, planID := c.Query("account_id"), c.Query("plan_id")
		if accountID != "" && planID != "" {
			handler.WriteError(c, callbridge.FieldError("plan_id", "give account_id or plan_id, not both"))
			return
		}
		if accountID != "" && !callbridge.IsUUID(accountID) {
			handler.WriteError(c, callbridge.FieldError("account_id", "must be an account id"))
			return
		}
		var plan *routing.Plan
		var err error
		switch {
		case plans != nil && planID != "":
			plan = plans.Plan(planID)
		case plans != nil:
			plan = plans.For(accountID)
		case planID != "":
			plan, err = store.LoadPlan(ctx, planID)
		default:
			plan, err = store.LoadPlanFor(ctx, accountID)
		}
		if err == nil && plan == nil {
			err = callbridge.Errorf(callbridge.ENOTFOUND, "route plan not found")
		}
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		res := &routing.Resolution{Candidates: make([]routing.Candidate, 0, routing.MaxGateways)}
		plan.Resolve(res, number, at, routing.Sources{Prices: prices, Health: health, Now: time.Now()})
		info := plan.Info()
		policy := plan.Policy()
		c.JSON(http.StatusOK, resolveJSON{
			Plan:   planRef{ID: info.ID, Name: info.Name, Version: info.Version},
			Number: number.String(), At: at,
			Causes: policy.Causes(), Codes: policy.SIPCodes(),
			Resolve: res,
		})
	}
}
