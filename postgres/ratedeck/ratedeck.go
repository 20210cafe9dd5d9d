// Package ratedeck stores rate decks and their rates, and keeps a
// rating.Registry equal to them (DeckSync). It is part of the postgres
// adapter: build it through postgres.NewRateDeckService and
// postgres.NewDeckSync.
package ratedeck

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"callbridge"
	"callbridge/postgres/internal/pg"
	"callbridge/rating"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// Service stores rate decks and their rates.
type Service struct {
	db *pg.DB
	// MaxDeckRates caps the rates of one deck, an account's or a
	// gateway's (CALLBRIDGE_MAX_DECK_RATES): every controller holds every
	// deck compiled in memory. An import that would pass it is refused
	// (ETOOLARGE) and a deck over it in the database is not compiled.
	// Zero or less: no cap.
	MaxDeckRates int
	// MaxAccountRates caps the rates of all of one account's decks
	// together (CALLBRIDGE_MAX_ACCOUNT_RATES), so that no tenant can make
	// every controller hold more than that. Zero or less: no cap.
	MaxAccountRates int
}

// New returns a Service backed by db.
func New(db *pg.DB) *Service { return &Service{db: db} }

// deckColumns are the rate_decks columns in deckRow's order.
const deckColumns = `id, coalesce(account_id::text, '') AS account_id, coalesce(gateway, '') AS gateway,
	name, currency, time_zone, precision, rounding, short_ms,
	default_per_minute, default_connect_fee, default_min_charge,
	default_first_increment, default_next_increment, default_description,
	holidays, effective_from, version, created_at`

type deckRow struct {
	ID                    string         `db:"id"`
	AccountID             string         `db:"account_id"`
	Gateway               string         `db:"gateway"`
	Name                  string         `db:"name"`
	Currency              string         `db:"currency"`
	TimeZone              string         `db:"time_zone"`
	Precision             int            `db:"precision"`
	Rounding              string         `db:"rounding"`
	ShortMS               int64          `db:"short_ms"`
	DefaultPerMinute      sql.NullInt64  `db:"default_per_minute"`
	DefaultConnectFee     int64          `db:"default_connect_fee"`
	DefaultMinCharge      int64          `db:"default_min_charge"`
	DefaultFirstIncrement int32          `db:"default_first_increment"`
	DefaultNextIncrement  int32          `db:"default_next_increment"`
	DefaultDescription    string         `db:"default_description"`
	Holidays              pq.StringArray `db:"holidays"`
	EffectiveFrom         time.Time      `db:"effective_from"`
	Version               int64          `db:"version"`
	CreatedAt             time.Time      `db:"created_at"`
}

func (r *deckRow) info() *rating.DeckInfo {
	d := &rating.DeckInfo{
		ID: r.ID, AccountID: r.AccountID, Gateway: r.Gateway, Name: r.Name,
		Currency: r.Currency, TimeZone: r.TimeZone, Precision: r.Precision,
		Rounding: rating.Rounding(r.Rounding), ShortMS: r.ShortMS,
		Holidays: []string(r.Holidays), Version: r.Version, CreatedAt: r.CreatedAt.UTC(),
	}
	if !r.EffectiveFrom.Equal(time.Unix(0, 0)) {
		d.EffectiveFrom = r.EffectiveFrom.UTC()
	}
	if len(d.Holidays) == 0 {
		d.Holidays = nil
	}
	if r.DefaultPerMinute.Valid {
		d.Default = &rating.Rate{
			Description: r.DefaultDescription, PerMinute: r.DefaultPerMinute.Int64,
			ConnectFee: r.DefaultConnectFee, MinCharge: r.DefaultMinCharge,
			FirstIncrement: r.DefaultFirstIncrement, NextIncrement: r.DefaultNextIncrement,
		}
	}
	return d
}

// rateRow is one row of rates.
type rateRow struct {
	Prefix         string       `db:"prefix"`
	Description    string       `db:"description"`
	Band           string       `db:"band"`
	PerMinute      int64        `db:"per_minute"`
	ConnectFee     int64        `db:"connect_fee"`
	MinCharge      int64        `db:"min_charge"`
	FirstIncrement int32        `db:"first_increment"`
	NextIncrement  int32        `db:"next_increment"`
	Days           int16        `db:"days"`
	TimeFrom       int32        `db:"time_from"`
	TimeUntil      int32        `db:"time_until"`
	EffectiveFrom  sql.NullTime `db:"effective_from"`
	EffectiveUntil sql.NullTime `db:"effective_until"`
	Priority       int32        `db:"priority"`
}

