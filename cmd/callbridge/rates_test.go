package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"callbridge"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
)

func TestRunRates(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, dbURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a := &callbridge.Account{Name: "shop"}
	if _, err := postgres.NewAccountService(db).CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CALLBRIDGE_DATABASE_URL": dbURL}
	getenv := func(k string) string { return env[k] }
	rates := func(args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := runRates(ctx, args, getenv, &out, &errOut)
		return out.String(), errOut.String(), err
	}

	out, _, err := rates("create-deck", "--account", a.ID, "--name", "retail", "--currency", "EUR",
		"--time-zone", "Europe/Berlin", "--precision", "4", "--default-per-minute", "0.3", "--holidays", "2025-12-25")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	deck := lines[len(lines)-1]

	dir := t.TempDir()
	good := filepath.Join(dir, "good.csv")
	csv := "prefix,description,band,per_minute,connect_fee,min_charge,first_increment,next_increment,days,from,until,effective_from,effective_until,priority\n" +
		"49,Germany,,0.02,0,0,60,60,all,00:00,24:00,,,0\n" +
		"4915,Germany mobile,peak,0.12,0,0,1,1,mon-fri,08:00,18:00,,,0\n"
	if err := os.WriteFile(good, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("prefix,per_minute\n49,0.02\n0,1\n4930,abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	if out, _, err := rates("import", "--account", a.ID, "--file", good, "--replace"); err != nil || !strings.Contains(out, "2 rates replaced the rates of deck "+deck) {
		t.Fatalf("import: got %q, %v", out, err)
	}
	// The tool applies the controllers' cap: it stores no deck they
	// would refuse to load.
	env["CALLBRIDGE_MAX_DECK_RATES"] = "1"
	if _, _, err := rates("import", "--deck", deck, "--file", good, "--replace"); err == nil || !strings.Contains(err.Error(), "CALLBRIDGE_MAX_DECK_RATES") {
		t.Errorf("import past CALLBRIDGE_MAX_DECK_RATES=1: got %v, want a refusal naming it", err)
	}
	env["CALLBRIDGE_MAX_DECK_RATES"] = "zero"
	if _, _, err := rates("decks"); err == nil || !strings.Contains(err.Error(), "CALLBRIDGE_MAX_DECK_RATES") {
		t.Errorf("CALLBRIDGE_MAX_DECK_RATES=zero: got %v, want an error naming it", err)
	}
	delete(env, "CALLBRIDGE_MAX_DECK_RATES")
	if _, _, err := rates("import", "--deck", deck, "--file", bad); err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("bad import: got %v, want lines 3 and 4", err)
	}
	if out, _, err := rates("export", "--deck", deck); err != nil || out != csv {
		t.Errorf("export: got %q, %v, want %q", out, err, csv)
	}
	exported := filepath.Join(dir, "out.csv")
	if _, _, err := rates("export", "--account", a.ID, "--file", exported); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(exported); err != nil || string(b) != csv {
		t.Errorf("export to file: got %q, %v", b, err)
	}
	if out, _, err := rates("decks", "--account", a.ID); err != nil || !strings.Contains(out, deck) || !strings.Contains(out, "Europe/Berlin") {
		t.Errorf("decks: got %q, %v", out, err)
	}
	if _, _, err := rates("create-deck", "--gateway", "carrier-a", "--name", "buy", "--currency", "USD", "--time-zone", "America/New_York"); err != nil {
		t.Fatal(err)
	}
	if out, _, err := rates("decks"); err != nil || !strings.Contains(out, "gateway:carrier-a") {
		t.Errorf("carrier decks: got %q, %v", out, err)
	}

	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"import", "--file", good},
		{"import", "--deck", deck},
		{"export", "--deck", deck, "--account", a.ID},
	} {
		_, _, err := rates(args...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: got %v, want a usage error", args, err)
		}
	}
	if _, _, err := rates("create-deck", "--account", a.ID, "--name", "x", "--currency", "EUR", "--time-zone", "Nowhere/Land"); err == nil || !strings.Contains(err.Error(), "time_zone") {
		t.Errorf("bad zone: got %v", err)
	}
}
