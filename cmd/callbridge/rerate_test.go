package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
	"callbridge/rating"

	"github.com/google/uuid"
)

func TestRunRerate(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, dbURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	acc := &callbridge.Account{Name: "rerate", Currency: "EUR"}
	if _, err := postgres.NewAccountService(db).CreateAccount(ctx, acc); err != nil {
		t.Fatal(err)
	}
	other := &callbridge.Account{Name: "other", Currency: "EUR"}
	if _, err := postgres.NewAccountService(db).CreateAccount(ctx, other); err != nil {
		t.Fatal(err)
	}
	// CDRs stored unrated: the account had no deck yet.
	start := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	store := postgres.NewCDRStore(db)
	var cdrs []*callbridge.CDR
	for i, a := range []string{acc.ID, acc.ID, other.ID} {
		cdrs = append(cdrs, &callbridge.CDR{UUID: uuid.NewString(), Leg: "a", AccountID: a, Direction: "outbound",
			Callee: "4930123456", Node: "fs1", StartAt: start.Add(time.Duration(i) * time.Minute),
			AnswerAt: start.Add(time.Duration(i)*time.Minute + time.Second), EndAt: start.Add(time.Duration(i)*time.Minute + 92*time.Second),
			DurationMS: 92000, BillMS: 90500, HangupCause: "NORMAL_CLEARING", Disposition: "answered", Flags: callbridge.CDRUnrated})
	}
	if _, err := store.WriteBatch(ctx, cdrs, nil); err != nil {
		t.Fatal(err)
	}
	// Then the deck arrives: 0.60/min in 30 s increments.
	deck := &rating.DeckInfo{AccountID: acc.ID, Name: "fix", Currency: "EUR", TimeZone: "Europe/Berlin", Precision: 6}
	if err := postgres.NewRateDeckService(db).CreateRateDeck(ctx, deck); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.NewRateDeckService(db).ImportRates(ctx, deck.ID, rating.SliceRates([]rating.Rate{{Prefix: "4930", PerMinute: 600000, FirstIncrement: 30, NextIncrement: 30,
		Days: rating.AllDays, Until: rating.Midnight}}), true); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		if k == "CALLBRIDGE_DATABASE_URL" {
			return dbURL
		}
		return ""
	}
	rerate := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"rates", "rerate"}, args...), getenv, &out, &errOut)
		return out.String(), err
	}
	for _, bad := range [][]string{{"--to", "2026-04-01"}, {"--from", "2026-04-01", "--to", "2026-03-01"}, {"--from", "yesterday", "--to", "2026-03-01"}} {
		if _, err := rerate(bad...); exitCode(err) != 2 {
			t.Errorf("rerate %v: %v, want a usage error", bad, err)
		}
	}
	out, err := rerate("--from", "2026-03-01", "--to", "2026-04-01", "--account", acc.ID)
	if err != nil {
		t.Fatal(err)
	}
	// 90.5 s billed as 120 s (four 30 s increments) at 0.60/min: 1.20.
	if !strings.Contains(out, "2 CDRs priced, 2 changed; sell +2.4") {
		t.Errorf("output %q", out)
	}
	c, err := store.CDR(ctx, acc.ID, cdrs[0].UUID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sell != 1200000 || c.Flags != callbridge.CDRRerated || c.SellDeckID != deck.ID || c.SellCurrency != "EUR" {
		t.Errorf("rerated CDR: sell %d flags %v deck %s", c.Sell, c.Flags, c.SellDeckID)
	}
	var hist []struct {
		OldSell int64 `db:"old_sell"`
		NewSell int64 `db:"new_sell"`
	}
	err = pgtest.Select(ctx, db, &hist, `SELECT old_sell, new_sell FROM cdr_ratings WHERE uuid = $1 ORDER BY id`, c.UUID)
	if err != nil || len(hist) != 1 || hist[0].OldSell != 0 || hist[0].NewSell != 1200000 {
		t.Errorf("history %+v, %v", hist, err)
	}
	// The other account was not touched; a second run changes nothing.
	o, _ := store.CDR(ctx, other.ID, cdrs[2].UUID)
	if o.Flags != callbridge.CDRUnrated {
		t.Errorf("other account's CDR flags %v", o.Flags)
	}
	if out, err := rerate("--from", "2026-03-01", "--to", "2026-04-01", "--account", acc.ID); err != nil || !strings.Contains(out, "2 CDRs priced, 0 changed") {
		t.Errorf("second run: %q, %v", out, err)
	}
}
