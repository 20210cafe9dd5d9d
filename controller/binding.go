package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"callbridge"
	"callbridge/controller/internal/handler"
	"callbridge/privacy"

	"github.com/gin-gonic/gin"
)

// Hangupper cuts the live calls of a binding (over ESL uuid_kill). It is
// wired by the server; the API uses it for ?hangup=true.
type Hangupper interface {
	// KillBindingCalls hangs up every live call tagged with bindingID and
	// returns how many it killed. EUNAVAILABLE when FreeSWITCH cannot be
	// reached.
	KillBindingCalls(ctx context.Context, bindingID string) (int, error)
}

var _ Hangupper = (*privacy.Calls)(nil)

// PrivacyNumbers holds what the privacy-number routes need: the number
// pool, the bindings, the dialplan endpoint and its index.
type PrivacyNumbers struct {
	Bindings callbridge.BindingService
	Numbers  callbridge.NumberService
	// Lines answers dialplan lookups (a *privacy.Index in production).
	Lines privacy.LineLookup
	// Calls cuts live calls for ?hangup=true; nil answers 501 to it.
	Calls Hangupper
	// Dialplan configures POST /fs/dialplan.
	Dialplan DialplanConfig
	// Rules normalise numbers given to the API.
	Rules callbridge.NumberRules
	// Now returns the current time; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// lineReloader is the part of privacy.Index that re-reads one number.
type lineReloader interface {
	Reload(ctx context.Context, x callbridge.Number) error
}

// reloadingBindings refreshes this controller's index entry for X as soon
// as a binding on X changes through this controller's API, so a call placed
// right after "201 Created" is routed by the new binding. Other controllers
// learn of the change by LISTEN/NOTIFY a few milliseconds later.
type reloadingBindings struct {
	callbridge.BindingService
	index lineReloader
	log   *slog.Logger
}

func (r reloadingBindings) reload(ctx context.Context, b *callbridge.Binding) {
	if err := r.index.Reload(ctx, b.X); err != nil {
		r.log.Warn("binding index reload failed; waiting for NOTIFY", "x", b.X, "binding", b.ID, "error", err)
	}
}

func (r reloadingBindings) CreateBinding(ctx context.Context, req *callbridge.BindingRequest) (*callbridge.Binding, error) {
	b, err := r.BindingService.CreateBinding(ctx, req)
	if err == nil {
		r.reload(ctx, b)
	}
	return b, err
}

func (r reloadingBindings) UpdateBinding(ctx context.Context, accountID, id string, u callbridge.BindingUpdate) (*callbridge.Binding, error) {
	b, err := r.BindingService.UpdateBinding(ctx, accountID, id, u)
	if err == nil {
		r.reload(ctx, b)
	}
	return b, err
}

func (r reloadingBindings) Unbind(ctx context.Context, accountID, id string) (*callbridge.Binding, error) {
	b, err := r.BindingService.Unbind(ctx, accountID, id)
	if err == nil {
		r.reload(ctx, b)
	}
	return b, err
}

// bindingRequest is the body of POST /v1/bindings.
type bindingRequest struct {
	Mode          string     `json:"mode"`
	X             string     `json:"x"`
	A             string     `json:"a"`
	B             string     `json:"b"`
	Area          string     `json:"area"`
	ExpiresAt     *time.Time `json:"expires_at"`
	TTL           *int64     `json:"ttl"` // seconds
	Record        bool       `json:"record"`
	CallerDisplay string     `json:"caller_display"`
	ExternalID    string     `json:"external_id"`
	WebhookURL    string     `json:"webhook_url"`
}

// parseNumber normalises an optional number field.
func parseNumber(rules callbridge.NumberRules, field, s string) (callbridge.Number, error) {
	if s == "" {
		return "", nil
	}
	n, err := rules.Parse(s)
	if err != nil {
		return "", callbridge.FieldError(field, "%s", callbridge.ErrorMessage(err))
	}
	return n, nil
}

// asTTLError names ttl in an error about the expiry when the client gave
// a ttl, not an expires_at: the service checks the time the ttl became.
func asTTLError(err error, ttl *int64) error {
	if ttl == nil || callbridge.ErrorField(err) != "expires_at" {
		return err
	}
	return callbridge.FieldError("ttl", "%s", callbridge.ErrorMessage(err))
}

// expiry resolves expires_at or ttl (exactly one) to a time.
func expiry(at *time.Time, ttl *int64, now time.Time, required bool) (*time.Time, error) {
	switch {
	case at != nil && ttl != nil:
		return nil, callbridge.FieldError("ttl", "give expires_at or ttl, not both")
	case at != nil:
		t := at.UTC()
		return &t, nil
	case ttl != nil:
		if *ttl <= 0 || *ttl > 10*365*24*3600 {
			return nil, callbridge.FieldError("ttl", "must be a positive number of seconds")
		}
		t := now.Add(time.Duration(*ttl) * time.Second).UTC()
		return &t, nil
	case required:
		return nil, callbridge.FieldError("expires_at", "expires_at or ttl is required")
	}
	return nil, nil
}

func createBinding(bindings callbridge.BindingService, rules callbridge.NumberRules, now func() time.Time) gin.HandlerFunc {
	return func(c *gin.Context) {
		body, err := readBody(c)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		var in bindingRequest
		if err := handler.DecodeJSONBytes(body, &in); err != nil {
			handler.WriteError(c, err)
			return
		}
		r := &callbridge.BindingRequest{
			AccountID: handler.Account(c).ID, Mode: callbridge.BindingMode(in.Mode), Area: in.Area, Record: in.Record,
			CallerDisplay: in.CallerDisplay, ExternalID: in.ExternalID, WebhookURL: in.WebhookURL,
		}
		for _, f := range []struct {
			name string
			in   string
			out  *callbridge.Number
		}{{"x", in.X, &r.X}, {"a", in.A, &r.A}, {"b", in.B, &r.B}} {
			if *f.out, err = parseNumber(rules, f.name, f.in); err != nil {
				handler.WriteError(c, err)
				return
			}
		}
		if r.B == "" {
			handler.WriteError(c, callbridge.FieldError("b", "is required"))
			return
		}
		exp, err := expiry(in.ExpiresAt, in.TTL, now(), true)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		r.ExpiresAt = *exp
		if key := c.GetHeader("Idempotency-Key"); key != "" {
			if len(key) > 255 {
				handler.WriteError(c, callbridge.FieldError("Idempotency-Key", "must have at most 255 characters"))
				return
			}
			sum := sha256.Sum256(body)
			r.IdempotencyKey, r.RequestHash = key, hex.EncodeToString(sum[:])
		}
		b, err := bindings.CreateBinding(c.Request.Context(), r)
		if err != nil {
			handler.WriteError(c, asTTLError(err, in.TTL))
			return
		}
		c.Header("Location", "/v1/bindings/"+b.ID)
		c.JSON(http.StatusCreated, b)
	}
}

func readBody(c *gin.Context) ([]byte, error) {
	if ct := c.ContentType(); ct != "" && ct != "application/json" {
		return nil, callbridge.Errorf(callbridge.EINVALID, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, callbridge.Errorf(callbridge.ETOOLARGE, "request body is larger than %d bytes", mbe.Limit)
		}
		return nil, callbridge.Errorf(callbridge.EINVALID, "cannot read request body")
	}
	return body, nil
}

func getBinding(bindings callbridge.BindingService) gin.HandlerFunc {
	return func(c *gin.Context) {
		b, err := bindings.Binding(c.Request.Context(), handler.Account(c).ID, c.Param("id"))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, b)
	}
}

