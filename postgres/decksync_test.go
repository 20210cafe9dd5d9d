package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"callbridge"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
	"callbridge/rating"
)

// price is what deck d charges for a minute to number, or -1 without d.
func price(d *rating.Deck, number string) int64 {
	if d == nil {
		return -1
	}
	return d.Price(rating.Usage{Number: callbridge.Number(number), Start: time.Now(), BillMS: 60000}).Amount
}

// TestDeckSyncFollowsEveryWrite makes each kind of write to decks and rates
// (through the store and by hand in SQL) and expects the registry, fed only
// by notifications, to follow each.
func TestDeckSyncFollowsEveryWrite(t *testing.T) {
	db, account := newDeckFixture(t)
	ctx := context.Background()
	early := &rating.DeckInfo{AccountID: account, Name: "early", Currency: "EUR", TimeZone: "UTC", Precision: 6}
	if err := postgres.NewRateDeckService(db).CreateRateDeck(ctx, early); err != nil {
		t.Fatal(err)
	}
	reg, _ := pgtest.RunDeckSync(t, db, nil)
	if reg.Deck(early.ID) == nil {
		t.Fatal("the initial load missed a deck")
	}
	inForce := func() *rating.Deck { return reg.AccountDeck(account, time.Now()) }
	expect := func(what, number string, want int64) {
		t.Helper()
		wait.ForState(t, what, func() (bool, string) {
			got := price(inForce(), number)
			return got == want, fmt.Sprintf("%d, want %d", got, want)
		})
	}

	if _, err := postgres.NewRateDeckService(db).ImportRates(ctx, early.ID, rating.SliceRates(mustParse(t, "prefix,per_minute\n49,0.01\n")), true); err != nil {
		t.Fatal(err)
	}
	expect("import replace", "4930123", 10000)
	if _, err := postgres.NewRateDeckService(db).ImportRates(ctx, early.ID, rating.SliceRates(mustParse(t, "prefix,per_minute\n4930,0.02\n")), false); err != nil {
		t.Fatal(err)
	}
	expect("import append", "4930123", 20000)

	// A deck that takes over from tomorrow is loaded but not yet in force;
	// moving its date to the past puts it in force.
	later := &rating.DeckInfo{AccountID: account, Name: "later", Currency: "EUR", TimeZone: "UTC", Precision: 6,
		EffectiveFrom: time.Now().Add(24 * time.Hour)}
	if err := postgres.NewRateDeckService(db).CreateRateDeck(ctx, later); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.NewRateDeckService(db).ImportRates(ctx, later.ID, rating.SliceRates(mustParse(t, "prefix,per_minute\n49,0.05\n")), true); err != nil {
		t.Fatal(err)
	}
	wait.ForState(t, "create", func() (bool, string) {
		d := reg.Deck(later.ID)
		return d != nil && d.Len() == 1, fmt.Sprint(deckString(d))
	})
	if got := price(inForce(), "4930123"); got != 20000 {
		t.Fatalf("a deck taking over tomorrow is in force today: %d", got)
	}
	if _, err := db.ExecContext(ctx, `UPDATE rate_decks SET effective_from = now() - interval '1 hour' WHERE id = $1`, later.ID); err != nil {
		t.Fatal(err)
	}
	expect("effective date moved", "4930123", 50000)

	// A rate changed by hand, without a new version, still reloads.
	if _, err := db.ExecContext(ctx, `UPDATE rates SET per_minute = 70000 WHERE deck_id = $1`, later.ID); err != nil {
		t.Fatal(err)
	}
	expect("rate updated by hand", "4930123", 70000)
	if _, err := db.ExecContext(ctx, `DELETE FROM rates WHERE deck_id = $1`, later.ID); err != nil {
		t.Fatal(err)
	}
	expect("rates deleted by hand", "4930123", 0)

	// Deleting the newer deck puts the earlier one back in force.
	if _, err := db.ExecContext(ctx, `DELETE FROM rate_decks WHERE id = $1`, later.ID); err != nil {
		t.Fatal(err)
	}
	expect("deck deleted", "4930123", 20000)
	if reg.Deck(later.ID) != nil {
		t.Error("a deleted deck is still found by id")
	}

	// Moving a deck to another account is an assignment like any other.
	other := &callbridge.Account{Name: "other"}
	if _, err := postgres.NewAccountService(db).CreateAccount(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE rate_decks SET account_id = $2 WHERE id = $1`, early.ID, other.ID); err != nil {
		t.Fatal(err)
	}
	expect("deck moved away", "4930123", -1)
	wait.ForState(t, "deck moved to the other account", func() (bool, string) {
		d := reg.AccountDeck(other.ID, time.Now())
		return d != nil && d.Info().ID == early.ID, deckString(d)
	})

	// A carrier deck is found by its gateway.
	buy := &rating.DeckInfo{Gateway: "carrier-a", Name: "buy", Currency: "USD", TimeZone: "UTC", Precision: 6}
	if err := postgres.NewRateDeckService(db).CreateRateDeck(ctx, buy); err != nil {
		t.Fatal(err)
	}
	wait.ForState(t, "carrier deck", func() (bool, string) {
		d := reg.GatewayDeck("carrier-a", time.Now())
		return d != nil && d.Info().ID == buy.ID, deckString(d)
	})
}

func deckString(d *rating.Deck) string {
	if d == nil {
		return "no deck"
	}
	i := d.Info()
	return fmt.Sprintf("deck %s v%d with %d rates", i.ID, i.Version, d.Len())
}

// TestDeckSyncReloadsAfterLostListen cuts the sync's connections, writes a
// deck while it cannot hear the notification, and expects the registry to
// catch up once the listener is back, by the full reload a reconnect
// triggers; and a refresh of a deck to reuse the decks that did not change.
func TestDeckSyncReloadsAfterLostListen(t *testing.T) {
	u := pgtest.URL(t)
	ctx := context.Background()
	direct, err := postgres.Open(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close() })
	proxied, proxy := pgtest.Proxied(t, u)
	via, err := postgres.Open(ctx, proxied, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { via.Close() })
	a := &callbridge.Account{Name: "shop"}
	if _, err := postgres.NewAccountService(direct).CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	kept := &rating.DeckInfo{Gateway: "carrier-a", Name: "kept", Currency: "USD", TimeZone: "UTC", Precision: 6}
	if err := postgres.NewRateDeckService(direct).CreateRateDeck(ctx, kept); err != nil {
		t.Fatal(err)
	}
	reg, _ := pgtest.RunDeckSync(t, via, nil)
	keptDeck := reg.Deck(kept.ID)

	proxy.Cut()
	deck := &rating.DeckInfo{AccountID: a.ID, Name: "while cut", Currency: "EUR", TimeZone: "UTC", Precision: 6}
	if err := postgres.NewRateDeckService(direct).CreateRateDeck(ctx, deck); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.NewRateDeckService(direct).ImportRates(ctx, deck.ID, rating.SliceRates(mustParse(t, "prefix,per_minute\n49,0.03\n")), true); err != nil {
		t.Fatal(err)
	}
	proxy.Restore()
	wait.ForState(t, "deck written while the listener was cut", func() (bool, string) {
		got := price(reg.AccountDeck(a.ID, time.Now()), "4930123")
		return got == 30000, fmt.Sprintf("%d, want 30000", got)
	})
	if reg.Deck(kept.ID) != keptDeck {
		t.Error("the full reload compiled an unchanged deck again instead of reusing it")
	}
}
