package controller

import "github.com/gin-gonic/gin"

// routes registers every route of the API. Each feature adds its routes in
// its own block; handlers are functions returning gin.HandlerFunc.
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
	v1 := e.Group("/v1", authenticate(s.Accounts), limit)
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
	// The rate-deck store is the database itself (*postgres.DB implements
	// RateDeckStore); carrier decks take the admin token, account decks an
	// API key, on the same paths.
	if decks, ok := s.DB.(RateDeckStore); ok {
		rateDeckRoutes(e.Group("/v1", adminOrAccount(s.AdminToken, s.Accounts), limit), decks)
	}

	// cdrs
	if s.CDRs != nil {
		v1.GET("/cdrs", listCDRs(s.CDRs, s.CDRNumberRules))
	}

	// billing
	if s.Billing != nil {
		billingRoutes(e, admin, v1, s.Billing, s.AdminToken)
	}

	_, _ = admin, v1
}
