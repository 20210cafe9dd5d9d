// Package routing chooses the carrier gateways an outbound call leaves
// through. A Plan maps a destination prefix (longest match) and an
// optional time band, read in the plan's zone, to an ordered set of
// gateways and a strategy: least_cost orders them by each gateway's buy
// deck price for the number at the time (package rating prices it),
// priority keeps the plan's order, weighted draws an order from the
// gateways' weights with a random source the caller provides.
// Plan.Resolve returns the gateways to try, in order, with their prices,
// and says for every gateway of the route why it was kept or skipped. A
// Table joins a plan with its gateways' buy decks ahead of the calls, so
// that resolving one is a single trie walk whatever the number of
// carriers; it answers exactly as the plan does.
//
// It also holds the pure decisions around an attempt: a circuit Breaker
// per gateway (consecutive carrier failures open it, a probe after a
// cool-down half-opens it, a success closes it), Gateways (the live view
// of each gateway's switch state, breaker and calls, which Resolve reads
// and each attempt claims with Begin and releases with End) and
// Policy.Classify, which tells a hangup that blames the carrier (fail
// over) from an answer about the person called (stop).
//
// It performs no I/O and reads no clock: gateway health, buy decks and
// the time are inputs. It does not place calls, store plans or read the
// switch's gateway state; the engine, package postgres and package esl
// do.
package routing

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"callbridge"
	"callbridge/internal/prefix"
	"callbridge/rating"
)

// Strategy orders the gateways of a route.
type Strategy string

// Strategies.
const (
	// LeastCost orders gateways by the price of a reference call
	// (CostBasisMS) in each gateway's buy deck in force at the call's
	// time, cheapest first, then by the per-minute price (a deck that
	// rounds to whole units can make two prices equal); equal prices
	// keep the route's order. A
	// gateway without a buy rate for the number, or whose deck is in
	// another currency than the plan's, is skipped.
	LeastCost Strategy = "least_cost"
	// Priority keeps the route's order.
	Priority Strategy = "priority"
	// Weighted draws an order: each next gateway is picked among those
	// left with a probability proportional to its weight.
	Weighted Strategy = "weighted"
)

// CostBasisMS is the billed duration least_cost compares gateways at: the
// price of a one-minute call, connect fee, increments and minimum
// included, as rating.Deck.Price computes it.
const CostBasisMS = 60_000

// Limits on a plan's values.
const (
	// MaxGateways is the most gateways a route may list.
	MaxGateways = 16
	// MaxAttemptsLimit is the largest MaxAttempts.
	MaxAttemptsLimit = 10
	// MaxPostDialMS is the longest post-dial budget, 5 minutes.
	MaxPostDialMS = 300_000
	// MaxWeight is the largest gateway weight.
	MaxWeight = 1_000_000
	// MaxPrefixLen is the longest prefix: a whole E.164 number.
	MaxPrefixLen = 15
	// maxRoutesPerPrefix bounds the bands one prefix may have.
	maxRoutesPerPrefix = 1000
	maxTextLen         = 200
)

// Defaults of a plan's settings.
const (
	DefaultMaxAttempts = 3
	DefaultPostDialMS  = 60_000
)

// PlanInfo is a route plan's terms: whose it is and the settings that
// apply to every route.
type PlanInfo struct {
	// ID is assigned by the store.
	ID string `json:"id"`
	// AccountID, when set, makes the plan the one of that account's calls
	// (an account has at most one).
	AccountID string `json:"account_id,omitempty"`
	// Default makes the plan the one of accounts without a plan of their
	// own; at most one plan is the default.
	Default bool `json:"default"`
	// Name is for people.
	Name string `json:"name"`
	// TimeZone is the IANA zone time bands are read in.
	TimeZone string `json:"time_zone"`
	// Currency is the ISO 4217 code least_cost compares buy prices in.
	Currency string `json:"currency"`
	// MaxAttempts is how many gateways one call tries at most, 1 to 10;
	// 0 means DefaultMaxAttempts.
	MaxAttempts int `json:"max_attempts"`
	// PostDialMS is the total time the attempts of one call may take
	// before one answers, 1000 to 300000 ms; 0 means DefaultPostDialMS.
	PostDialMS int64 `json:"post_dial_ms"`
	// FailoverCauses are the hangup causes after which the next gateway
	// is tried; empty means DefaultFailoverCauses. See Policy.
	FailoverCauses []string `json:"failover_causes,omitempty"`
	// FailoverSIPCodes are the carrier's SIP final responses after which
	// the next gateway is tried; empty means DefaultFailoverSIPCodes.
	FailoverSIPCodes []int `json:"failover_sip_codes,omitempty"`
	// Version increases whenever the plan or its routes change.
	Version int64 `json:"version"`
	// CreatedAt is when the plan was created, UTC.
	CreatedAt time.Time `json:"created_at"`
}

