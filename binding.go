package callbridge

import (
	"context"
	"net/url"
	"strings"
	"time"
)

// BindingMode says how a binding routes calls to its virtual number X.
type BindingMode string

// Binding modes.
const (
	// ModeXB routes every caller of X to B. An X in XB use carries exactly
	// one active binding.
	ModeXB BindingMode = "XB"
	// ModeAXB routes A to B and B to A, each seeing X. An X may carry many
	// AXB pairs as long as no party number is in two of them.
	ModeAXB BindingMode = "AXB"
)

// BindingStatus is the life-cycle state of a binding:
// binding → active → unbinding → unbound, or active → expired.
type BindingStatus string

// Binding states.
const (
	StatusBinding   BindingStatus = "binding"   // being created
	StatusActive    BindingStatus = "active"    // routes calls until ExpiresAt
	StatusUnbinding BindingStatus = "unbinding" // being removed
	StatusUnbound   BindingStatus = "unbound"   // removed by the account
	StatusExpired   BindingStatus = "expired"   // reached ExpiresAt
)

// Directions of a binding call, the values of VarDirection.
const (
	DirectionAToB   = "a_to_b"   // AXB: A called X and reaches B
	DirectionBToA   = "b_to_a"   // AXB: B called X and reaches A
	DirectionAnyToB = "any_to_b" // XB: anyone called X and reaches B
)

// Caller-id presentation of AXB bindings (Binding.CallerDisplay).
const (
	// DisplayX shows X to the called party: neither side learns the other's
	// number. It is the default.
	DisplayX = "x"
	// DisplayCaller shows the caller's own number to the called party; only
	// the privacy of the called party is kept.
	DisplayCaller = "caller"
)

// Channel variables set on binding calls besides those of vars.go.
const (
	// VarRefusal names why a call to X was refused (a dialplan reason such
	// as "not_a_party"); it is set only on refused calls.
	VarRefusal = "callbridge_refusal"
	// VarExternalID carries the account's own reference of the binding.
	VarExternalID = "callbridge_external_id"
)

// MinBindingTTL is the shortest life a binding may be created or extended
// with: shorter ones would expire before a caller could use them.
const MinBindingTTL = 60 * time.Second

// Binding ties a virtual number X to one (XB) or two (AXB) real numbers for
// a limited time.
type Binding struct {
	ID        string        `json:"id" db:"id"`
	AccountID string        `json:"account_id" db:"account_id"`
	Mode      BindingMode   `json:"mode" db:"mode"`
	X         Number        `json:"x" db:"x"`
	A         Number        `json:"a,omitempty" db:"a"` // empty for XB
	B         Number        `json:"b" db:"b"`
	Status    BindingStatus `json:"status" db:"status"`
	ExpiresAt time.Time     `json:"expires_at" db:"expires_at"`
	// Record asks FreeSWITCH to record every call on the binding.
	Record bool `json:"record" db:"record"`
	// CallerDisplay is DisplayX or DisplayCaller (AXB only).
	CallerDisplay string `json:"caller_display" db:"caller_display"`
	// ExternalID is the account's own reference, unique per account among
	// active bindings.
	ExternalID string `json:"external_id,omitempty" db:"external_id"`
	// WebhookURL receives call events of the binding.
	WebhookURL string    `json:"webhook_url,omitempty" db:"webhook_url"`
	CreatedAt  time.Time `json:"created_at" db:"created_at"`
	UpdatedAt  time.Time `json:"updated_at" db:"updated_at"`
}

// Routable reports whether b routes calls at now: it is active and now is
// strictly before ExpiresAt. At ExpiresAt itself the binding routes nothing.
func (b *Binding) Routable(now time.Time) bool {
	return b.Status == StatusActive && now.Before(b.ExpiresAt)
}

// Validate checks the fields a stored binding must have consistent. It
// returns an EINVALID *Error naming the field.
func (b *Binding) Validate() error {
	switch b.Mode {
	case ModeXB:
		if b.A != "" {
			return FieldError("a", "must be empty for mode XB")
		}
	case ModeAXB:
		if err := b.A.Validate(); err != nil {
			return FieldError("a", "%s", ErrorMessage(err))
		}
		if b.A == b.B {
			return FieldError("a", "must differ from b")
		}
	default:
		return FieldError("mode", "must be XB or AXB")
	}
	if err := b.B.Validate(); err != nil {
		return FieldError("b", "%s", ErrorMessage(err))
	}
	if err := b.X.Validate(); err != nil {
		return FieldError("x", "%s", ErrorMessage(err))
	}
	if b.X == b.A || b.X == b.B {
		return FieldError("x", "must differ from the parties")
	}
	switch b.CallerDisplay {
	case DisplayX:
	case DisplayCaller:
		if b.Mode != ModeAXB {
			return FieldError("caller_display", "is only for mode AXB")
		}
	default:
		return FieldError("caller_display", "must be %q or %q", DisplayX, DisplayCaller)
	}
	if err := ValidateExternalID(b.ExternalID); err != nil {
		return err
	}
	if err := ValidateWebhookURL(b.WebhookURL); err != nil {
		return err
	}
	if b.ExpiresAt.IsZero() {
		return FieldError("expires_at", "is required")
	}
	return nil
}

