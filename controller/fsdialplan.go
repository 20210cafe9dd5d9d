package controller

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"callbridge"
	"callbridge/dialplan"

	"github.com/gin-gonic/gin"
)

// DialplanConfig configures POST /fs/dialplan, the endpoint FreeSWITCH's
// mod_xml_curl asks for the route of each inbound call.
type DialplanConfig struct {
	// User and Password are the endpoint's own HTTP basic credential (the
	// one in mod_xml_curl's binding). Both are required: an empty password
	// disables the endpoint.
	User     string
	Password string
	// AllowedSources, when not empty, is the list of networks FreeSWITCH
	// nodes connect from; other peers are refused before authentication.
	// The TCP peer address is used, never X-Forwarded-For.
	AllowedSources []netip.Prefix
	// Rules normalise the dialled and calling numbers.
	Rules callbridge.NumberRules
	// Options shape the XML (ring timeout, recordings, refusals).
	Options dialplan.Options
	// LookupTimeout bounds a database fallback, and the authorisation of a
	// prepaid call; 0 means 2 s (mod_xml_curl gives up after its own
	// timeout and falls back to the static plan).
	LookupTimeout time.Duration
	// Authorizer, when set together with Prepaid, authorises every routed
	// call of a prepaid account before it is bridged: the inbound channel's
	// uuid is the call id (its CDR settles the reservation), and both legs
	// are priced, the inbound one to X (when the account's deck charges
	// it) and the one to the target. A balance that cannot pay refuses the call
	// (dialplan.ReasonInsufficientFunds); otherwise the route is capped at
	// the grant from its answer. Calls of postpaid accounts cost no
	// database work once Prepaid knows the account.
	Authorizer callbridge.CallAuthorizer
	// Prepaid tells prepaid accounts from postpaid ones.
	Prepaid *PrepaidAccounts
}

// AccountLookup finds an account (postgres.AccountService implements it).
type AccountLookup interface {
	// Account returns an account by id. ENOTFOUND.
	Account(ctx context.Context, id string) (*callbridge.Account, error)
}

// DefaultPrepaidTTL is how long PrepaidAccounts trusts what it read.
const DefaultPrepaidTTL = time.Minute

// PrepaidAccounts remembers which accounts are prepaid, so the dialplan
// endpoint asks the database about an account at most once per TTL. An
// account is prepaid or postpaid from its creation (no API changes it),
// so the TTL only bounds how long an operator's manual change goes
// unnoticed.
type PrepaidAccounts struct {
	accounts AccountLookup
	ttl      time.Duration
	now      func() time.Time

	mu    sync.RWMutex
	flags map[string]prepaidFlag
}

type prepaidFlag struct {
	prepaid bool
	until   time.Time
}

// NewPrepaidAccounts returns an empty cache over accounts; ttl 0 means
// DefaultPrepaidTTL.
func NewPrepaidAccounts(accounts AccountLookup, ttl time.Duration) *PrepaidAccounts {
	if ttl <= 0 {
		ttl = DefaultPrepaidTTL
	}
	return &PrepaidAccounts{accounts: accounts, ttl: ttl, now: time.Now, flags: map[string]prepaidFlag{}}
}

// Prepaid reports whether an account is prepaid. It returns the error of
// the lookup (ENOTFOUND for an unknown account) when the cache has no
// current answer.
func (p *PrepaidAccounts) Prepaid(ctx context.Context, accountID string) (bool, error) {
	now := p.now()
	p.mu.RLock()
	f, ok := p.flags[accountID]
	p.mu.RUnlock()
	if ok && now.Before(f.until) {
		return f.prepaid, nil
	}
	a, err := p.accounts.Account(ctx, accountID)
	if err != nil {
		return false, err
	}
	p.mu.Lock()
	p.flags[accountID] = prepaidFlag{prepaid: a.Prepaid, until: now.Add(p.ttl)}
	p.mu.Unlock()
	return a.Prepaid, nil
}

