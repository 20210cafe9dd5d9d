package postgres

import (
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