// Validate reports the first problem with the plan's terms as an EINVALID
// *callbridge.Error naming the field. It does not check that TimeZone
// exists; loading zones is the caller's.
func (i *PlanInfo) Validate() error {
	switch {
	case i.Name == "" || len(i.Name) > maxTextLen:
		return callbridge.FieldError("name", "must have 1 to 200 bytes")
	case callbridge.CheckText("name", i.Name) != nil:
		return callbridge.CheckText("name", i.Name)
	case i.TimeZone == "":
		return callbridge.FieldError("time_zone", "must be an IANA zone such as Europe/Berlin")
	case i.MaxAttempts < 0 || i.MaxAttempts > MaxAttemptsLimit:
		return callbridge.FieldError("max_attempts", "must be 1 to %d (0 for the default, %d)", MaxAttemptsLimit, DefaultMaxAttempts)
	case i.PostDialMS != 0 && (i.PostDialMS < 1000 || i.PostDialMS > MaxPostDialMS):
		return callbridge.FieldError("post_dial_ms", "must be 1000 to %d (0 for the default, %d)", MaxPostDialMS, DefaultPostDialMS)
	case i.AccountID != "" && i.Default:
		return callbridge.FieldError("default", "an account's plan cannot also be the default plan")
	}
	if err := callbridge.ValidateCurrency("currency", i.Currency); err != nil {
		return err
	}
	_, err := NewPolicy(i.FailoverCauses, i.FailoverSIPCodes)
	return err
}

// PlanUpdate changes some of a plan's terms: each field that is not nil
// replaces the plan's, the others are kept. As when creating a plan, an
// empty AccountID makes the plan no account's, MaxAttempts and PostDialMS
// 0 mean the defaults, and empty failover lists mean the defaults.
type PlanUpdate struct {
	AccountID        *string
	Default          *bool
	Name             *string
	TimeZone         *string
	Currency         *string
	MaxAttempts      *int
	PostDialMS       *int64
	FailoverCauses   *[]string
	FailoverSIPCodes *[]int
}

// Empty reports whether u changes nothing.
func (u *PlanUpdate) Empty() bool { return *u == PlanUpdate{} }

// Apply writes u's fields into p. It checks nothing: Validate p after.
func (u *PlanUpdate) Apply(p *PlanInfo) {
	if u.AccountID != nil {
		p.AccountID = *u.AccountID
	}
	if u.Default != nil {
		p.Default = *u.Default
	}
	if u.Name != nil {
		p.Name = *u.Name
	}
	if u.TimeZone != nil {
		p.TimeZone = *u.TimeZone
	}
	if u.Currency != nil {
		p.Currency = *u.Currency
	}
	if u.MaxAttempts != nil {
		p.MaxAttempts = *u.MaxAttempts
	}
	if u.PostDialMS != nil {
		p.PostDialMS = *u.PostDialMS
	}
	if u.FailoverCauses != nil {
		p.FailoverCauses = *u.FailoverCauses
	}
	if u.FailoverSIPCodes != nil {
		p.FailoverSIPCodes = *u.FailoverSIPCodes
	}
}

// Target is one gateway of a route.
type Target struct {
	// Gateway is the FreeSWITCH gateway name, as in its buy deck.
	Gateway string `json:"gateway"`
	// Weight is its share under the weighted strategy, 1 to MaxWeight;
	// 0 means 1. Other strategies ignore it.
	Weight int32 `json:"weight,omitempty"`
}

// Route is one row of a plan: the gateways of calls to numbers starting
// with Prefix during one time band. Several routes may share a prefix
// (peak and off-peak); for a call the plan takes the longest prefix that
// has a route whose band contains the time, and among that prefix's
// routes the first by Priority.
type Route struct {
	// Prefix is the destination prefix, E.164 digits without '+'. Empty
	// is the catch-all route, matching every number.
	Prefix string `json:"prefix"`
	// Description names the destination for people.
	Description string `json:"description,omitempty"`
	// Strategy orders Gateways.
	Strategy Strategy `json:"strategy"`
	// Gateways are the route's gateways, 1 to MaxGateways, each once, in
	// the order the priority strategy tries them.
	Gateways []Target `json:"gateways"`
	// Days are the days the band applies on, in the plan's zone. Plans
	// have no holiday calendar: "hol" is refused, "all" means every day.
	Days rating.Days `json:"days"`
	// From is the start of the band's time of day, inclusive.
	From rating.TimeOfDay `json:"from"`
	// Until is the end of the band's time of day, exclusive; 24:00 is the
	// end of the day.
	Until rating.TimeOfDay `json:"until"`
	// Priority orders the routes of one prefix: lower first.
	Priority int32 `json:"priority"`
}

