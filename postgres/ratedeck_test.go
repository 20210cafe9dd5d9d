package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
	"callbridge/rating"
)

func newDeckFixture(t *testing.T) (*postgres.DB, string) {
	t.Helper()
	db := pgtest.New(t)
	a := &callbridge.Account{Name: "shop"}
	if _, err := postgres.NewAccountService(db).CreateAccount(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	return db, a.ID
}

func mustParse(t *testing.T, csv string) []rating.Rate {
	t.Helper()
	rates, err := rating.ParseCSV(bytes.NewBufferString(csv))
	if err != nil {
		t.Fatal(err)
	}
	return rates
}

func TestRateDecks(t *testing.T) {
	db, account := newDeckFixture(t)
	ctx := context.Background()

	deck := &rating.DeckInfo{AccountID: account, Name: "retail", Currency: "EUR", TimeZone: "Europe/Berlin", Precision: 4,
		Holidays: []string{"2025-12-25"}, Default: &rating.Rate{PerMinute: 300000, FirstIncrement: 60, NextIncrement: 60}}
	if err := postgres.NewRateDeckService(db).CreateRateDeck(ctx, deck); err != nil {
		t.Fatal(err)
	}
	if deck.ID == "" || deck.Version != 1 || deck.CreatedAt.IsZero() || deck.Rounding != rating.RoundUp {
		t.Fatalf("got %+v, want id, version 1, created_at and rounding up", deck)
	}
	carrier := &rating.DeckInfo{Gateway: "carrier-a", Name: "buy", Currency: "USD", TimeZone: "America/New_York", Precision: 6}
	if err := postgres.NewRateDeckService(db).CreateRateDeck(ctx, carrier); err != nil {
		t.Fatal(err)
	}

	for name, bad := range map[string]*rating.DeckInfo{
		"time_zone":  {AccountID: account, Name: "x", Currency: "EUR", TimeZone: "Mars/Olympus"},
		"account_id": {AccountID: account, Gateway: "gw", Name: "x", Currency: "EUR", TimeZone: "UTC"},
		"currency":   {AccountID: account, Name: "x", Currency: "euro", TimeZone: "UTC"},
	} {
		if err := postgres.NewRateDeckService(db).CreateRateDeck(ctx, bad); callbridge.ErrorField(err) != name {
			t.Errorf("%s: got %v, want an error on %s", name, err, name)
		}
	}
	if err := postgres.NewRateDeckService(db).CreateRateDeck(ctx, &rating.DeckInfo{AccountID: account, Name: "again", Currency: "EUR", TimeZone: "UTC"}); callbridge.ErrorCode(err) != callbridge.ECONFLICT {
		t.Errorf("second deck with the same effective_from: got %v, want conflict", err)
	}

	got, err := postgres.NewRateDeckService(db).RateDeck(ctx, deck.ID)
	if err != nil || !reflect.DeepEqual(got, deck) {
		t.Errorf("got %+v, %v, want %+v", got, err, deck)
	}
	if _, err := postgres.NewRateDeckService(db).RateDeck(ctx, "00000000-0000-0000-0000-000000000000"); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("unknown deck: got %v, want not found", err)
	}
	if _, err := postgres.NewRateDeckService(db).RateDeck(ctx, "nope"); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("malformed id: got %v, want not found", err)
	}
	list, err := postgres.NewRateDeckService(db).RateDecks(ctx, account)
	if err != nil || len(list) != 1 || list[0].ID != deck.ID {
		t.Errorf("account decks: got %+v, %v", list, err)
	}
	list, err = postgres.NewRateDeckService(db).RateDecks(ctx, "")
	if err != nil || len(list) != 1 || list[0].ID != carrier.ID {
		t.Errorf("carrier decks: got %+v, %v", list, err)
	}

	rates := mustParse(t, "prefix,per_minute,days,from,until,first_increment,next_increment,priority,band,effective_from\n"+
		"4915,0.12,mon-fri,08:00,18:00,1,1,0,peak,\n"+
		"4915,0.06,,,,1,1,1,offpeak,\n"+
		"49,0.02,,,,,,,,2025-01-01\n")
	info, err := postgres.NewRateDeckService(db).ImportRates(ctx, deck.ID, rating.SliceRates(rates), true)
	if err != nil || info.Version != 2 {
		t.Fatalf("import: got %+v, %v, want version 2", info, err)
	}
	stored, err := postgres.NewRateDeckService(db).Rates(ctx, deck.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []rating.Rate{rates[2], rates[0], rates[1]} // by prefix, then priority
	if !reflect.DeepEqual(stored, want) {
		t.Errorf("got rates %+v, want %+v", stored, want)
	}

	// A duplicate of a stored rate refuses the whole append.
	dup := mustParse(t, "prefix,per_minute\n4930,0.01\n4915,0.5\n")
	dup[1] = rates[0]
	if _, err := postgres.NewRateDeckService(db).ImportRates(ctx, deck.ID, rating.SliceRates(dup), false); callbridge.ErrorCode(err) != callbridge.ECONFLICT {
		t.Errorf("duplicate append: got %v, want conflict", err)
	}
	if n, _ := postgres.NewRateDeckService(db).Rates(ctx, deck.ID); len(n) != 3 {
		t.Errorf("after refused append: got %d rates, want 3", len(n))
	}
	if _, err := postgres.NewRateDeckService(db).ImportRates(ctx, "00000000-0000-0000-0000-000000000000", rating.SliceRates(rates), false); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("unknown deck: got %v, want not found", err)
	}

	// Loading compiles the deck with its rates, at its version.
	at := time.Date(2025, 1, 15, 10, 0, 0, 0, time.UTC)
	d1, err := postgres.NewRateDeckService(db).LoadDeck(ctx, deck.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d1.Len() != 3 || d1.Info().Version != 2 {
		t.Errorf("got %d rates version %d, want 3 and 2", d1.Len(), d1.Info().Version)
	}
	if r := d1.Price(rating.Usage{Number: "4915112345678", Start: at, BillMS: 60000}); r.Amount != 120000 || r.Band != "peak" {
		t.Errorf("got %d %q, want 120000 peak", r.Amount, r.Band)
	}
	if r := d1.Price(rating.Usage{Number: "81312345678", Start: at, BillMS: 60000}); r.Amount != 300000 || !r.Flags.Has(rating.FlagUnratedDefault) {
		t.Errorf("default: got %d %q, want 300000 unrated_default", r.Amount, r.Flags)
	}
	if _, err := postgres.NewRateDeckService(db).ImportRates(ctx, deck.ID, rating.SliceRates(mustParse(t, "prefix,per_minute\n4930,0.01\n")), false); err != nil {
		t.Fatal(err)
	}
	d2, err := postgres.NewRateDeckService(db).LoadDeck(ctx, deck.ID)
	if err != nil || d2.Len() != 4 || d2.Info().Version != 3 {
		t.Errorf("after import: got %v, %v, want 4 rates at version 3", d2, err)
	}
	for _, id := range []string{"00000000-0000-0000-0000-000000000000", "not-a-uuid"} {
		if d, err := postgres.NewRateDeckService(db).LoadDeck(ctx, id); d != nil || err != nil {
			t.Errorf("LoadDeck(%s): got %v, %v, want nil, nil", id, d, err)
		}
	}
	g, err := postgres.NewRateDeckService(db).LoadDeck(ctx, carrier.ID)
	if err != nil || g.Info().Gateway != "carrier-a" || g.Location().String() != "America/New_York" {
		t.Errorf("gateway deck: got %v, %v", g, err)
	}
}

