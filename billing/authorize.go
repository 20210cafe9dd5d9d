package billing

import (
	"context"
	"fmt"
	"time"

	"callbridge"
	"callbridge/rating"
)

// Reserver holds money for the calls of prepaid accounts.
type Reserver interface {
	// Reserve locks the account's balance, calls quote with the money
	// available and stores the reservation it prices. It returns
	// (nil, false, nil) for a postpaid account.
	Reserve(ctx context.Context, accountID, callID string, ttl time.Duration, quote func(available int64) (maxMS, amount int64, err error)) (*callbridge.Reservation, bool, error)
	// Release drops a call's reservation.
	Release(ctx context.Context, callID string) error
}

// DeckSource returns the sell deck an account's calls are priced with.
type DeckSource interface {
	// SellDeck returns the account's current sell deck. ENOTFOUND when
	// it has none.
	SellDeck(ctx context.Context, accountID string) (*rating.Deck, error)
}

// DeckSourceFunc adapts a function to DeckSource.
type DeckSourceFunc func(ctx context.Context, accountID string) (*rating.Deck, error)

// SellDeck implements DeckSource.
func (f DeckSourceFunc) SellDeck(ctx context.Context, accountID string) (*rating.Deck, error) {
	return f(ctx, accountID)
}

// RegistryDecks is the DeckSource of a process's deck registry: the
// account's deck in force now. EUNAVAILABLE until the registry is loaded.
func RegistryDecks(r *rating.Registry) DeckSource {
	return DeckSourceFunc(func(_ context.Context, accountID string) (*rating.Deck, error) {
		if !r.Ready() {
			return nil, callbridge.Errorf(callbridge.EUNAVAILABLE, "billing: rate decks are not loaded yet")
		}
		if d := r.AccountDeck(accountID, time.Now()); d != nil {
			return d, nil
		}
		return nil, callbridge.Errorf(callbridge.ENOTFOUND, "billing: the account has no rate deck in force")
	})
}

// DefaultMaxCall is the longest call granted when an account's balance
// (or a postpaid account) would allow more.
const DefaultMaxCall = 4 * time.Hour

// Authorizer implements callbridge.CallAuthorizer. A prepaid call is
// granted the longest duration the available balance (the ledger balance
// minus what live calls hold) pays for at the rate in force now, capped at
// MaxCall, and holds the price of that duration until its CDR is stored:
// mod_nibblebill's and CGRateS's cap-the-call approach, with a
// reservation so concurrent calls of one account cannot spend the same
// money. A call runs at most one billing increment past its grant (the
// hangup is scheduled in whole seconds), which bounds any overdraft.
type Authorizer struct {
	Store Reserver
	Decks DeckSource
	// MaxCall caps every grant (default DefaultMaxCall).
	MaxCall time.Duration
	// Slack is how long after the granted duration an unsettled
	// reservation lapses (default 10 minutes), covering CDRs that reach
	// the database late.
	Slack time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time
}

var _ callbridge.CallAuthorizer = (*Authorizer)(nil)

// AuthorizeCall implements callbridge.CallAuthorizer.
func (a *Authorizer) AuthorizeCall(ctx context.Context, accountID, callID string, number callbridge.Number) (*callbridge.Grant, error) {
	if err := validateNumbers(number); err != nil {
		return nil, err
	}
	return a.authorize(ctx, accountID, callID, func(*rating.Deck, time.Time) []callbridge.Number { return []callbridge.Number{number} })
}

// AuthorizeBridge implements callbridge.CallAuthorizer: the inbound leg
// (whose dialled number is inbound, a virtual number say) and the leg
// bridged to target last as long and are paid from one reservation, held
// for callID, the inbound channel. The inbound leg counts only when the
// account's deck prices its number: a deck without such a rate does not
// charge inbound calls (their CDRs are flagged unrated), so there is
// nothing to hold for them.
func (a *Authorizer) AuthorizeBridge(ctx context.Context, accountID, callID string, inbound, target callbridge.Number) (*callbridge.Grant, error) {
	if err := validateNumbers(inbound, target); err != nil {
		return nil, err
	}
	return a.authorize(ctx, accountID, callID, func(deck *rating.Deck, at time.Time) []callbridge.Number {
		if r := deck.Price(rating.Usage{Number: inbound, Start: at, BillMS: 60_000}); r.Flags.Has(rating.FlagUnrated) {
			return []callbridge.Number{target}
		}
		return []callbridge.Number{inbound, target}
	})
}

