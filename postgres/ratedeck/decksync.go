package ratedeck

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"callbridge"
	"callbridge/postgres/internal/pg"
	"callbridge/rating"

	"github.com/jmoiron/sqlx"
)

// DeckChannel is the LISTEN/NOTIFY channel on which every change to a rate
// deck or its rates is announced, with the deck's id as payload. Triggers
// send it (sql/0014_deck_notify.sql), so every writer does: the API, the
// `callbridge rates` tool and a hand-written UPDATE alike.
const DeckChannel = "callbridge_decks"

// DeckSync keeps a rating.Registry equal to the rate decks in the
// database. Run loads every deck, then reloads each deck a notification
// on DeckChannel names, and after the LISTEN connection was lost (when
// notifications may have been missed) reloads everything, reusing the
// compiled decks whose version did not change. A deck is read and compiled
// beside the registry and swapped in whole, so lookups never wait for the
// database and never see half a deck. Refresh reloads one deck at once,
// for this controller's own writes.
//
// A deck with more rates than MaxDeckRates is not compiled: the registry
// holds it refused (rating.RefusedDeck), so calls it would price are
// unrated, and an ALERT is logged.
type DeckSync struct {
	decks *Service
	reg   *rating.Registry
	log   *slog.Logger
	// MaxDeckRates is the most rates a deck may have to be compiled
	// (CALLBRIDGE_MAX_DECK_RATES); zero or less: no cap.
	MaxDeckRates int
	// RetryDelay is how long Run waits before trying again after a
	// failed load (the database is unavailable); zero means one second.
	RetryDelay time.Duration

	// compiling is held while a deck is read and compiled: one at a
	// time in the process, so that the memory a load takes beside the
	// registry is one deck's, not one per import answered at once plus
	// the notifications' reloads.
	compiling sync.Mutex
	compiles  atomic.Uint64
}

// Compiles returns how many deck versions the sync has read and compiled
// (or refused) so far.
func (s *DeckSync) Compiles() uint64 { return s.compiles.Load() }

// NewDeckSync returns a DeckSync that fills reg from decks.
func NewDeckSync(decks *Service, reg *rating.Registry, log *slog.Logger) *DeckSync {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &DeckSync{decks: decks, reg: reg, log: log}
}

// Run listens on DeckChannel, loads every deck, closes ready (if not nil),
// then applies every change until ctx ends. A load that fails is retried
// after RetryDelay; the registry keeps serving what it has meanwhile. It
// returns the listener's error, or nil when ctx ends.
func (s *DeckSync) Run(ctx context.Context, ready chan<- struct{}) error {
	return s.decks.db.Follow(ctx, pg.Follower{
		What:       "rate decks",
		Name:       "deck",
		Key:        "deck",
		Channel:    DeckChannel,
		Queue:      4096,
		RetryDelay: s.RetryDelay,
		Reload:     s.Reload,
		Refresh:    s.Refresh,
	}, s.log, ready)
}

// Reload reads every deck and makes them the registry's content. Decks
// the registry holds at the version the database has are reused, not read
// again.
func (s *DeckSync) Reload(ctx context.Context) error {
	s.compiling.Lock()
	defer s.compiling.Unlock()
	start := time.Now()
	mark := s.reg.Mark()
	var decks []*rating.Deck
	loaded := 0
	err := s.decks.loadDecks(ctx, s.MaxDeckRates, s.held, func(d *rating.Deck, compiled bool) {
		decks = append(decks, d)
		if compiled {
			loaded++
			s.compiles.Add(1)
			s.alertRefused(d)
		}
	})
	if err != nil {
		return err
	}
	s.reg.Replace(decks, mark)
	s.log.Info("rate decks loaded", "decks", len(decks), "compiled", loaded, "took", time.Since(start).String())
	return nil
}

// Refresh reads deck id again into the registry, or removes it from the
// registry when it no longer exists. API handlers call it after their own
// writes, so the next request on this controller prices with the deck
// without waiting for the notification.
func (s *DeckSync) Refresh(ctx context.Context, id string) error {
	s.compiling.Lock()
	defer s.compiling.Unlock()
	d, err := s.decks.loadDeck(ctx, id, s.MaxDeckRates)
	if err != nil {
		return err
	}
	s.compiles.Add(1)
	if d == nil {
		s.reg.Remove(id)
		return nil
	}
	if s.reg.Put(d) {
		s.alertRefused(d)
	}
	return nil
}

// held returns the deck the registry holds at id and version, or nil.
func (s *DeckSync) held(id string, version int64) *rating.Deck {
	if d := s.reg.Held(id); d != nil && d.Info().Version == version {
		return d
	}
	return nil
}

// alertRefused logs an ALERT when d is a deck refused for its size: it
// prices nothing until it is cut down (or the cap raised).
func (s *DeckSync) alertRefused(d *rating.Deck) {
	if d.Refused() == "" {
		return
	}
	info := d.Info()
	s.log.Error("ALERT: rate deck not loaded: "+d.Refused()+"; calls it would price are unrated",
		"deck", info.ID, "account", info.AccountID, "gateway", info.Gateway, "version", info.Version)
}