func bindingEvents(bindings callbridge.BindingService) gin.HandlerFunc {
	return func(c *gin.Context) {
		evs, err := bindings.BindingEvents(c.Request.Context(), handler.Account(c).ID, c.Param("id"))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		if evs == nil {
			evs = []*callbridge.BindingEvent{}
		}
		c.JSON(http.StatusOK, gin.H{"events": evs})
	}
}

func listBindings(bindings callbridge.BindingService, rules callbridge.NumberRules) gin.HandlerFunc {
	return func(c *gin.Context) {
		f := callbridge.BindingFilter{
			ExternalID: c.Query("external_id"), Status: callbridge.BindingStatus(c.Query("status")), Cursor: c.Query("cursor"),
		}
		var err error
		if f.X, err = parseNumber(rules, "x", c.Query("x")); err != nil {
			handler.WriteError(c, err)
			return
		}
		if f.Number, err = parseNumber(rules, "number", c.Query("number")); err != nil {
			handler.WriteError(c, err)
			return
		}
		if f.Limit, err = handler.QueryLimit(c, 500); err != nil {
			handler.WriteError(c, err)
			return
		}
		bs, next, err := bindings.Bindings(c.Request.Context(), handler.Account(c).ID, f)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		if bs == nil {
			bs = []*callbridge.Binding{}
		}
		c.JSON(http.StatusOK, gin.H{"bindings": bs, "next_cursor": next})
	}
}