func validateNumbers(ns ...callbridge.Number) error {
	for _, n := range ns {
		if err := n.Validate(); err != nil {
			return callbridge.FieldError("number", "%s", callbridge.ErrorMessage(err))
		}
	}
	return nil
}

// authorize reserves for callID the price of the legs legs returns (from
// the account's deck, at the time of the call), all lasting as long.
func (a *Authorizer) authorize(ctx context.Context, accountID, callID string, legs func(*rating.Deck, time.Time) []callbridge.Number) (*callbridge.Grant, error) {
	maxCall := a.MaxCall
	if maxCall <= 0 {
		maxCall = DefaultMaxCall
	}
	slack := a.Slack
	if slack <= 0 {
		slack = 10 * time.Minute
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	at := now()
	capMS := maxCall.Milliseconds()
	var deck *rating.Deck
	quote := func(available int64) (int64, int64, error) {
		if deck == nil {
			d, err := a.Decks.SellDeck(ctx, accountID)
			if err != nil {
				if callbridge.ErrorCode(err) == callbridge.ENOTFOUND {
					return 0, 0, callbridge.Errorf(callbridge.ENOFUNDS, "insufficient_funds: the account has no sell deck to price the call")
				}
				return 0, 0, fmt.Errorf("billing: sell deck: %w", err)
			}
			deck = d
		}
		return AffordableLegs(deck, legs(deck, at), at, available, capMS)
	}
	res, prepaid, err := a.Store.Reserve(ctx, accountID, callID, slack, quote)
	if err != nil {
		return nil, err
	}
	if !prepaid {
		return &callbridge.Grant{MaxMS: capMS}, nil
	}
	return &callbridge.Grant{Prepaid: true, MaxMS: res.MaxMS, Reserved: res.Amount, ReservationID: res.ID}, nil
}

// ReleaseCall implements callbridge.CallAuthorizer.
func (a *Authorizer) ReleaseCall(ctx context.Context, callID string) error {
	return a.Store.Release(ctx, callID)
}

// AffordableLegs returns the longest duration, at most capMS, of a call
// whose legs to numbers all last as long and are all paid from budget
// (such as the two legs of a callback), starting at at, and its price. A
// call whose first charged increment costs more than budget is refused
// with ENOFUNDS, and so is a destination the deck cannot price (an
// unrated prepaid call could not be paid for). The price of a call never
// decreases with its duration, so a binary search over whole milliseconds
// finds the limit; the result ends on an increment boundary.
func AffordableLegs(deck *rating.Deck, numbers []callbridge.Number, at time.Time, budget, capMS int64) (maxMS, price int64, err error) {
	cost := func(ms int64) (sum int64, unrated bool) {
		for _, n := range numbers {
			r := deck.Price(rating.Usage{Number: n, Start: at, BillMS: ms})
			sum += r.Amount
			unrated = unrated || r.Flags.Has(rating.FlagUnrated)
		}
		return sum, unrated
	}
	short := deck.Info().ShortMS
	if short <= 0 {
		short = rating.DefaultShortMS
	}
	lo := max(short, 1)
	first, unrated := cost(lo)
	if unrated {
		return 0, 0, callbridge.Errorf(callbridge.ENOFUNDS, "insufficient_funds: no rate covers the destination")
	}
	if first > budget {
		return 0, 0, callbridge.Errorf(callbridge.ENOFUNDS, "insufficient_funds: the balance does not pay for the first increment")
	}
	if p, _ := cost(capMS); p <= budget {
		return capMS, p, nil
	}
	hi := capMS // cost(lo) <= budget < cost(hi)
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if p, _ := cost(mid); p <= budget {
			lo = mid
		} else {
			hi = mid
		}
	}
	p, _ := cost(lo)
	return lo, p, nil
}