// Validate reports the first problem with r as an EINVALID
// *callbridge.Error whose Field is the CSV column at fault.
func (r *Route) Validate() error {
	if err := validatePrefix(r.Prefix); err != nil {
		return err
	}
	switch {
	case len(r.Description) > maxTextLen:
		return callbridge.FieldError("description", "longer than 200 bytes")
	case callbridge.CheckText("description", r.Description) != nil:
		return callbridge.CheckText("description", r.Description)
	}
	switch r.Strategy {
	case LeastCost, Priority, Weighted:
	default:
		return callbridge.FieldError("strategy", "must be least_cost, priority or weighted")
	}
	if len(r.Gateways) == 0 || len(r.Gateways) > MaxGateways {
		return callbridge.FieldError("gateways", "must list 1 to %d gateways", MaxGateways)
	}
	for i, g := range r.Gateways {
		if !IsGateway(g.Gateway) {
			return callbridge.FieldError("gateways", "gateway %q: must be 1 to 64 letters, digits, '.', '_' or '-'", g.Gateway)
		}
		if g.Weight < 0 || g.Weight > MaxWeight {
			return callbridge.FieldError("gateways", "gateway %s: weight must be 1 to %d", g.Gateway, MaxWeight)
		}
		for _, h := range r.Gateways[:i] {
			if h.Gateway == g.Gateway {
				return callbridge.FieldError("gateways", "gateway %s is listed twice", g.Gateway)
			}
		}
	}
	switch {
	case r.Days&^rating.Holidays == 0:
		return callbridge.FieldError("days", "no day selected")
	case r.Days&rating.Holidays != 0 && r.Days != rating.AllDays:
		return callbridge.FieldError("days", "route plans have no holiday calendar: hol is not allowed")
	case r.From < 0 || r.From >= rating.Midnight:
		return callbridge.FieldError("from", "time of day out of range")
	case r.Until <= 0 || r.Until > rating.Midnight:
		return callbridge.FieldError("until", "time of day out of range")
	case r.From >= r.Until:
		return callbridge.FieldError("until", "must be later than from (split a band that crosses midnight into two routes)")
	}
	return nil
}

func validatePrefix(p string) error {
	if len(p) > MaxPrefixLen {
		return callbridge.FieldError("prefix", "must have at most 15 digits")
	}
	if p != "" && p[0] == '0' {
		return callbridge.FieldError("prefix", "must not start with 0 (E.164 digits without '+')")
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return callbridge.FieldError("prefix", "must contain only digits")
		}
	}
	return nil
}

