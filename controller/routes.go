package controller

import (
	"log/slog"
	"time"

	"callbridge"
	"callbridge/billing"
	"callbridge/controller/accounting"
	"callbridge/controller/pricing"
	"callbridge/rating"
	"callbridge/routing"

	"github.com/gin-gonic/gin"
)

// routes registers every route of the API; every route of callbridge is in
// this file. Handlers are functions returning gin.HandlerFunc that take
// their dependencies explicitly.
func (s *Server) routes(e *gin.Engine) {
	e.GET("/healthz", healthz(s.Version))
	e.GET("/readyz", readyz(s.DB, s.Nodes))
	e.GET("/openapi.json", openAPI())

	if s.Metrics != nil && !s.MetricsOnOwnListener {
		e.GET("/metrics", adminOnly(s.AdminToken), gin.WrapH(s.Metrics.Handler()))
	}

	admin := e.Group("/v1/admin", adminOnly(s.AdminToken))
	admin.POST("/accounts", createAccount(s.Accounts))
	admin.GET("/accounts/:id", getAccount(s.Accounts))
	admin.POST("/accounts/:id/keys", createAPIKey(s.Accounts))
	admin.DELETE("/accounts/:id/keys/:key", revokeAPIKey(s.Accounts))

	// security: one limiter, so a key's budget spans every /v1 group.
	limit := rateLimit(newLimiter(s.RateLimit, nil))
	failures := s.AuthFailureLimit
	if failures == (RateLimit{}) {
		failures = defaultAuthFailureLimit()
	}
	auth := authenticate(s.Accounts, newLimiter(failures, nil))
	v1 := e.Group("/v1", auth, limit)
	v1.GET("/account", getOwnAccount())

	// privacy numbers
	if s.Privacy != nil {
		s.Privacy.Register(e, v1)
	}

	// callbacks
	if s.Callbacks != nil {
		v1.POST("/callbacks", createCallback(s))
		v1.GET("/callbacks", listCallbacks(s))
		v1.GET("/callbacks/:id", getCallback(s))
		v1.DELETE("/callbacks/:id", cancelCallback(s))
	}
	if s.Webhooks != nil {
		v1.GET("/webhooks", listWebhooks(s))
	}

	// rating
	// Decks are stored by RateDecks; quotes price from the in-memory
	// registry. Carrier decks take the admin token, account decks an API
	// key, on the same paths.
	imports := pricing.NewImportSlots(s.MaxImportsPerAccount, s.MaxImports)
	if s.RateDecks != nil && s.Decks != nil {
		store := s.RateDecks
		if s.DeckSync != nil {
			store = pricing.RefreshingDecks{RateDeckStore: store, Sync: s.DeckSync, Log: s.Logger}
		}
		rateDeckRoutes(e.Group("/v1", adminOrAccount(s.AdminToken, auth), limit), store, s.Decks, imports)
	}

	// carrier routing
	if s.RoutePlans != nil {
		store := s.RoutePlans
		if s.PlanSync != nil {
			store = pricing.RefreshingPlans{RoutePlanStore: store, Sync: s.PlanSync, Log: s.Logger}
		}
		var prices routing.PriceSource
		if s.Decks != nil {
			prices = s.Decks
		}
		routePlanRoutes(admin, store, s.Plans, prices, s.GatewayHealth, imports)
	}

	// cdrs
	if s.CDRs != nil {
		v1.GET("/cdrs", accounting.ListCDRs(s.CDRs, s.CDRNumberRules, nil))
		admin.GET("/accounts/:id/cdrs", accounting.ListCDRs(s.CDRs, s.CDRNumberRules, s.Accounts))
	}

	// billing
	if s.Billing != nil {
		billingRoutes(e, admin, v1, s.Billing, s.Accounts, s.Issuer, s.AdminToken, s.clock())
	}
}