// LineLookup finds what is known of a virtual number (BindingIndex).
type LineLookup interface {
	Line(ctx context.Context, x callbridge.Number) (*dialplan.Line, error)
}

// fsDialplanRoute is mod_xml_curl's route: it answers XML, always.
const fsDialplanRoute = "/fs/dialplan"

// dialplanNotFound answers mod_xml_curl with the not-found document: a
// form it cannot use (too large) must still get XML, which FreeSWITCH
// reads as "no dialplan here" and handles, where a JSON error body would
// only be logged as a parse failure.
func dialplanNotFound(c *gin.Context) {
	c.Data(http.StatusOK, "text/xml; charset=utf-8", dialplan.NotFound())
	c.Abort()
}

// fsDialplan answers mod_xml_curl. Every answer FreeSWITCH can use is 200
// text/xml: a route, a refusal, or "not found" for requests of another
// section, malformed requests and lookup failures (FreeSWITCH then uses
// its static fallback extension). Credentials and source are checked
// first; failures get 401/403 with no XML.
//
// It is on the path of every inbound call, so it keeps garbage low: the
// form (about 200 fields, 6 KB) is read into a recycled buffer and only
// the fields a route needs are extracted from it (dialplan.ParseForm),
// and the answer is rendered into a recycled buffer too.
func fsDialplan(cfg *DialplanConfig, lines LineLookup, now func() time.Time, logger *slog.Logger) gin.HandlerFunc {
	user := sha256.Sum256([]byte(cfg.User))
	pass := sha256.Sum256([]byte(cfg.Password))
	timeout := cfg.LookupTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	bufs := sync.Pool{New: func() any {
		b := make([]byte, 0, 8<<10)
		return &b
	}}
	return func(c *gin.Context) {
		if len(cfg.AllowedSources) > 0 && !allowedSource(c.Request.RemoteAddr, cfg.AllowedSources) {
			c.AbortWithStatus(http.StatusForbidden)
			return
		}
		u, p, ok := c.Request.BasicAuth()
		us, ps := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		if !ok || cfg.Password == "" ||
			subtle.ConstantTimeCompare(us[:], user[:])&subtle.ConstantTimeCompare(ps[:], pass[:]) != 1 {
			c.Header("WWW-Authenticate", `Basic realm="callbridge-dialplan"`)
			c.AbortWithStatus(http.StatusUnauthorized)
			return
		}
		in, out := bufs.Get().(*[]byte), bufs.Get().(*[]byte)
		defer func() {
			recycle(&bufs, in)
			recycle(&bufs, out)
		}()
		body, err := appendBody(c.Request.Body, (*in)[:0])
		*in = body
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				dialplanNotFound(c)
				return
			}
			c.AbortWithStatus(http.StatusBadRequest)
			return
		}
		*out = answerDialplan(c.Request.Context(), (*out)[:0], body, cfg, lines, now, timeout, logger)
		c.Data(http.StatusOK, "text/xml; charset=utf-8", *out)
	}
}

// maxRecycled is the largest buffer put back for reuse; a rare big form
// is left to the garbage collector rather than kept forever.
const maxRecycled = 64 << 10

func recycle(p *sync.Pool, b *[]byte) {
	if cap(*b) <= maxRecycled {
		*b = (*b)[:0]
		p.Put(b)
	}
}