// ValidateExternalID checks an account's reference: up to 128 characters
// from [A-Za-z0-9._:-]. The charset keeps it safe to carry in a channel
// variable, a CDR and a webhook. It returns an EINVALID *Error.
func ValidateExternalID(s string) error {
	if len(s) > 128 {
		return FieldError("external_id", "must have at most 128 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return FieldError("external_id", "may contain only letters, digits, '.', '_', ':' and '-'")
		}
	}
	return nil
}

// ValidateWebhookURL checks an optional absolute http or https URL of at
// most 2048 bytes. It returns an EINVALID *Error.
func ValidateWebhookURL(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > 2048 {
		return FieldError("webhook_url", "must have at most 2048 characters")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(s, " \t\r\n") {
		return FieldError("webhook_url", "must be an absolute http or https URL")
	}
	return nil
}

// Party reports which side of b the number n is: "a", "b", or "" when n is
// not a party.
func (b *Binding) Party(n Number) string {
	switch {
	case n == "":
		return ""
	case b.Mode == ModeAXB && n == b.A:
		return "a"
	case n == b.B:
		return "b"
	}
	return ""
}

// BindingEvent records one state change of a binding.
type BindingEvent struct {
	ID        int64         `json:"id" db:"id"`
	BindingID string        `json:"binding_id" db:"binding_id"`
	From      BindingStatus `json:"from,omitempty" db:"from_status"`
	To        BindingStatus `json:"to" db:"to_status"`
	// Detail says why: "created", "unbind", "expired", or for an update
	// that kept the status "updated: " and what changed ("a", "b",
	// "record", "expires_at=<new expiry>").
	Detail string    `json:"detail" db:"detail"`
	At     time.Time `json:"at" db:"at"`
}

// VirtualNumber is an X number of an account's pool.
type VirtualNumber struct {
	Number    Number `json:"number" db:"number"`
	AccountID string `json:"account_id" db:"account_id"`
	// Gateway is the FreeSWITCH sofia gateway of the carrier that carries
	// the number; calls on bindings of X leave through it.
	Gateway string `json:"gateway" db:"gateway"`
	// Area is a city or region tag used to prefer numbers when allocating.
	Area      string    `json:"area" db:"area"`
	Labels    []string  `json:"labels" db:"-"`
	Enabled   bool      `json:"enabled" db:"enabled"`
	CreatedAt time.Time `json:"created_at" db:"created_at"`
	UpdatedAt time.Time `json:"updated_at" db:"updated_at"`
}

// ValidateGateway checks a sofia gateway name: 1 to 64 characters from
// [A-Za-z0-9._-], so it can be placed in a dial string as is. It returns
// an EINVALID *Error.
func ValidateGateway(s string) error {
	if len(s) < 1 || len(s) > 64 {
		return FieldError("gateway", "must have 1 to 64 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return FieldError("gateway", "may contain only letters, digits, '.', '_' and '-'")
		}
	}
	return nil
}

// Validate checks n. It returns an EINVALID *Error naming the field.
func (n *VirtualNumber) Validate() error {
	if err := n.Number.Validate(); err != nil {
		return FieldError("number", "%s", ErrorMessage(err))
	}
	if err := ValidateGateway(n.Gateway); err != nil {
		return err
	}
	if len(n.Area) > 64 {
		return FieldError("area", "must have at most 64 characters")
	}
	if err := CheckText("area", n.Area); err != nil {
		return err
	}
	if len(n.Labels) > 32 {
		return FieldError("labels", "at most 32 labels")
	}
	for _, l := range n.Labels {
		if l == "" || len(l) > 64 {
			return FieldError("labels", "each label must have 1 to 64 characters")
		}
		if err := CheckText("labels", l); err != nil {
			return err
		}
	}
	return nil
}

// BindingRequest asks for a new binding. X empty means: allocate one from
// the account's pool, preferring Area.
type BindingRequest struct {
	AccountID     string
	Mode          BindingMode
	X             Number
	A             Number
	B             Number
	Area          string
	ExpiresAt     time.Time
	Record        bool
	CallerDisplay string
	ExternalID    string
	WebhookURL    string
	// IdempotencyKey, when set, makes a repeated request with the same key
	// and RequestHash return the first binding; a different hash is a
	// conflict.
	IdempotencyKey string
	RequestHash    string
}

// Binding returns the binding r asks for, not yet stored: status
// StatusBinding, X as requested (possibly empty), CallerDisplay defaulted.
func (r *BindingRequest) Binding() *Binding {
	b := &Binding{
		AccountID: r.AccountID, Mode: r.Mode, X: r.X, A: r.A, B: r.B,
		Status: StatusBinding, ExpiresAt: r.ExpiresAt.UTC(), Record: r.Record,
		CallerDisplay: r.CallerDisplay, ExternalID: r.ExternalID, WebhookURL: r.WebhookURL,
	}
	if b.CallerDisplay == "" {
		b.CallerDisplay = DisplayX
	}
	return b
}

// Validate checks r at now: the binding it asks for must be valid (X may
// be empty, to be allocated) and expire between MinBindingTTL and maxTTL
// from now. It returns an EINVALID *Error naming the field.
func (r *BindingRequest) Validate(now time.Time, maxTTL time.Duration) error {
	b := r.Binding()
	if b.X == "" {
		b.X = "1000000" // placeholder: only the other fields are checked
		if b.A == b.X || b.B == b.X {
			b.X = "1000001"
		}
	}
	if err := b.Validate(); err != nil {
		return err
	}
	if len(r.Area) > 64 {
		return FieldError("area", "must have at most 64 characters")
	}
	if err := CheckText("area", r.Area); err != nil {
		return err
	}
	if len(r.IdempotencyKey) > 255 {
		return FieldError("idempotency_key", "must have at most 255 characters")
	}
	return ValidateExpiry(r.ExpiresAt, now, maxTTL)
}

// ValidateExpiry checks that expiresAt lies between MinBindingTTL and
// maxTTL after now. It returns an EINVALID *Error.
func ValidateExpiry(expiresAt, now time.Time, maxTTL time.Duration) error {
	if expiresAt.Before(now.Add(MinBindingTTL)) {
		return FieldError("expires_at", "must be at least %s ahead", MinBindingTTL)
	}
	if maxTTL > 0 && expiresAt.After(now.Add(maxTTL)) {
		return FieldError("expires_at", "must be at most %s ahead", maxTTL)
	}
	return nil
}

// BindingUpdate changes an active binding; nil fields are left alone.
type BindingUpdate struct {
	A         *Number
	B         *Number
	ExpiresAt *time.Time
	Record    *bool
}

// BindingFilter selects bindings of an account for listing. Cursor is the
// opaque value returned with the previous page.
type BindingFilter struct {
	X          Number
	Number     Number // A or B
	ExternalID string
	Status     BindingStatus
	Cursor     string
	Limit      int
}

// NumberFilter selects virtual numbers of an account for listing.
type NumberFilter struct {
	Area    string
	Enabled *bool
	Cursor  string
	Limit   int
}

// NumberUpdate changes a virtual number; nil fields are left alone.
type NumberUpdate struct {
	Gateway *string
	Area    *string
	Labels  *[]string
	Enabled *bool
}

// BindingService stores bindings and enforces the routing rules.
type BindingService interface {
	// CreateBinding stores an active binding, allocating X when the request
	// names none. EINVALID, ENOTFOUND (named X not in the pool), ECONFLICT
	// (X or a party already bound, idempotency key reused with another
	// request), ENONUMBER (no X fits).
	CreateBinding(ctx context.Context, r *BindingRequest) (*Binding, error)
	// Binding returns one binding of an account. ENOTFOUND.
	Binding(ctx context.Context, accountID, id string) (*Binding, error)
	// Bindings lists an account's bindings, newest first, and the cursor of
	// the next page ("" at the end). EINVALID.
	Bindings(ctx context.Context, accountID string, f BindingFilter) ([]*Binding, string, error)
	// UpdateBinding changes an active binding. EINVALID, ENOTFOUND, ECONFLICT.
	UpdateBinding(ctx context.Context, accountID, id string, u BindingUpdate) (*Binding, error)
	// Unbind ends an active binding. ENOTFOUND, ECONFLICT (not active).
	Unbind(ctx context.Context, accountID, id string) (*Binding, error)
	// ExpireBindings marks every active binding whose time has come as
	// expired and returns how many it marked.
	ExpireBindings(ctx context.Context, now time.Time) (int, error)
	// BindingEvents returns the state changes of one binding, oldest first.
	// ENOTFOUND.
	BindingEvents(ctx context.Context, accountID, id string) ([]*BindingEvent, error)
}

// NumberService manages the pool of virtual numbers.
type NumberService interface {
	// CreateNumbers adds numbers to an account's pool in one transaction.
	// EINVALID, ECONFLICT (a number already exists).
	CreateNumbers(ctx context.Context, accountID string, ns []*VirtualNumber) ([]*VirtualNumber, error)
	// Number returns one number of an account. ENOTFOUND.
	Number(ctx context.Context, accountID string, n Number) (*VirtualNumber, error)
	// Numbers lists an account's numbers and the next cursor. EINVALID.
	Numbers(ctx context.Context, accountID string, f NumberFilter) ([]*VirtualNumber, string, error)
	// UpdateNumber changes a number. EINVALID, ENOTFOUND.
	UpdateNumber(ctx context.Context, accountID string, n Number, u NumberUpdate) (*VirtualNumber, error)
	// DeleteNumber removes a number. ENOTFOUND, ECONFLICT (an active binding
	// uses it).
	DeleteNumber(ctx context.Context, accountID string, n Number) error
}