// IsGateway reports whether s is a valid gateway name: 1 to 64 letters,
// digits, '.', '_' or '-' (the names rate decks accept, safe in a dial
// string).
func IsGateway(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Plan is a compiled route plan: the routes of one plan version in a
// digit trie built once for fast lookup. It is immutable and safe for
// concurrent use; a new version is a new Plan.
type Plan struct {
	info   PlanInfo
	loc    *time.Location
	policy *Policy
	routes []croute              // sorted by prefix, then priority
	trie   prefix.Trie[struct{}] // payload: indexes into routes
	flat   bool                  // every route applies at all times
	// gateways are the distinct gateways of all routes, in order of
	// first appearance.
	gateways []string
}

// croute is a Route compiled: band times in seconds since local midnight.
type croute struct {
	Route
	from, until int32
	gw          []int32 // each gateway's index in Plan.gateways
}

// NewPlan compiles a plan version from its terms, its zone (which the
// caller loads, usually with time.LoadLocation(info.TimeZone)) and its
// routes. The first bad route is reported with its index as an EINVALID
// *callbridge.Error; so are two routes with the same prefix, days, band
// and priority.
func NewPlan(info PlanInfo, loc *time.Location, routes []Route) (*Plan, error) {
	if err := info.Validate(); err != nil {
		return nil, err
	}
	if loc == nil || loc.String() != info.TimeZone {
		return nil, callbridge.FieldError("time_zone", "location does not match time zone %q", info.TimeZone)
	}
	policy, _ := NewPolicy(info.FailoverCauses, info.FailoverSIPCodes)
	p := &Plan{info: info, loc: loc, policy: policy, flat: true}
	p.info.FailoverCauses = slices.Clone(info.FailoverCauses)
	p.info.FailoverSIPCodes = slices.Clone(info.FailoverSIPCodes)
	if p.info.MaxAttempts == 0 {
		p.info.MaxAttempts = DefaultMaxAttempts
	}
	if p.info.PostDialMS == 0 {
		p.info.PostDialMS = DefaultPostDialMS
	}
	p.routes = make([]croute, len(routes))
	for i := range routes {
		r := &routes[i]
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("routing: route %d (prefix %q): %w", i, r.Prefix, err)
		}
		c := croute{Route: *r, from: int32(r.From), until: int32(r.Until)}
		c.Gateways = slices.Clone(r.Gateways)
		for j := range c.Gateways {
			if c.Gateways[j].Weight == 0 {
				c.Gateways[j].Weight = 1
			}
		}
		if r.Days != rating.AllDays || r.From != 0 || r.Until != rating.Midnight {
			p.flat = false
		}
		p.routes[i] = c
	}
	slices.SortStableFunc(p.routes, func(a, b croute) int {
		if c := cmp.Compare(a.Prefix, b.Prefix); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Days, b.Days); c != 0 {
			return c
		}
		return cmp.Compare(a.from, b.from)
	})
	for i := 1; i < len(p.routes); i++ {
		a, b := &p.routes[i-1], &p.routes[i]
		if a.Prefix == b.Prefix && a.Priority == b.Priority && a.Days == b.Days && a.from == b.from && a.until == b.until {
			return nil, callbridge.FieldError("prefix", "two routes for prefix %q have the same days, from, until and priority", a.Prefix)
		}
	}
	var groups []prefix.Group
	for i := 0; i < len(p.routes); {
		j := i
		for j < len(p.routes) && p.routes[j].Prefix == p.routes[i].Prefix {
			j++
		}
		if j-i > maxRoutesPerPrefix {
			return nil, callbridge.FieldError("prefix", "prefix %q has %d routes, more than %d", p.routes[i].Prefix, j-i, maxRoutesPerPrefix)
		}
		groups = append(groups, prefix.Group{Prefix: p.routes[i].Prefix, Lo: int32(i), Count: uint16(j - i)})
		i = j
	}
	p.trie = prefix.New[struct{}](groups)
	// Routes with the same gateways share one copy of them: a plan has
	// few distinct lists, which then stay in the cache.
	index := map[string]int32{}
	type shared struct {
		gateways []Target
		gw       []int32
	}
	lists := map[string]shared{}
	var key strings.Builder
	for i := range p.routes {
		r := &p.routes[i]
		key.Reset()
		for _, g := range r.Gateways {
			fmt.Fprintf(&key, "%s:%d;", g.Gateway, g.Weight)
		}
		if sh, ok := lists[key.String()]; ok {
			r.Gateways, r.gw = sh.gateways, sh.gw
			continue
		}
		r.gw = make([]int32, len(r.Gateways))
		for j, g := range r.Gateways {
			k, ok := index[g.Gateway]
			if !ok {
				k = int32(len(p.gateways))
				index[g.Gateway] = k
				p.gateways = append(p.gateways, g.Gateway)
			}
			r.gw[j] = k
		}
		lists[key.String()] = shared{r.Gateways, r.gw}
	}
	return p, nil
}

// Info returns the plan's terms, with MaxAttempts and PostDialMS
// defaulted.
func (p *Plan) Info() PlanInfo { return p.info }

// Policy returns the plan's failover policy.
func (p *Plan) Policy() *Policy { return p.policy }

// Gateways returns the distinct gateways the plan's routes use.
func (p *Plan) Gateways() []string { return slices.Clone(p.gateways) }

// Len returns the number of routes.
func (p *Plan) Len() int { return len(p.routes) }

// match returns the route for a call to n at at: the longest prefix with
// a route whose band contains at in the plan's zone, first by priority;
// nil when none.
func (p *Plan) match(n callbridge.Number, at time.Time) *croute {
	return p.matchFrom(p.trie.Walk(string(n)), at)
}

// matchFrom is match from the plan trie's node nd, the deepest with
// routes on the number's path.
func (p *Plan) matchFrom(nd int32, at time.Time) *croute {
	var wd int
	var tod int32
	if !p.flat {
		lt := at.In(p.loc)
		h, m, s := lt.Clock()
		wd, tod = int(lt.Weekday()), int32(h*3600+m*60+s)
	}
	for ; nd >= 0; nd = p.trie.Nodes[nd].Up {
		x := &p.trie.Nodes[nd]
		for i := x.Lo; i < x.Lo+int32(x.Count); i++ {
			r := &p.routes[i]
			if p.flat || r.Days&(1<<wd) != 0 && tod >= r.from && tod < r.until {
				return r
			}
		}
	}
	return nil
}

// Routes returns a copy of the plan's routes in export order: by prefix,
// then priority.
func (p *Plan) Routes() []Route {
	out := make([]Route, len(p.routes))
	for i := range p.routes {
		out[i] = p.routes[i].Route
		out[i].Gateways = slices.Clone(out[i].Gateways)
	}
	return out
}

// String names the plan for logs.
func (p *Plan) String() string {
	return fmt.Sprintf("plan %s (%s, v%d, %d routes)", p.info.ID, strings.TrimSpace(p.info.Name), p.info.Version, len(p.routes))
}