func (r *rateRow) rate() rating.Rate {
	rt := rating.Rate{
		Prefix: r.Prefix, Description: r.Description, Band: r.Band,
		PerMinute: r.PerMinute, ConnectFee: r.ConnectFee, MinCharge: r.MinCharge,
		FirstIncrement: r.FirstIncrement, NextIncrement: r.NextIncrement,
		Days: rating.Days(r.Days), From: rating.TimeOfDay(r.TimeFrom), Until: rating.TimeOfDay(r.TimeUntil),
		Priority: r.Priority,
	}
	if r.EffectiveFrom.Valid {
		rt.EffectiveFrom = r.EffectiveFrom.Time.UTC()
	}
	if r.EffectiveUntil.Valid {
		rt.EffectiveUntil = r.EffectiveUntil.Time.UTC()
	}
	return rt
}

const rateColumns = `prefix, description, band, per_minute, connect_fee, min_charge,
	first_increment, next_increment, days, time_from, time_until,
	effective_from, effective_until, priority`

// CreateRateDeck stores a new deck with no rates and fills in its ID,
// Version and CreatedAt. EINVALID (including an unknown time zone or
// account), ECONFLICT when its owner already has a deck taking over at
// the same EffectiveFrom.
func (s *Service) CreateRateDeck(ctx context.Context, d *rating.DeckInfo) error {
	d.ID, d.Version = "", 0
	if d.Rounding == "" {
		d.Rounding = rating.RoundUp
	}
	if err := d.Validate(); err != nil {
		return err
	}
	if _, err := time.LoadLocation(d.TimeZone); err != nil || d.TimeZone == "Local" {
		return callbridge.FieldError("time_zone", "unknown IANA time zone %q", d.TimeZone)
	}
	if d.AccountID != "" && !callbridge.IsUUID(d.AccountID) {
		return callbridge.FieldError("account_id", "no such account")
	}
	var def rating.Rate
	var defPerMinute sql.NullInt64
	if d.Default != nil {
		def = *d.Default
		defPerMinute = sql.NullInt64{Int64: def.PerMinute, Valid: true}
	} else {
		def.FirstIncrement, def.NextIncrement = 60, 60
	}
	eff := time.Unix(0, 0).UTC()
	if !d.EffectiveFrom.IsZero() {
		eff = d.EffectiveFrom.UTC()
	}
	holidays := d.Holidays
	if holidays == nil {
		holidays = []string{}
	}
	var row struct {
		ID        string    `db:"id"`
		Version   int64     `db:"version"`
		CreatedAt time.Time `db:"created_at"`
	}
	err := s.db.QueryRowxContext(ctx, `INSERT INTO rate_decks (account_id, gateway, name, currency, time_zone,
			precision, rounding, short_ms, default_per_minute, default_connect_fee, default_min_charge,
			default_first_increment, default_next_increment, default_description, holidays, effective_from)
		VALUES (nullif($1, '')::uuid, nullif($2, ''), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15::date[], $16)
		RETURNING id, version, created_at`,
		d.AccountID, d.Gateway, d.Name, d.Currency, d.TimeZone, d.Precision, string(d.Rounding), d.ShortMS,
		defPerMinute, def.ConnectFee, def.MinCharge, def.FirstIncrement, def.NextIncrement, def.Description,
		pq.Array(holidays), eff).StructScan(&row)
	if err != nil {
		return fmt.Errorf("postgres: create rate deck: %w", pg.Error(err))
	}
	d.ID, d.Version, d.CreatedAt = row.ID, row.Version, row.CreatedAt.UTC()
	return nil
}

// RateDecks lists an account's decks, or with accountID empty every
// carrier (gateway) deck, newest first.
func (s *Service) RateDecks(ctx context.Context, accountID string) ([]*rating.DeckInfo, error) {
	var rows []deckRow
	var err error
	if accountID == "" {
		err = s.db.SelectContext(ctx, &rows, `SELECT `+deckColumns+` FROM rate_decks WHERE gateway IS NOT NULL ORDER BY created_at DESC, id`)
	} else {
		if !callbridge.IsUUID(accountID) {
			return []*rating.DeckInfo{}, nil
		}
		err = s.db.SelectContext(ctx, &rows, `SELECT `+deckColumns+` FROM rate_decks WHERE account_id = $1 ORDER BY created_at DESC, id`, accountID)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: rate decks: %w", pg.Error(err))
	}
	out := make([]*rating.DeckInfo, len(rows))
	for i := range rows {
		out[i] = rows[i].info()
	}
	return out, nil
}