// appendBody appends all of r to b.
func appendBody(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// answerDialplan appends the document for one mod_xml_curl form body.
func answerDialplan(ctx context.Context, out, body []byte, cfg *DialplanConfig, lines LineLookup, now func() time.Time, timeout time.Duration, logger *slog.Logger) []byte {
	req, err := dialplan.ParseForm(body, cfg.Rules)
	if err != nil {
		if !errors.Is(err, dialplan.ErrNotDialplan) {
			logger.Warn("dialplan request refused", "err", err)
		}
		return dialplan.AppendNotFound(out)
	}
	lctx, cancel := context.WithTimeout(ctx, timeout)
	line, err := lines.Line(lctx, req.Destination)
	cancel()
	if err != nil {
		logger.Error("dialplan lookup", "x", req.Destination, "err", err)
		return dialplan.AppendNotFound(out)
	}
	d := dialplan.Decide(req, line, now().UTC())
	reserved := false
	if d.Routed() && cfg.Authorizer != nil && cfg.Prepaid != nil {
		actx, cancel := context.WithTimeout(ctx, timeout)
		d, reserved, err = authorizeRoute(actx, d, req, cfg)
		cancel()
		if err != nil {
			logger.Error("dialplan authorisation", "x", req.Destination, "account", d.AccountID, "uuid", req.UniqueID, "err", err)
			return dialplan.AppendNotFound(out)
		}
	}
	doc, err := dialplan.Render(out, req, d, &cfg.Options)
	if err != nil {
		logger.Error("dialplan render", "x", req.Destination, "err", err)
		if reserved {
			releaseRoute(ctx, cfg, req.UniqueID, timeout, logger)
		}
		return dialplan.AppendNotFound(out)
	}
	if d.Routed() {
		// Checked first: the arguments would be boxed even if discarded.
		if logger.Enabled(ctx, slog.LevelDebug) {
			logger.Debug("dialplan route", "x", d.X, "binding", d.Binding.ID, "direction", d.Direction, "uuid", req.UniqueID)
		}
	} else {
		logger.Info("dialplan refusal", "x", d.X, "reason", d.Reason, "uuid", req.UniqueID)
	}
	return doc
}

// authorizeRoute authorises a routed call of a prepaid account, the
// inbound channel being the call: it returns the route capped at the
// grant, or a refusal when the balance cannot pay, and whether a
// reservation is held. A postpaid account's route is returned as it is.
// Errors (the database is unavailable) leave the call unrouted: a prepaid
// call is never bridged unpaid.
func authorizeRoute(ctx context.Context, d dialplan.Decision, req *dialplan.Request, cfg *DialplanConfig) (dialplan.Decision, bool, error) {
	prepaid, err := cfg.Prepaid.Prepaid(ctx, d.AccountID)
	if err != nil {
		return d, false, fmt.Errorf("controller: prepaid flag: %w", err)
	}
	if !prepaid {
		return d, false, nil
	}
	g, err := cfg.Authorizer.AuthorizeBridge(ctx, d.AccountID, req.UniqueID, d.X, d.Target)
	if callbridge.ErrorCode(err) == callbridge.ECONFLICT {
		// FreeSWITCH asked again for a channel that already holds a
		// reservation (a transfer back into the dialplan): the channel
		// is in one route at a time, so the new one replaces the old.
		if err := cfg.Authorizer.ReleaseCall(ctx, req.UniqueID); err != nil {
			return d, false, fmt.Errorf("controller: release earlier reservation: %w", err)
		}
		g, err = cfg.Authorizer.AuthorizeBridge(ctx, d.AccountID, req.UniqueID, d.X, d.Target)
	}
	switch {
	case callbridge.ErrorCode(err) == callbridge.ENOFUNDS:
		return d.Refuse(dialplan.ReasonInsufficientFunds), false, nil
	case err != nil:
		return d, false, fmt.Errorf("controller: authorise call: %w", err)
	}
	if g.Prepaid {
		d.MaxDuration = max(time.Duration(g.MaxMS)*time.Millisecond, time.Millisecond)
	}
	return d, g.Prepaid, nil
}

// releaseRoute drops the reservation of a call that was not routed after
// all.
func releaseRoute(ctx context.Context, cfg *DialplanConfig, callID string, timeout time.Duration, logger *slog.Logger) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := cfg.Authorizer.ReleaseCall(rctx, callID); err != nil {
		logger.Warn("dialplan: release reservation", "uuid", callID, "err", err)
	}
}

// allowedSource reports whether the TCP peer remoteAddr is in one of nets.
func allowedSource(remoteAddr string, nets []netip.Prefix) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}
