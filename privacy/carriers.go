package privacy

import (
	"log/slog"
	"math/rand/v2"
	"time"

	"callbridge/dialplan"
	"callbridge/routing"
)

// Carriers routes binding calls through the account's route plan: the
// gateways to try for the target, in order, with failover on the plan's
// carrier causes (dialplan.Decision.Failover).
type Carriers struct {
	// Plans are the route plans (kept current by postgres.PlanSync).
	Plans *routing.Plans
	// Prices are the buy decks least_cost compares (a *rating.Registry);
	// nil: no gateway has a buy deck.
	Prices routing.PriceSource
	// Health is the gateways' live state (a *routing.Gateways); nil:
	// every gateway is healthy.
	Health routing.HealthSource
}

// route applies the account's plan to a routed decision at now:
//
//   - no plan (neither the account's nor a default one), or a plan
//     without a route for the target: d unchanged, through the number's
//     gateway, as without plans;
//   - a route whose gateways are all skipped: refused with
//     dialplan.ReasonNoCarrier;
//   - otherwise the kept gateways (at most the plan's MaxAttempts), in
//     order, failing over on the plan's causes, each attempt's ring time
//     bounded by its post-dial budget.
//
// Weighted routes draw their order from a source seeded per call.
func (c *Carriers) route(d dialplan.Decision, now time.Time, logger *slog.Logger) dialplan.Decision {
	if c == nil || c.Plans == nil || !d.Routed() {
		return d
	}
	var res routing.Resolution
	src := routing.Sources{Prices: c.Prices, Health: c.Health, Now: now, Rand: rand.NewPCG(rand.Uint64(), rand.Uint64())}
	plan := c.Plans.Resolve(&res, d.AccountID, d.Target, now, src)
	switch {
	case plan == nil:
		return d
	case !res.Matched:
		logger.Debug("route plan has no route for the target; the number's gateway carries it", "plan", plan.Info().ID, "x", d.X)
		return d
	}
	attempts := res.Attempts()
	if len(attempts) == 0 {
		logger.Warn("route plan: every gateway skipped", "plan", plan.Info().ID, "prefix", res.Prefix, "x", d.X, "candidates", res.Candidates)
		return d.Refuse(dialplan.ReasonNoCarrier)
	}
	gateways := make([]string, len(attempts))
	for i, a := range attempts {
		gateways[i] = a.Gateway
	}
	// A plan may name a cause FreeSWITCH does not know (the plan's API
	// only checks its form): it could never end a leg, so it is left out
	// rather than making the dialplan unrenderable. Without any cause
	// left the call goes through the first gateway alone.
	causes := plan.Policy().Causes()
	known := causes[:0]
	for _, c := range causes {
		if dialplan.IsCause(c) {
			known = append(known, c)
		} else {
			logger.Warn("route plan: failover cause unknown to FreeSWITCH ignored", "plan", plan.Info().ID, "cause", c)
		}
	}
	if len(known) == 0 {
		gateways = gateways[:1]
	}
	d = d.Failover(gateways, known)
	d.PostDial = time.Duration(res.PostDialMS) * time.Millisecond
	return d
}
