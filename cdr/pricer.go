package cdr

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"callbridge"
	"callbridge/rating"
)

// DeckFinder finds the rate deck in force for an account or a carrier
// gateway at a time (a *rating.Registry).
type DeckFinder interface {
	// AccountDeck returns the account's sell deck in force at at, or nil.
	AccountDeck(accountID string, at time.Time) *rating.Deck
	// GatewayDeck returns the gateway's buy deck in force at at, or nil.
	GatewayDeck(gateway string, at time.Time) *rating.Deck
	// Ready reports whether the decks were loaded: before, a missing
	// deck may only mean "not loaded yet".
	Ready() bool
}

// Pricer prices CDRs with the account's sell deck and the gateway's buy
// deck in force at the call's start, through the rating engine. Decks come
// from the process's registry, which LISTEN/NOTIFY keeps current: a deck
// change prices the next CDR. It is safe for concurrent use.
type Pricer struct {
	decks  DeckFinder
	log    *slog.Logger
	now    func() time.Time
	mu     sync.Mutex
	counts PricerStats
}

// PricerStats counts what the pricer could not price normally.
type PricerStats struct {
	// UnratedDefault counts legs priced by a deck's default rate.
	UnratedDefault int64
	// Unrated counts legs of an account that no rate priced.
	Unrated int64
}

// NewPricer returns a Pricer over decks.
func NewPricer(decks DeckFinder, log *slog.Logger) *Pricer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pricer{decks: decks, log: log, now: time.Now}
}

// Stats returns the pricer's counters.
func (p *Pricer) Stats() PricerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts
}

// pricingFlags are the flags Price recomputes; the others (estimated,
// rerated) are kept.
const pricingFlags = callbridge.CDRUnanswered | callbridge.CDRShort | callbridge.CDRUnratedDefault |
	callbridge.CDRUnrated | callbridge.CDRBuyUnratedDefault | callbridge.CDRBuyUnrated | callbridge.CDRMinimum

// Price sets c's sell and buy prices from BillMS and the callee, and the
// pricing flags. A leg with an account but no deck or no matching rate is
// flagged unrated (never dropped); one priced by a default rate is flagged
// unrated_default and logged. A leg without an account has no sell price;
// one without a gateway no buy price. The decks are those in force at the
// call's start; the rate and band within them are chosen at the answer
// (docs/pricing.md). It fails (EUNAVAILABLE) only while the decks are not
// loaded yet: the caller retries later.
func (p *Pricer) Price(ctx context.Context, c *callbridge.CDR) error {
	if !p.decks.Ready() {
		return callbridge.Errorf(callbridge.EUNAVAILABLE, "cdr: rate decks are not loaded yet")
	}
	c.Flags &^= pricingFlags
	c.Sell, c.SellCurrency, c.SellDeckID, c.SellDeckVersion, c.SellPrefix = 0, "", "", 0, ""
	c.Buy, c.BuyCurrency, c.BuyDeckID, c.BuyDeckVersion, c.BuyPrefix = 0, "", "", 0, ""
	u := rating.Usage{Number: callbridge.Number(c.Callee), Start: c.StartAt, BillMS: c.BillMS}
	if c.Answered() {
		u.Start = c.AnswerAt
	} else {
		u.BillMS = 0
		c.Flags |= callbridge.CDRUnanswered
	}
	valid := u.Number.Validate() == nil
	if c.AccountID != "" {
		switch d := p.decks.AccountDeck(c.AccountID, c.StartAt); {
		case d == nil || !valid:
			c.Flags |= callbridge.CDRUnrated
		default:
			r := d.Price(u)
			info := d.Info()
			c.Sell, c.SellCurrency, c.SellDeckID, c.SellDeckVersion, c.SellPrefix = r.Amount, info.Currency, info.ID, info.Version, r.Prefix
			c.Flags |= sellFlags(r.Flags)
		}
		p.count(c, c.Flags&(callbridge.CDRUnrated|callbridge.CDRUnratedDefault))
	}
	if c.Gateway != "" {
		switch d := p.decks.GatewayDeck(c.Gateway, c.StartAt); {
		case d == nil || !valid:
			c.Flags |= callbridge.CDRBuyUnrated
		default:
			r := d.Price(u)
			info := d.Info()
			c.Buy, c.BuyCurrency, c.BuyDeckID, c.BuyDeckVersion, c.BuyPrefix = r.Amount, info.Currency, info.ID, info.Version, r.Prefix
			if r.Flags.Has(rating.FlagUnratedDefault) {
				c.Flags |= callbridge.CDRBuyUnratedDefault
			}
			if r.Flags.Has(rating.FlagUnrated) {
				c.Flags |= callbridge.CDRBuyUnrated
			}
		}
	}
	c.RatedAt = p.now().UTC()
	return nil
}

func (p *Pricer) count(c *callbridge.CDR, f callbridge.CDRFlags) {
	if f == 0 {
		return
	}
	p.mu.Lock()
	if f.Has(callbridge.CDRUnratedDefault) {
		p.counts.UnratedDefault++
	}
	if f.Has(callbridge.CDRUnrated) {
		p.counts.Unrated++
	}
	p.mu.Unlock()
	if f.Has(callbridge.CDRUnratedDefault) {
		p.log.Warn("cdr priced by the default rate", "uuid", c.UUID, "account", c.AccountID, "callee", c.Callee)
	}
}

func sellFlags(f rating.Flags) callbridge.CDRFlags {
	var out callbridge.CDRFlags
	if f.Has(rating.FlagShort) {
		out |= callbridge.CDRShort
	}
	if f.Has(rating.FlagUnratedDefault) {
		out |= callbridge.CDRUnratedDefault
	}
	if f.Has(rating.FlagUnrated) {
		out |= callbridge.CDRUnrated
	}
	if f.Has(rating.FlagMinimum) {
		out |= callbridge.CDRMinimum
	}
	return out
}
