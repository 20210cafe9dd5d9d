package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"callbridge"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
	"callbridge/rating"
)

// seqRates is a rate source of n rates with distinct prefixes from
// first, generated as read; read counts the rates handed out.
type seqRates struct {
	first, n, i, read int
}

func (s *seqRates) Next() bool {
	if s.i >= s.n {
		return false
	}
	s.i++
	s.read++
	return true
}
func (s *seqRates) Rate() rating.Rate {
	return rating.Rate{Prefix: fmt.Sprint(s.first + s.i), PerMinute: 10000, FirstIncrement: 60, NextIncrement: 60,
		Days: rating.AllDays, Until: rating.Midnight}
}
func (s *seqRates) Line() int  { return s.i + 1 }
func (s *seqRates) Err() error { return nil }

// TestImportRatesCaps fills decks up to MaxDeckRates and an account up to
// MaxAccountRates: an import past either is refused with too_large naming
// the setting, stops reading the row after the room left, and changes
// nothing; replacing a deck counts its old rates out.
func TestImportRatesCaps(t *testing.T) {
	db, account := newDeckFixture(t)
	ctx := context.Background()
	store := postgres.NewRateDeckService(db)
	store.MaxDeckRates, store.MaxAccountRates = 100, 150
	newDeck := func(info rating.DeckInfo) string {
		t.Helper()
		info.Name, info.Currency, info.TimeZone, info.Precision = "d", "EUR", "UTC", 6
		if err := store.CreateRateDeck(ctx, &info); err != nil {
			t.Fatal(err)
		}
		return info.ID
	}
	a := newDeck(rating.DeckInfo{AccountID: account})
	b := newDeck(rating.DeckInfo{AccountID: account, EffectiveFrom: time.Now().Add(time.Hour)})
	gw := newDeck(rating.DeckInfo{Gateway: "carrier"})
	count := func(deck string) (n int, version int64) {
		t.Helper()
		if err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM rates WHERE deck_id = $1), version FROM rate_decks WHERE id = $1`, deck).Scan(&n, &version); err != nil {
			t.Fatal(err)
		}
		return n, version
	}
	steps := []struct {
		name     string
		deck     string
		first, n int
		replace  bool
		setting  string // "" when the import is taken
		wantRead int    // rates read from the source
		wantA    int    // rates of the deck afterwards
	}{
		{"deck a to its cap", a, 1000, 100, true, "", 100, 100},
		{"one more into a", a, 5000, 1, false, "CALLBRIDGE_MAX_DECK_RATES", 1, 100},
		{"replace a past its cap", a, 5000, 1000, true, "CALLBRIDGE_MAX_DECK_RATES", 101, 100},
		{"deck b past the account's room", b, 1000, 60, true, "CALLBRIDGE_MAX_ACCOUNT_RATES", 51, 0},
		{"deck b to the account's cap", b, 1000, 50, true, "", 50, 50},
		{"one more into b", b, 5000, 1, false, "CALLBRIDGE_MAX_ACCOUNT_RATES", 1, 50},
		{"replace b: its own rates count out", b, 2000, 50, true, "", 50, 50},
		{"replace a with 100 (b holds 50)", a, 7000, 100, true, "", 100, 100},
		{"gateway deck to the deck cap", gw, 1000, 100, true, "", 100, 100},
		{"gateway deck past it", gw, 1000, 101, true, "CALLBRIDGE_MAX_DECK_RATES", 101, 100},
	}
	for _, st := range steps {
		_, before := count(st.deck)
		src := &seqRates{first: st.first, n: st.n}
		_, err := store.ImportRates(ctx, st.deck, src, st.replace)
		n, after := count(st.deck)
		switch {
		case st.setting == "" && err != nil:
			t.Errorf("%s: %v, want it imported", st.name, err)
		case st.setting != "" && (callbridge.ErrorCode(err) != callbridge.ETOOLARGE || !strings.Contains(callbridge.ErrorMessage(err), st.setting)):
			t.Errorf("%s: got %v, want too_large naming %s", st.name, err, st.setting)
		case st.setting != "" && after != before:
			t.Errorf("%s: refused, but the deck's version went %d -> %d", st.name, before, after)
		}
		if src.read != st.wantRead {
			t.Errorf("%s: read %d rates of %d, want %d", st.name, src.read, st.n, st.wantRead)
		}
		if n != st.wantA {
			t.Errorf("%s: the deck holds %d rates, want %d", st.name, n, st.wantA)
		}
	}
}

// TestDeckSyncRefusesOversizedDeck puts a deck over MaxDeckRates in the
// database behind the API's back: the registry does not compile it, an
// ALERT names it, calls under it are unrated (the account's older deck
// does not price them) and the other decks are loaded; cut down, it is
// compiled.
func TestDeckSyncRefusesOversizedDeck(t *testing.T) {
	db, account := newDeckFixture(t)
	ctx := context.Background()
	store := postgres.NewRateDeckService(db)
	old := &rating.DeckInfo{AccountID: account, Name: "old", Currency: "EUR", TimeZone: "UTC", Precision: 6}
	big := &rating.DeckInfo{AccountID: account, Name: "big", Currency: "EUR", TimeZone: "UTC", Precision: 6,
		EffectiveFrom: time.Now().Add(-time.Hour)}
	for _, d := range []*rating.DeckInfo{old, big} {
		if err := store.CreateRateDeck(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.ImportRates(ctx, old.ID, rating.SliceRates(mustParse(t, "prefix,per_minute\n49,0.01\n")), true); err != nil {
		t.Fatal(err)
	}
	// 20 rates in one deck, by SQL, where the cap will be 10.
	if _, err := db.ExecContext(ctx, `INSERT INTO rates (deck_id, prefix, per_minute, first_increment, next_increment, days, time_from, time_until)
		SELECT $1, (4900 + g)::text, 20000, 60, 60, 127, 0, 86400 FROM generate_series(1, 20) g`, big.ID); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	reg, _ := pgtest.RunDeckSyncWith(t, db, log, func(s *postgres.DeckSync) { s.MaxDeckRates = 10 })

	if d := reg.Deck(old.ID); d == nil || price(d, "4930") != 10000 {
		t.Errorf("the deck under the cap: got %v, want it loaded", d)
	}
	if d := reg.AccountDeck(account, time.Now()); d != nil {
		t.Errorf("the account's deck in force is over the cap: got deck %s, want none (unrated)", d.Info().ID)
	}
	if got := reg.Refused(); len(got) != 1 || got[0].ID != big.ID {
		t.Errorf("Refused: got %v, want deck %s", got, big.ID)
	}
	if s := logs.String(); !strings.Contains(s, "ALERT: rate deck not loaded") || !strings.Contains(s, big.ID) || !strings.Contains(s, "CALLBRIDGE_MAX_DECK_RATES") {
		t.Errorf("no ALERT naming the deck and the setting in the log:\n%s", s)
	}

	if _, err := db.ExecContext(ctx, `DELETE FROM rates WHERE deck_id = $1 AND prefix::int > 4910`, big.ID); err != nil {
		t.Fatal(err)
	}
	wait.ForState(t, "the cut-down deck compiled", func() (bool, string) {
		got := price(reg.AccountDeck(account, time.Now()), "4905")
		return got == 20000, fmt.Sprintf("price %d, want 20000", got)
	})
	if got := reg.Refused(); len(got) != 0 {
		t.Errorf("Refused after the cut: got %v, want none", got)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