// bindingPatch is the body of PATCH /v1/bindings/{id}.
type bindingPatch struct {
	A         *string    `json:"a"`
	B         *string    `json:"b"`
	ExpiresAt *time.Time `json:"expires_at"`
	TTL       *int64     `json:"ttl"`
	Record    *bool      `json:"record"`
}

// wantHangup reads ?hangup=true and refuses it up front when no Hangupper
// is wired, before anything changes.
func wantHangup(c *gin.Context, calls Hangupper) (bool, error) {
	s := c.Query("hangup")
	if s == "" {
		return false, nil
	}
	h, err := strconv.ParseBool(s)
	if err != nil {
		return false, callbridge.FieldError("hangup", "must be true or false")
	}
	if h && calls == nil {
		return false, callbridge.Errorf(callbridge.ENOTIMPLEMENTED, "hanging up live calls is not configured")
	}
	return h, nil
}

// hangup kills the binding's calls after a change has committed. The
// change stands even if this fails; the answer says so.
func hangup(c *gin.Context, calls Hangupper, b *callbridge.Binding) {
	n, err := calls.KillBindingCalls(c.Request.Context(), b.ID)
	if err != nil {
		handler.WriteError(c, err)
		return
	}
	c.Header("X-Calls-Hung-Up", strconv.Itoa(n))
	c.JSON(http.StatusOK, b)
}

func updateBinding(bindings callbridge.BindingService, calls Hangupper, rules callbridge.NumberRules, now func() time.Time) gin.HandlerFunc {
	return func(c *gin.Context) {
		h, err := wantHangup(c, calls)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		var in bindingPatch
		if err := handler.DecodeJSON(c, &in); err != nil {
			handler.WriteError(c, err)
			return
		}
		var u callbridge.BindingUpdate
		for _, f := range []struct {
			name string
			in   *string
			out  **callbridge.Number
		}{{"a", in.A, &u.A}, {"b", in.B, &u.B}} {
			if f.in == nil {
				continue
			}
			n, err := rules.Parse(*f.in)
			if err != nil {
				handler.WriteError(c, callbridge.FieldError(f.name, "%s", callbridge.ErrorMessage(err)))
				return
			}
			*f.out = &n
		}
		if u.ExpiresAt, err = expiry(in.ExpiresAt, in.TTL, now(), false); err != nil {
			handler.WriteError(c, err)
			return
		}
		u.Record = in.Record
		b, err := bindings.UpdateBinding(c.Request.Context(), handler.Account(c).ID, c.Param("id"), u)
		if err != nil {
			handler.WriteError(c, asTTLError(err, in.TTL))
			return
		}
		if h {
			hangup(c, calls, b)
			return
		}
		c.JSON(http.StatusOK, b)
	}
}

func deleteBinding(bindings callbridge.BindingService, calls Hangupper) gin.HandlerFunc {
	return func(c *gin.Context) {
		h, err := wantHangup(c, calls)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		b, err := bindings.Unbind(c.Request.Context(), handler.Account(c).ID, c.Param("id"))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		if h {
			hangup(c, calls, b)
			return
		}
		c.JSON(http.StatusOK, b)
	}
}

// jsonKeys returns the top-level keys of a JSON object, or nil.
func jsonKeys(body []byte) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return nil
	}
	return m
}