// TestImportRatesLarge imports 100,000 rates with COPY, then replaces them.
func TestImportRatesLarge(t *testing.T) {
	db, account := newDeckFixture(t)
	ctx := context.Background()
	deck := &rating.DeckInfo{AccountID: account, Name: "big", Currency: "EUR", TimeZone: "UTC", Precision: 6}
	if err := postgres.NewRateDeckService(db).CreateRateDeck(ctx, deck); err != nil {
		t.Fatal(err)
	}
	rates := make([]rating.Rate, 100_000)
	for i := range rates {
		rates[i] = rating.Rate{Prefix: "1" + itoa6(i), PerMinute: int64(i), FirstIncrement: 60, NextIncrement: 60, Days: rating.AllDays, Until: rating.Midnight}
	}
	start := time.Now()
	if _, err := postgres.NewRateDeckService(db).ImportRates(ctx, deck.ID, rating.SliceRates(rates), true); err != nil {
		t.Fatal(err)
	}
	t.Logf("imported %d rates in %v", len(rates), time.Since(start))
	if _, err := postgres.NewRateDeckService(db).ImportRates(ctx, deck.ID, rating.SliceRates(rates[:10]), true); err != nil {
		t.Fatal(err)
	}
	got, err := postgres.NewRateDeckService(db).Rates(ctx, deck.ID)
	if err != nil || len(got) != 10 {
		t.Errorf("after replace: got %d rates, %v, want 10", len(got), err)
	}
}

func itoa6(i int) string {
	b := []byte("000000")
	for j := 5; j >= 0; j-- {
		b[j] = byte('0' + i%10)
		i /= 10
	}
	return string(b)
}

// TestImportRatesStream imports a file straight from a RateReader: the
// database finds rows the file repeats and reports them with the rows the
// reader refused, by line, and stores nothing.
func TestImportRatesStream(t *testing.T) {
	db, account := newDeckFixture(t)
	ctx := context.Background()
	deck := &rating.DeckInfo{AccountID: account, Name: "stream", Currency: "EUR", TimeZone: "UTC", Precision: 6}
	if err := postgres.NewRateDeckService(db).CreateRateDeck(ctx, deck); err != nil {
		t.Fatal(err)
	}
	bad := "prefix,per_minute,priority\n" +
		"4930,0.01,0\n" + // 2
		"4931,0.01,0\n" + // 3
		"04930,0.01,0\n" + // 4: bad prefix
		"4930,0.02,0\n" + // 5: repeats line 2
		"4930,0.02,1\n" + // 6: another priority, fine
		"4931,0.03,0\n" // 7: repeats line 3
	_, err := postgres.NewRateDeckService(db).ImportRates(ctx, deck.ID, rating.NewRateReader(strings.NewReader(bad)), true)
	var ce *rating.CSVError
	if !errors.As(err, &ce) || fmt.Sprint(ce.Lines()) != "[4 5 7]" || ce.Rows[1].Message != rating.DuplicateMessage(2) {
		t.Fatalf("got %v, want lines 4, 5 and 7 refused", err)
	}
	if got, _ := postgres.NewRateDeckService(db).Rates(ctx, deck.ID); len(got) != 0 {
		t.Errorf("after a refused file: got %d rates, want none", len(got))
	}
	good := "prefix,per_minute,priority\n4930,0.01,0\n4930,0.02,1\n"
	if _, err := postgres.NewRateDeckService(db).ImportRates(ctx, deck.ID, rating.NewRateReader(strings.NewReader(good)), true); err != nil {
		t.Fatal(err)
	}
	if got, _ := postgres.NewRateDeckService(db).Rates(ctx, deck.ID); len(got) != 2 {
		t.Errorf("got %d rates, want 2", len(got))
	}
}
