// Package privacy is callbridge's privacy-number (XB/AXB) capability: the
// in-memory binding index, the routing decisions behind /fs/dialplan
// (lookup, prepaid authorisation) and the tracking of binding calls
// (their webhooks, and hanging them up). It serves no HTTP: the
// controller package exposes these through its routes.
package privacy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"callbridge"
	"callbridge/dialplan"
)

// Routing configures the routing decisions behind /fs/dialplan.
type Routing struct {
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
	// Carriers, when set, route each call's target through the account's
	// route plan (several gateways, failover); nil, or an account without
	// a plan: the number's gateway carries the call.
	Carriers *Carriers
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

// LineLookup finds what is known of a virtual number (Index).
type LineLookup interface {
	Line(ctx context.Context, x callbridge.Number) (*dialplan.Line, error)
}

// Answer appends the dialplan document for one mod_xml_curl form body to
// out: a route, a refusal, or "not found" for requests of another section,
// malformed requests and lookup failures (FreeSWITCH then uses its static
// fallback extension). lines finds the virtual number's bindings.
func (cfg *Routing) Answer(ctx context.Context, out, body []byte, lines LineLookup, now func() time.Time, logger *slog.Logger) []byte {
	timeout := cfg.LookupTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
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
	d = cfg.Carriers.route(d, now().UTC(), logger)
	if !d.Routed() && reserved {
		releaseRoute(ctx, cfg, req.UniqueID, timeout, logger)
		reserved = false
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
func authorizeRoute(ctx context.Context, d dialplan.Decision, req *dialplan.Request, cfg *Routing) (dialplan.Decision, bool, error) {
	prepaid, err := cfg.Prepaid.Prepaid(ctx, d.AccountID)
	if err != nil {
		return d, false, fmt.Errorf("privacy: prepaid flag: %w", err)
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
			return d, false, fmt.Errorf("privacy: release earlier reservation: %w", err)
		}
		g, err = cfg.Authorizer.AuthorizeBridge(ctx, d.AccountID, req.UniqueID, d.X, d.Target)
	}
	switch {
	case callbridge.ErrorCode(err) == callbridge.ENOFUNDS:
		return d.Refuse(dialplan.ReasonInsufficientFunds), false, nil
	case err != nil:
		return d, false, fmt.Errorf("privacy: authorise call: %w", err)
	}
	if g.Prepaid {
		d.MaxDuration = max(time.Duration(g.MaxMS)*time.Millisecond, time.Millisecond)
	}
	return d, g.Prepaid, nil
}

// releaseRoute drops the reservation of a call that was not routed after
// all.
func releaseRoute(ctx context.Context, cfg *Routing, callID string, timeout time.Duration, logger *slog.Logger) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := cfg.Authorizer.ReleaseCall(rctx, callID); err != nil {
		logger.Warn("dialplan: release reservation", "uuid", callID, "err", err)
	}
}
