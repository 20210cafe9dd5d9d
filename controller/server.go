// Package controller is callbridge's HTTP API: the Server, every route
// (routes.go), middleware, the OpenAPI document, and the handlers of
// accounts, callbacks, privacy numbers and /fs/dialplan. The handlers of
// rate decks and route plans are in its subpackage pricing, those of
// CDRs, usage and billing in accounting; internal/handler holds the error
// mapping and request decoding they all share. It and its subpackages are
// the only importers of gin. It does not speak SQL or ESL and runs no
// calls itself: the capabilities (callback, privacy, cdr, webhook) do,
// and it is given the stores and engines it needs through the Server's
// fields (app wires them).
package controller

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"callbridge"
	"callbridge/billing"
	"callbridge/controller/internal/handler"
	"callbridge/controller/pricing"
	"callbridge/metrics"
	"callbridge/rating"
	"callbridge/routing"

	"github.com/gin-gonic/gin"
)

// Server is the HTTP API. Set its fields, then call Handler once.
type Server struct {
	// Logger receives one line per request and every error answered 5xx.
	Logger *slog.Logger
	// Version is reported by /healthz.
	Version string
	// Accounts authenticates API keys and manages accounts.
	Accounts callbridge.AccountService
	// AdminToken authorises /v1/admin routes (Bearer token). Empty disables
	// them.
	AdminToken string
	// DB reports database health for /readyz.
	DB HealthChecker
	// Nodes reports the state of each FreeSWITCH node for /readyz; nil when
	// no node is configured.
	Nodes func() []NodeStatus
	// MaxBodyBytes caps request bodies (default 1 MiB).
	MaxBodyBytes int64
	// MaxCSVBytes caps rate-deck CSV uploads instead (default 64 MiB: a
	// 100,000-row deck is about 8 MB).
	MaxCSVBytes int64
	// MaxImports bounds the rate-deck imports running at once in the
	// process (default 2), MaxImportsPerAccount those of one account or
	// of the admin (default 1); more answer 429 with Retry-After.
	MaxImports, MaxImportsPerAccount int
	// Metrics, when set, records HTTP metrics and is served at /metrics
	// behind the admin token (unless MetricsOnOwnListener).
	Metrics *metrics.Metrics
	// MetricsOnOwnListener keeps /metrics off the API listener.
	MetricsOnOwnListener bool
	// Draining, when it returns true, makes routes that start new calls
	// answer 503 (set during graceful shutdown).
	Draining func() bool

	// privacy numbers

	// Privacy serves the number pool, bindings and /fs/dialplan; nil
	// leaves those routes out.
	Privacy *PrivacyNumbers

	// callbacks

	// Callbacks stores callbacks; nil leaves the callback routes out.
	Callbacks callbridge.CallbackService
	// CallbackEngine places callbacks in this process; nil only stores
	// them (another controller's engine places them).
	CallbackEngine CallbackControl
	// CallbackNumberRules normalise the numbers of callback requests.
	CallbackNumberRules callbridge.NumberRules
	// Webhooks lists the webhook outbox (GET /v1/webhooks); nil leaves the
	// route out.
	Webhooks callbridge.WebhookService

	// rating

	// RateDecks stores rate decks and their rates; the rating routes are
	// served when it and Decks are set.
	RateDecks pricing.RateDeckStore
	// Decks are the process's compiled rate decks, which quotes price
	// with (kept current by postgres.DeckSync).
	Decks *rating.Registry
	// DeckSync reloads a deck into Decks right after this controller's
	// API wrote it, so the next request here uses it; other controllers
	// learn of the write by LISTEN/NOTIFY. Nil leaves it to the
	// notification.
	DeckSync pricing.DeckRefresher

	// carrier routing

	// RoutePlans stores carrier route plans (*postgres.DB is one); nil
	// leaves the /v1/admin/route-plans and /v1/admin/routes routes out.
	RoutePlans pricing.RoutePlanStore
	// Plans are the process's compiled route plans (kept current by
	// postgres.PlanSync), which resolve answers from; nil loads the plan
	// from RoutePlans on each request.
	Plans *routing.Plans
	// PlanSync reloads a plan into Plans right after this controller's
	// API wrote it; nil leaves it to the notification.
	PlanSync pricing.PlanRefresher
	// GatewayHealth is the process's view of the carrier gateways
	// (switch state, breakers, capacity) that resolve reports; nil: each
	// gateway's health is unknown and it is taken as healthy.
	GatewayHealth routing.HealthSource

	// cdrs

	// CDRs lists the account's CDRs (GET /v1/cdrs, JSON or CSV); nil
	// leaves the route out.
	CDRs callbridge.CDRService
	// CDRNumberRules normalise the number filter of GET /v1/cdrs.
	CDRNumberRules callbridge.NumberRules

	// billing

	// Billing serves usage reports, invoices, balances, top-ups and job
	// runs; nil leaves those routes out.
	Billing callbridge.BillingService
	// Issuer is printed on the HTML invoices and credit notes.
	Issuer billing.Issuer
	// Now is the clock that decides whether a month is closed for
	// invoicing (nil: time.Now).
	Now func() time.Time

	// security

	// RateLimit limits requests per API key on the /v1 routes (429 with
	// Retry-After); the zero value does not limit.
	RateLimit RateLimit
	// AuthFailureLimit limits failed API-key authentications per client
	// address (the connection's; an IPv6 client by its /64): once its
	// bucket is empty, a request from that address carrying an API key
	// answers 429 with Retry-After without costing a database lookup.
	// The zero value means five a second, twenty at once; a negative
	// PerSecond turns it off.
	AuthFailureLimit RateLimit

	once    sync.Once
	handler http.Handler
}