// RateDeck returns a deck by id. ENOTFOUND. Callers check ownership.
func (s *Service) RateDeck(ctx context.Context, id string) (*rating.DeckInfo, error) {
	if !callbridge.IsUUID(id) {
		return nil, pg.NotFound("rate deck")
	}
	var row deckRow
	if err := s.db.GetContext(ctx, &row, `SELECT `+deckColumns+` FROM rate_decks WHERE id = $1`, id); err != nil {
		return nil, fmt.Errorf("postgres: rate deck: %w", pg.NotFoundAs(pg.Error(err), "rate deck"))
	}
	return row.info(), nil
}

// ImportRates adds the rates of src to a deck, replacing all of its rates
// when replace is set, in one transaction: either every rate is stored or
// none is. The deck's version increases. It returns the updated deck.
//
// The deck may hold at most MaxDeckRates rates and its account's decks
// MaxAccountRates together (a replaced deck's old rates not counted):
// reading src stops at the first row past the room left, and the import
// is refused with ETOOLARGE naming the limit. Imports into one account's
// decks take turns, so two cannot pass the account's cap together.
//
// It streams: rows go through COPY into a temporary table as src yields
// them, so memory does not grow with the file; duplicate rows within the
// file are then found by the database, and src's own bad rows reported
// with them. EINVALID for a bad rate (a *rating.CSVError when src
// reported bad rows or the file repeats a row), ENOTFOUND, ECONFLICT when
// a rate duplicates one already in the deck (same prefix, days, from,
// until, effective_from and priority). A failure to read src is returned
// wrapped.
func (s *Service) ImportRates(ctx context.Context, deckID string, src rating.RateSource, replace bool) (*rating.DeckInfo, error) {
	if !callbridge.IsUUID(deckID) {
		return nil, pg.NotFound("rate deck")
	}
	var info *rating.DeckInfo
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		// The update locks the deck: imports into one deck take turns.
		var row deckRow
		err := tx.GetContext(ctx, &row, `UPDATE rate_decks SET version = version + 1, updated_at = now()
			WHERE id = $1 RETURNING `+deckColumns, deckID)
		if err != nil {
			return pg.NotFoundAs(pg.Error(err), "rate deck")
		}
		info = row.info()
		room, err := s.rateRoom(ctx, tx, info, replace)
		if err != nil {
			return err
		}
		if err := copyRates(ctx, tx, src, room); err != nil {
			return err
		}
		if err := duplicateRows(ctx, tx, src.Err()); err != nil {
			return err
		}
		if replace {
			if _, err := tx.ExecContext(ctx, `DELETE FROM rates WHERE deck_id = $1`, deckID); err != nil {
				return pg.Error(err)
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO rates (deck_id, `+rateColumns+`)
			SELECT $1, `+rateColumns+` FROM rate_import`, deckID)
		return pg.Error(err)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: import rates: %w", err)
	}
	return info, nil
}

// rateLimit is how many rates an import may add and the error that
// refuses one more.
type rateLimit struct {
	n   int // < 0: no limit
	err error
}

// accountRatesLock is the first key of the advisory lock that makes
// imports into one account's decks take turns ("rate").
const accountRatesLock = 0x72617465

// rateRoom locks the deck's account against other imports until tx ends
// and returns how many rates the import may add under MaxDeckRates and
// MaxAccountRates, the deck (row-locked by the caller) holding what it
// holds unless replace.
func (s *Service) rateRoom(ctx context.Context, tx *pg.Tx, d *rating.DeckInfo, replace bool) (rateLimit, error) {
	room := rateLimit{n: -1}
	limit := func(n int, err error) {
		if n < 0 {
			n = 0
		}
		if room.n < 0 || n < room.n {
			room = rateLimit{n: n, err: err}
		}
	}
	if s.MaxDeckRates > 0 {
		held := 0
		if !replace {
			if err := tx.GetContext(ctx, &held, `SELECT count(*) FROM rates WHERE deck_id = $1`, d.ID); err != nil {
				return room, pg.Error(err)
			}
		}
		limit(s.MaxDeckRates-held, DeckRatesError(s.MaxDeckRates))
	}
	if s.MaxAccountRates > 0 && d.AccountID != "" {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, accountRatesLock, d.AccountID); err != nil {
			return room, pg.Error(err)
		}
		var held int
		if err := tx.GetContext(ctx, &held, `SELECT count(*) FROM rates r JOIN rate_decks d ON d.id = r.deck_id
			WHERE d.account_id = $1 AND NOT ($3 AND d.id = $2)`, d.AccountID, d.ID, replace); err != nil {
			return room, pg.Error(err)
		}
		limit(s.MaxAccountRates-held, AccountRatesError(s.MaxAccountRates))
	}
	return room, nil
}

// DeckRatesError is the refusal of an import that would make a deck hold
// more than max rates.
func DeckRatesError(max int) error {
	return callbridge.Errorf(callbridge.ETOOLARGE, "a rate deck may hold at most %d rates (CALLBRIDGE_MAX_DECK_RATES); nothing was imported", max)
}

// AccountRatesError is the refusal of an import that would make an
// account's decks hold more than max rates together.
func AccountRatesError(max int) error {
	return callbridge.Errorf(callbridge.ETOOLARGE, "an account's rate decks may hold at most %d rates together (CALLBRIDGE_MAX_ACCOUNT_RATES); nothing was imported", max)
}

// copyRates streams src into the temporary table rate_import, each rate
// with its line, refusing the row past room. It stops at src's first read
// failure; bad rows src skipped are left to duplicateRows to report.
func copyRates(ctx context.Context, tx *pg.Tx, src rating.RateSource, room rateLimit) error {
	n := 0
	return pg.CopyRows(ctx, tx, "rate_import", "rates", rateColumns, func() ([]any, error) {
		if !src.Next() {
			return nil, rating.ReadFailure(src.Err())
		}
		if n++; room.n >= 0 && n > room.n {
			return nil, room.err
		}
		r := src.Rate()
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("line %d: %w", src.Line(), err)
		}
		return []any{src.Line(), r.Prefix, r.Description, r.Band,
			r.PerMinute, r.ConnectFee, r.MinCharge, r.FirstIncrement, r.NextIncrement,
			int16(r.Days), int32(r.From), int32(r.Until),
			pg.NullTime(r.EffectiveFrom), pg.NullTime(r.EffectiveUntil), r.Priority}, nil
	})
}

// duplicateRows refuses the import when the file repeats a rate's key or
// srcErr (the source's own verdict) lists bad rows: one *rating.CSVError
// with both, in line order, at most rating.MaxRowErrors listed.
func duplicateRows(ctx context.Context, tx *pg.Tx, srcErr error) error {
	dups, total, err := pg.Duplicates(ctx, tx, "rate_import", "prefix, days, time_from, time_until, coalesce(effective_from, '1970-01-01T00:00:00Z'::timestamptz), priority", rating.MaxRowErrors)
	if err != nil {
		return err
	}
	rows := make([]rating.RowError, len(dups))
	for i, d := range dups {
		rows[i] = rating.RowError{Line: d.Line, Message: rating.DuplicateMessage(d.First)}
	}
	return rating.WithDuplicates(srcErr, rows, total-len(dups))
}

// Rates returns a deck's rates ordered by prefix, priority and
// effective_from (the order WriteCSV exports). ENOTFOUND.
func (s *Service) Rates(ctx context.Context, deckID string) ([]rating.Rate, error) {
	if _, err := s.RateDeck(ctx, deckID); err != nil {
		return nil, err
	}
	rates, err := selectRates(ctx, s.db, deckID)
	if err != nil {
		return nil, fmt.Errorf("postgres: rates: %w", err)
	}
	return rates, nil
}

type queryer interface {
	QueryxContext(ctx context.Context, query string, args ...any) (*sqlx.Rows, error)
}

// selectRates reads a deck's rates in the order WriteCSV exports.
func selectRates(ctx context.Context, q queryer, deckID string) ([]rating.Rate, error) {
	rates := []rating.Rate{}
	err := eachRate(ctx, q, deckID, func(r *rating.Rate) error {
		rates = append(rates, *r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rates, nil
}

// eachRate calls fn with each of a deck's rates as the rows arrive, in
// the order WriteCSV exports (which is the compiled deck's order: see
// rating.DeckBuilder), until fn fails.
func eachRate(ctx context.Context, q queryer, deckID string, fn func(r *rating.Rate) error) error {
	rows, err := q.QueryxContext(ctx, `SELECT `+rateColumns+` FROM rates WHERE deck_id = $1
		ORDER BY prefix, priority, effective_from DESC NULLS LAST, days, time_from`, deckID)
	if err != nil {
		return pg.Error(err)
	}
	defer rows.Close()
	var row rateRow
	for rows.Next() {
		if err := rows.StructScan(&row); err != nil {
			return pg.Error(err)
		}
		r := row.rate()
		if err := fn(&r); err != nil {
			return err
		}
	}
	return pg.Error(rows.Err())
}
