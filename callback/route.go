package callback

import (
	"context"
	"time"

	"callbridge"
	"callbridge/callback/flow"
	"callbridge/routing"
)

// Route is a leg's carrier route as the engine resolved it just before
// the leg's first placement (and, for an adopted call, when it was
// adopted). The zero Route (Planned false) sends the leg through
// Config.Gateway, as when no route plan exists.
type Route struct {
	// Planned says a route plan (Plan, its name) routes the leg.
	Planned bool
	Plan    string
	// Gateways are the plan's gateways for the number, in the order to
	// try them; empty when no route matched or every gateway was skipped
	// (NoneCause then says which: NO_ROUTE_DESTINATION or
	// NORMAL_CIRCUIT_CONGESTION).
	Gateways  []string
	NoneCause string
	// MaxAttempts and Budget are the plan's; Policy its failover policy.
	MaxAttempts int
	Budget      time.Duration
	Policy      *routing.Policy
}

// Router resolves a leg's route: the account's route plan (else the
// default plan) for number n at at; ok false when there is no plan.
type Router func(accountID string, n callbridge.Number, at time.Time) (r Route, ok bool)

// PlanRouter is the Router of route plans: plans.Resolve with src (the
// gateways' buy decks and health).
func PlanRouter(plans *routing.Plans, src routing.Sources) Router {
	return func(accountID string, n callbridge.Number, at time.Time) (Route, bool) {
		var res routing.Resolution
		p := plans.Resolve(&res, accountID, n, at, src)
		if p == nil {
			return Route{}, false
		}
		info := p.Info()
		r := Route{Planned: true, Plan: info.Name, MaxAttempts: res.MaxAttempts,
			Budget: time.Duration(res.PostDialMS) * time.Millisecond, Policy: p.Policy()}
		for _, c := range res.Attempts() {
			r.Gateways = append(r.Gateways, c.Gateway)
		}
		switch {
		case !res.Matched:
			r.NoneCause = "NO_ROUTE_DESTINATION"
		case len(r.Gateways) == 0:
			r.NoneCause = "NORMAL_CIRCUIT_CONGESTION"
		}
		return r, true
	}
}

// GatewayTracker claims and ends every attempt through a carrier
// gateway: its caps, counts and circuit breaker (routing.Gateways through
// LocalGateways, or a tracker shared by controllers).
type GatewayTracker interface {
	// Begin claims a call through gateway at now; a reason that is not
	// Kept refuses it (nothing is counted then).
	Begin(ctx context.Context, gateway string, now time.Time) routing.Reason
	// Hold counts, from now, a call through gateway that is already up:
	// an adopted leg's attempt, which the controller that placed it had
	// claimed with Begin. It counts whatever the caps, refuses nothing,
	// and ends with End (the slot it returns, if any, is End's to release).
	//
	// The dead controller's claim is not taken over: shared across
	// controllers (carrier.Gateways over postgres.GatewaySlots), its slot
	// stops counting when its lease lapses (nobody renews it), or at
	// once when that controller stopped cleanly and released it. Until
	// then the call counts twice, which may refuse an attempt through a
	// full gateway for those seconds but never lets the gateway past its
	// cap for the rest of the call, as not holding it would.
	Hold(ctx context.Context, gateway string, now time.Time) int64
	// End releases a call Begin (or Hold) counted; failed says the
	// carrier could not carry it, else it carried it (both tell the
	// gateway's breaker).
	End(gateway string, now time.Time, failed bool)
	// Release releases a call Begin (or Hold) counted whose end says
	// nothing of the carrier (the node refused the session, or the leg
	// was lost): the breaker is not told.
	Release(gateway string)
}

// LocalGateways is the GatewayTracker of one process's routing.Gateways.
type LocalGateways struct{ *routing.Gateways }

// Begin implements GatewayTracker.
func (g LocalGateways) Begin(_ context.Context, gateway string, now time.Time) routing.Reason {
	return g.Gateways.Begin(gateway, now)
}

// Hold implements GatewayTracker: the process's count only (no slot).
func (g LocalGateways) Hold(_ context.Context, gateway string, now time.Time) int64 {
	g.Gateways.Hold(gateway, now)
	return 0
}

// Release implements GatewayTracker.
func (g LocalGateways) Release(gateway string) { g.Gateways.Unhold(gateway) }

var _ GatewayTracker = LocalGateways{}

// flowRoute is the flow's view of a resolved route.
func flowRoute(r Route) flow.Route {
	return flow.Route{Planned: r.Planned, Plan: r.Plan, Gateways: r.Gateways, MaxAttempts: r.MaxAttempts,
		Budget: r.Budget, Policy: r.Policy, NoneCause: r.NoneCause}
}