// Register adds the routes: the API under v1 (API-key authenticated) and
// POST /fs/dialplan on e itself, outside v1, so no API key reaches it.
func (p *PrivacyNumbers) Register(e *gin.Engine, v1 gin.IRoutes) {
	now := p.Now
	if now == nil {
		now = time.Now
	}
	logger := p.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e.POST(fsDialplanRoute, fsDialplan(&p.Dialplan, p.Lines, now, logger))
	bindings := p.Bindings
	if r, ok := p.Lines.(lineReloader); ok {
		bindings = reloadingBindings{bindings, r, logger}
	}

	v1.POST("/numbers", createNumbers(p.Numbers, p.Rules))
	v1.GET("/numbers", listNumbers(p.Numbers))
	v1.GET("/numbers/:number", getNumber(p.Numbers, p.Rules))
	v1.PATCH("/numbers/:number", updateNumber(p.Numbers, p.Rules))
	v1.DELETE("/numbers/:number", deleteNumber(p.Numbers, p.Rules))

	v1.POST("/bindings", createBinding(bindings, p.Rules, now))
	v1.GET("/bindings", listBindings(bindings, p.Rules))
	v1.GET("/bindings/:id", getBinding(bindings))
	v1.GET("/bindings/:id/events", bindingEvents(bindings))
	v1.PATCH("/bindings/:id", updateBinding(bindings, p.Calls, p.Rules, now))
	v1.DELETE("/bindings/:id", deleteBinding(bindings, p.Calls))
}

// rateDeckRoutes registers the rate-deck API on g, whose requests carry
// either the admin token or an account's API key (adminOrAccount).
// Carrier decks are the admin's; an account sees only its own decks.
func rateDeckRoutes(g *gin.RouterGroup, decks pricing.RateDeckStore, compiled *rating.Registry, imports *pricing.ImportSlots) {
	g.POST("/rate-decks", pricing.CreateRateDeck(decks))
	g.GET("/rate-decks", pricing.ListRateDecks(decks))
	g.GET("/rate-decks/:id", pricing.GetRateDeck(decks))
	g.POST("/rate-decks/:id/rates", pricing.ImportRates(decks, imports))
	g.GET("/rate-decks/:id/rates", pricing.ExportRates(decks))
	g.GET("/rates/quote", pricing.Quote(compiled))
}

// routePlanRoutes registers the route-plan API on admin (behind the
// admin token): carrier routing is the operator's.
func routePlanRoutes(admin *gin.RouterGroup, store pricing.RoutePlanStore, plans *routing.Plans, prices routing.PriceSource, health routing.HealthSource, imports *pricing.ImportSlots) {
	admin.POST("/route-plans", pricing.CreateRoutePlan(store))
	admin.GET("/route-plans", pricing.ListRoutePlans(store))
	admin.GET("/route-plans/:id", pricing.GetRoutePlan(store))
	admin.PATCH("/route-plans/:id", pricing.UpdateRoutePlan(store))
	admin.DELETE("/route-plans/:id", pricing.DeleteRoutePlan(store))
	admin.POST("/route-plans/:id/routes", pricing.ImportRoutes(store, imports))
	admin.GET("/route-plans/:id/routes", pricing.ExportRoutes(store))
	admin.GET("/routes/resolve", pricing.ResolveRoute(store, plans, prices, health))
}

// billingRoutes registers the billing API: operator routes (job runs,
// invoice runs, top-ups, billing profiles) behind the admin token, and an account's own
// usage, invoices and balance behind its API key. Top-ups take the admin
// token: a customer must not credit itself.
func billingRoutes(e *gin.Engine, admin, v1 *gin.RouterGroup, svc callbridge.BillingService, accounts callbridge.AccountService, issuer billing.Issuer, adminToken string, now func() time.Time) {
	admin.GET("/jobs", accounting.ListJobRuns(svc))
	admin.POST("/invoices", accounting.IssueInvoices(svc, now))
	admin.GET("/accounts/:id/billing", accounting.GetBillingProfile(svc))
	admin.PUT("/accounts/:id/billing", accounting.PutBillingProfile(svc))
	e.POST("/v1/accounts/:id/topups", adminOnly(adminToken), accounting.CreateTopup(svc))

	admin.GET("/accounts/:id/reports/usage", accounting.UsageReport(svc, accounts))
	admin.GET("/reports/unrated", accounting.UnratedCalls(svc))
	v1.GET("/reports/usage", accounting.UsageReport(svc, nil))
	v1.GET("/invoices", accounting.ListInvoices(svc))
	v1.GET("/invoices/:id", accounting.GetInvoice(svc, issuer))
	v1.GET("/balance", accounting.GetBalance(svc))
	v1.GET("/ledger", accounting.GetLedger(svc))
}
