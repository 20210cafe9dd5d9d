package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"

	"callbridge"
	"callbridge/controller/internal/handler"

	"github.com/gin-gonic/gin"
)

// CallbackControl is what the callback API asks of the engine
// (*callback.Engine implements it).
type CallbackControl interface {
	// Wake makes the engine look for queued callbacks now.
	Wake()
	// Cancel hangs up a live callback whose cancellation was recorded.
	Cancel(ctx context.Context, cb *callbridge.Callback)
	// PromptAllowed reports whether a request may name the prompt.
	PromptAllowed(name string) bool
	// Admit reports whether a new callback may be queued: nil, or an
	// error (with a RetryAfter) once the queue is past what the nodes
	// place.
	Admit(ctx context.Context) error
}

// callbackRequest is the body of POST /v1/callbacks. Optional fields are
// pointers so that defaults apply only when a field is absent.
type callbackRequest struct {
	A            string          `json:"a"`
	B            string          `json:"b"`
	CallerIDA    *string         `json:"caller_id_a,omitempty"`
	CallerIDB    *string         `json:"caller_id_b,omitempty"`
	RingTimeoutA *int            `json:"ring_timeout_a,omitempty"`
	RingTimeoutB *int            `json:"ring_timeout_b,omitempty"`
	MaxDuration  *int            `json:"max_duration,omitempty"`
	Prompt       *string         `json:"prompt,omitempty"`
	Record       bool            `json:"record,omitempty"`
	WebhookURL   string          `json:"webhook_url,omitempty"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
}

// maxIdempotencyKey is the longest Idempotency-Key accepted.
const maxIdempotencyKey = 255

// toCallbackRequest validates req for account a and fills the defaults:
// caller id A is the account's service number; caller id B is A's number,
// or the service number when the account hides caller ids.
func toCallbackRequest(req *callbackRequest, a *callbridge.Account, rules callbridge.NumberRules, engine CallbackControl) (*callbridge.CallbackRequest, error) {
	num := func(field, s string) (callbridge.Number, error) {
		if s == "" {
			return "", callbridge.FieldError(field, "is required")
		}
		n, err := rules.Parse(s)
		if err != nil {
			return "", callbridge.FieldError(field, "%s", callbridge.ErrorMessage(err))
		}
		return n, nil
	}
	r := &callbridge.CallbackRequest{AccountID: a.ID, Record: req.Record, WebhookURL: req.WebhookURL, Metadata: req.Metadata}
	var err error
	if r.A, err = num("a", req.A); err != nil {
		return nil, err
	}
	if r.B, err = num("b", req.B); err != nil {
		return nil, err
	}
	r.CallerIDA = a.ServiceNumber
	if req.CallerIDA != nil {
		if r.CallerIDA, err = num("caller_id_a", *req.CallerIDA); err != nil {
			return nil, err
		}
	}
	r.CallerIDB = r.A
	if a.HideCallerID {
		r.CallerIDB = a.ServiceNumber
	}
	if req.CallerIDB != nil {
		if r.CallerIDB, err = num("caller_id_b", *req.CallerIDB); err != nil {
			return nil, err
		}
	}
	seconds := func(p *int, def time.Duration) int {
		if p == nil {
			return int(def / time.Second)
		}
		return *p
	}
	r.RingTimeoutA = seconds(req.RingTimeoutA, callbridge.DefaultRingTimeout)
	r.RingTimeoutB = seconds(req.RingTimeoutB, callbridge.DefaultRingTimeout)
	r.MaxDuration = seconds(req.MaxDuration, callbridge.DefaultMaxDuration)
	r.Prompt = callbridge.PromptNone
	if req.Prompt != nil {
		r.Prompt = *req.Prompt
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	allowed := r.Prompt == callbridge.PromptNone || r.Prompt == callbridge.PromptRingback
	if engine != nil {
		allowed = engine.PromptAllowed(r.Prompt)
	}
	if !allowed {
		return nil, callbridge.FieldError("prompt", "is not none, ringback or a sound of the allow-list")
	}
	return r, nil
}

// requestHash identifies a request for idempotency: the SHA-256 of its
// canonical JSON, so formatting and field order do not matter.
func requestHash(req *callbackRequest) string {
	canon := *req
	if len(canon.Metadata) > 0 {
		var m any
		if json.Unmarshal(canon.Metadata, &m) == nil {
			canon.Metadata, _ = json.Marshal(m)
		}
	}
	b, _ := json.Marshal(&canon)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// createCallback stores a callback and answers 202 before anything is
// dialled; the engine places it.
func createCallback(s *Server) gin.HandlerFunc {
	return func(c *gin.Context) {
		if s.draining() {
			handler.WriteError(c, callbridge.Errorf(callbridge.EUNAVAILABLE, "this controller is shutting down"))
			return
		}
		key := c.GetHeader("Idempotency-Key")
		if len(key) > maxIdempotencyKey {
			handler.WriteError(c, callbridge.FieldError("Idempotency-Key", "must have at most %d characters", maxIdempotencyKey))
			return
		}
		var req callbackRequest
		if err := handler.DecodeJSON(c, &req); err != nil {
			handler.WriteError(c, err)
			return
		}
		r, err := toCallbackRequest(&req, handler.Account(c), s.CallbackNumberRules, s.CallbackEngine)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		if key != "" {
			r.IdempotencyKey, r.RequestHash = key, requestHash(&req)
		}
		if s.CallbackEngine != nil {
			if err := s.CallbackEngine.Admit(c.Request.Context()); err != nil {
				handler.WriteError(c, err)
				return
			}
		}
		cb, created, err := s.Callbacks.CreateCallback(c.Request.Context(), r)
		if err != nil {
			if callbridge.ErrorCode(err) == callbridge.ERATELIMIT {
				err = &callbridge.RetryAfter{Seconds: 5, Err: err}
			}
			handler.WriteError(c, err)
			return
		}
		if created && s.CallbackEngine != nil {
			s.CallbackEngine.Wake()
		}
		c.Header("Location", "/v1/callbacks/"+cb.ID)
		c.JSON(http.StatusAccepted, cb)
	}
}

func getCallback(s *Server) gin.HandlerFunc {
	return func(c *gin.Context) {
		cb, err := s.Callbacks.Callback(c.Request.Context(), handler.Account(c).ID, c.Param("id"))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, cb)
	}
}

func listCallbacks(s *Server) gin.HandlerFunc {
	return func(c *gin.Context) {
		f := callbridge.CallbackFilter{Status: callbridge.CallbackStatus(c.Query("status")), Cursor: c.Query("cursor")}
		var err error
		if f.Limit, err = handler.QueryLimit(c, 500); err != nil {
			handler.WriteError(c, err)
			return
		}
		if v := c.Query("since"); v != "" {
			if f.Since, err = time.Parse(time.RFC3339Nano, v); err != nil {
				handler.WriteError(c, callbridge.FieldError("since", "must be an RFC 3339 time"))
				return
			}
		}
		cbs, next, err := s.Callbacks.Callbacks(c.Request.Context(), handler.Account(c).ID, f)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		if cbs == nil {
			cbs = []*callbridge.Callback{}
		}
		c.JSON(http.StatusOK, gin.H{"callbacks": cbs, "next_cursor": next})
	}
}

// cancelCallback cancels a queued callback or hangs up a live one; it is
// idempotent and answers with the callback as it stands.
func cancelCallback(s *Server) gin.HandlerFunc {
	return func(c *gin.Context) {
		cb, err := s.Callbacks.CancelCallback(c.Request.Context(), handler.Account(c).ID, c.Param("id"))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		if cb.Status.Live() && s.CallbackEngine != nil {
			s.CallbackEngine.Cancel(c.Request.Context(), cb)
		}
		c.JSON(http.StatusOK, cb)
	}
}

// listWebhooks lists the account's webhook outbox; status=dead shows the
// deliveries that were given up.
func listWebhooks(s *Server) gin.HandlerFunc {
	return func(c *gin.Context) {
		f := callbridge.WebhookFilter{Status: callbridge.WebhookStatus(c.Query("status")), Cursor: c.Query("cursor")}
		if id := c.Query("callback_id"); id != "" {
			f.Key = "callback:" + id
		}
		var err error
		if f.Limit, err = handler.QueryLimit(c, 500); err != nil {
			handler.WriteError(c, err)
			return
		}
		ws, next, err := s.Webhooks.Webhooks(c.Request.Context(), handler.Account(c).ID, f)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		if ws == nil {
			ws = []*callbridge.Webhook{}
		}
		c.JSON(http.StatusOK, gin.H{"webhooks": ws, "next_cursor": next})
	}
}
