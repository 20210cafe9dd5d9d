package postgres

import (
	"context"
	"log/slog"

	"callbridge/postgres/ratedeck"
	"callbridge/rating"
)

// RateDeckService stores rate decks and their rates, and reads them
// compiled (package ratedeck).
type RateDeckService = ratedeck.Service

// NewRateDeckService returns a RateDeckService backed by db.
func NewRateDeckService(db *DB) *RateDeckService { return ratedeck.New(db.pg) }

// DeckChannel is the LISTEN/NOTIFY channel on which every change to a rate
// deck or its rates is announced, with the deck's id as payload.
const DeckChannel = ratedeck.DeckChannel

// DeckSync keeps a rating.Registry equal to the rate decks in the
// database (package ratedeck).
type DeckSync = ratedeck.DeckSync

// NewDeckSync returns a DeckSync that fills reg from db's rate decks.
func NewDeckSync(db *DB, reg *rating.Registry, log *slog.Logger) *DeckSync {
	return ratedeck.NewDeckSync(NewRateDeckService(db), reg, log)
}

// CreateRateDeck is RateDeckService.CreateRateDeck.
//
// Deprecated: use a RateDeckService. It remains until the controller's
// routes take one (issue 15).
func (db *DB) CreateRateDeck(ctx context.Context, d *rating.DeckInfo) error {
	return NewRateDeckService(db).CreateRateDeck(ctx, d)
}

// RateDecks is RateDeckService.RateDecks.
//
// Deprecated: use a RateDeckService.
func (db *DB) RateDecks(ctx context.Context, accountID string) ([]*rating.DeckInfo, error) {
	return NewRateDeckService(db).RateDecks(ctx, accountID)
}

// RateDeck is RateDeckService.RateDeck.
//
// Deprecated: use a RateDeckService.
func (db *DB) RateDeck(ctx context.Context, id string) (*rating.DeckInfo, error) {
	return NewRateDeckService(db).RateDeck(ctx, id)
}

// ImportRates is RateDeckService.ImportRates.
//
// Deprecated: use a RateDeckService.
func (db *DB) ImportRates(ctx context.Context, deckID string, src rating.RateSource, replace bool) (*rating.DeckInfo, error) {
	return NewRateDeckService(db).ImportRates(ctx, deckID, src, replace)
}

// Rates is RateDeckService.Rates.
//
// Deprecated: use a RateDeckService.
func (db *DB) Rates(ctx context.Context, deckID string) ([]rating.Rate, error) {
	return NewRateDeckService(db).Rates(ctx, deckID)
}