// HealthChecker is what /readyz asks of the database.
type HealthChecker interface {
	PingContext(ctx context.Context) error
	// SchemaStatus returns the newest applied migration and whether all
	// embedded migrations are applied.
	SchemaStatus(ctx context.Context) (version int, current bool, err error)
}

// NodeStatus is one FreeSWITCH node as /readyz shows it.
type NodeStatus struct {
	Name      string `json:"name"`
	Addr      string `json:"addr"`
	State     string `json:"state"`
	Connected bool   `json:"connected"`
	// Ready: connected, and the node's commands complete (its last
	// readiness probe passed and no job timed out since); calls are
	// placed only on ready nodes. NotReady says why not.
	Ready    bool   `json:"ready"`
	NotReady string `json:"not_ready,omitempty"`
	// ProbeMS is the last passed probe's latency in milliseconds.
	ProbeMS       float64 `json:"probe_ms"`
	ProbeFailures int64   `json:"probe_failures"`
	JobTimeouts   int64   `json:"job_timeouts"`
	Redials       int64   `json:"redials"`
	Events        int64   `json:"events"`
	Calls         int     `json:"calls"`
}

// Handler returns the HTTP handler, building it on first use.
func (s *Server) Handler() http.Handler {
	s.once.Do(func() {
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
		if s.MaxBodyBytes <= 0 {
			s.MaxBodyBytes = 1 << 20
		}
		if s.MaxCSVBytes <= 0 {
			s.MaxCSVBytes = 64 << 20
		}
		if s.MaxImports <= 0 {
			s.MaxImports = 2
		}
		if s.MaxImportsPerAccount <= 0 {
			s.MaxImportsPerAccount = 1
		}
		gin.SetMode(gin.ReleaseMode)
		e := gin.New()
		e.HandleMethodNotAllowed = true
		e.ContextWithFallback = true
		e.Use(recovery(s.Logger), requestLog(s.Logger))
		if s.Metrics != nil {
			e.Use(observe(s.Metrics))
		}
		e.Use(checkInput(), limitBody(s.MaxBodyBytes, map[string]int64{pricing.CSVImportRoute: s.MaxCSVBytes, pricing.RouteImportRoute: s.MaxCSVBytes}))
		e.NoRoute(func(c *gin.Context) {
			handler.WriteError(c, callbridge.Errorf(callbridge.ENOTFOUND, "no such route"))
		})
		e.NoMethod(func(c *gin.Context) {
			c.Header("Allow", c.Writer.Header().Get("Allow"))
			c.AbortWithStatusJSON(http.StatusMethodNotAllowed, handler.ErrorBody("method_not_allowed", "method not allowed", ""))
		})
		s.routes(e)
		s.handler = e
	})
	return s.handler
}

func (s *Server) draining() bool { return s.Draining != nil && s.Draining() }

// clock returns the server's clock.
func (s *Server) clock() func() time.Time {
	if s.Now == nil {
		return time.Now
	}
	return s.Now
}