// LoadDeck reads a deck and its rates in one snapshot and compiles them,
// or returns it refused (rating.RefusedDeck) when it has more than
// MaxDeckRates rates. It returns nil, nil when there is no such deck.
func (s *Service) LoadDeck(ctx context.Context, id string) (*rating.Deck, error) {
	return s.loadDeck(ctx, id, s.MaxDeckRates)
}

// loadDeck is LoadDeck with the cap maxRates.
func (s *Service) loadDeck(ctx context.Context, id string, maxRates int) (d *rating.Deck, err error) {
	if !callbridge.IsUUID(id) {
		return nil, nil
	}
	err = deckSnapshot(ctx, s.db, func(tx *sqlx.Tx) error {
		var row deckRow
		err := tx.GetContext(ctx, &row, `SELECT `+deckColumns+` FROM rate_decks WHERE id = $1`, id)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return pg.Error(err)
		}
		d, err = compileDeck(ctx, tx, &row, maxRates)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: load rate deck %s: %w", id, err)
	}
	return d, nil
}

// LoadDecks reads every deck in one snapshot and calls fn with each,
// compiled one at a time so that only one deck's rows are in memory at
// once. have returns a compiled deck the caller already holds at the
// given id and version, or nil; such a deck's rates are not read again
// (fn gets it with compiled false). A deck that does not compile is
// logged and left out: one bad deck must not keep the others from
// pricing. A deck with more than MaxDeckRates rates comes refused
// (rating.RefusedDeck).
func (s *Service) LoadDecks(ctx context.Context, have func(id string, version int64) *rating.Deck, fn func(d *rating.Deck, compiled bool)) error {
	return s.loadDecks(ctx, s.MaxDeckRates, have, fn)
}

func (s *Service) loadDecks(ctx context.Context, maxRates int, have func(id string, version int64) *rating.Deck, fn func(d *rating.Deck, compiled bool)) error {
	err := deckSnapshot(ctx, s.db, func(tx *sqlx.Tx) error {
		var rows []deckRow
		if err := tx.SelectContext(ctx, &rows, `SELECT `+deckColumns+` FROM rate_decks ORDER BY id`); err != nil {
			return pg.Error(err)
		}
		for i := range rows {
			if d := have(rows[i].ID, rows[i].Version); d != nil {
				fn(d, false)
				continue
			}
			d, err := compileDeck(ctx, tx, &rows[i], maxRates)
			if err != nil {
				if callbridge.ErrorCode(err) == callbridge.EINVALID {
					s.db.Logger.Error("rate deck does not compile; left out", "deck", rows[i].ID, "error", err)
					continue
				}
				return err
			}
			fn(d, true)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: load rate decks: %w", err)
	}
	return nil
}

// deckSnapshot runs fn in a read-only repeatable-read transaction, so a
// deck's version is the version of the rates read with it.
func deckSnapshot(ctx context.Context, db *pg.DB, fn func(tx *sqlx.Tx) error) error {
	tx, err := db.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return pg.Error(err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return pg.Error(tx.Commit())
}

// compileDeck reads the rates of the deck in row and compiles them as
// they stream, so that only the compiled deck is held, not the rows too.
// A deck with more than maxRates rates (when maxRates > 0) is not read
// but returned refused.
func compileDeck(ctx context.Context, tx *sqlx.Tx, row *deckRow, maxRates int) (*rating.Deck, error) {
	info := row.info()
	// Counting stops past the cap: a deck of millions of rates costs the
	// cap's worth of index entries, not all of them.
	limit := int64(math.MaxInt64)
	if maxRates > 0 {
		limit = int64(maxRates) + 1
	}
	var n int64
	if err := tx.GetContext(ctx, &n, `SELECT count(*) FROM (SELECT 1 FROM rates WHERE deck_id = $1 LIMIT $2) r`, row.ID, limit); err != nil {
		return nil, pg.Error(err)
	}
	if maxRates > 0 && n > int64(maxRates) {
		return rating.RefusedDeck(*info, fmt.Sprintf("it has more than %d rates (CALLBRIDGE_MAX_DECK_RATES)", maxRates)), nil
	}
	loc, err := time.LoadLocation(info.TimeZone)
	if err != nil {
		return nil, callbridge.FieldError("time_zone", "deck %s: unknown zone %q: %v", info.ID, info.TimeZone, err)
	}
	b, err := rating.NewDeckBuilder(*info, loc, int(n))
	if err != nil {
		return nil, fmt.Errorf("compile deck %s: %w", info.ID, err)
	}
	err = eachRate(ctx, tx, row.ID, func(r *rating.Rate) error {
		if maxRates > 0 && b.Len() >= maxRates {
			// Not in one snapshot with the count, but the guard is free.
			return callbridge.Errorf(callbridge.ETOOLARGE, "deck %s: more than %d rates", info.ID, maxRates)
		}
		return b.Add(r)
	})
	if err != nil {
		return nil, fmt.Errorf("compile deck %s: %w", info.ID, err)
	}
	d, err := b.Deck()
	if err != nil {
		return nil, fmt.Errorf("compile deck %s: %w", info.ID, err)
	}
	return d, nil
}
