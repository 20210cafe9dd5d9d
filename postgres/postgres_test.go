package postgres_test

import (
	"context"
	"sync"
	"testing"

	"callbridge"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
)

func TestMigrateIsIdempotentAndConcurrent(t *testing.T) {
	u := pgtest.URL(t)
	ctx := context.Background()
	// The template already holds every migration: a second and third run,
	// at once from two pools, apply nothing and do not fail.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	applied := make([][]int, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := postgres.Open(ctx, u, nil)
			if err != nil {
				errs[i] = err
				return
			}
			defer db.Close()
			applied[i], errs[i] = db.Migrate(ctx)
		}()
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("migrate %d: %v", i, errs[i])
		}
		if len(applied[i]) != 0 {
			t.Errorf("migrate %d applied %v on a migrated database, want nothing", i, applied[i])
		}
	}
	db := pgtest.New(t)
	v, current, err := db.SchemaStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := postgres.Migrations()
	if !current || v != ms[len(ms)-1].Version {
		t.Errorf("SchemaStatus = %d, %v; want %d, true", v, current, ms[len(ms)-1].Version)
	}
}

func TestMigrateFreshDatabaseFromTwoProcesses(t *testing.T) {
	// A fresh database (no schema_migrations) migrated by two pools at once:
	// the advisory lock makes one apply everything and the other nothing.
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `DROP SCHEMA public CASCADE; CREATE SCHEMA public`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	counts := make([]int, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := postgres.Open(ctx, db.URL, nil)
			if err != nil {
				errs[i] = err
				return
			}
			defer d.Close()
			a, err := d.Migrate(ctx)
			counts[i], errs[i] = len(a), err
		}()
	}
	wg.Wait()
	ms, _ := postgres.Migrations()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if counts[0]+counts[1] != len(ms) || (counts[0] != 0 && counts[1] != 0) {
		t.Errorf("applied %v migrations in the two processes, want all %d in exactly one", counts, len(ms))
	}
}

func TestAccountsAndKeys(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewAccountService(db)

	a := &callbridge.Account{Name: "Acme", ServiceNumber: "4930123456", Currency: "EUR"}
	key, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == "" || len(key) < 40 {
		t.Fatalf("CreateAccount = id %q key %q", a.ID, key)
	}
	var stored int
	pgtest.Get(ctx, db, &stored, `SELECT count(*) FROM api_keys WHERE position($1::bytea in hash) > 0`, []byte(key))
	if stored != 0 {
		t.Errorf("the clear-text key is stored in api_keys")
	}

	got, err := s.Authenticate(ctx, key)
	if err != nil || got.ID != a.ID || got.Currency != "EUR" {
		t.Fatalf("Authenticate = %+v, %v; want account %s", got, err, a.ID)
	}
	for _, bad := range []string{"", "cbk_", key + "x", "Bearer " + key, "cbk_' OR 1=1 --"} {
		if _, err := s.Authenticate(ctx, bad); callbridge.ErrorCode(err) != callbridge.EUNAUTHORIZED {
			t.Errorf("Authenticate(%q) error = %v, want unauthorized", bad, err)
		}
	}

	key2, err := s.CreateAPIKey(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeAPIKey(ctx, a.ID, key); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, key); callbridge.ErrorCode(err) != callbridge.EUNAUTHORIZED {
		t.Errorf("revoked key still authenticates: %v", err)
	}
	if _, err := s.Authenticate(ctx, key2); err != nil {
		t.Errorf("second key: %v", err)
	}
	if err := s.RevokeAPIKey(ctx, a.ID, "not-a-uuid"); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("revoke unknown key = %v, want not_found", err)
	}

	// Another account cannot revoke this account's key.
	b := &callbridge.Account{Name: "Other"}
	if _, err := s.CreateAccount(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeAPIKey(ctx, b.ID, key2); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("cross-account revoke = %v, want not_found", err)
	}

	for _, tc := range []struct {
		a     callbridge.Account
		field string
	}{
		{callbridge.Account{Name: ""}, "name"},
		{callbridge.Account{Name: "x", Currency: "euro"}, "currency"},
		{callbridge.Account{Name: "x", Currency: "ZZZ"}, "currency"},
		{callbridge.Account{Name: "x", ServiceNumber: "12ab"}, "service_number"},
	} {
		if _, err := s.CreateAccount(ctx, &tc.a); callbridge.ErrorField(err) != tc.field {
			t.Errorf("CreateAccount(%+v) = %v, want error on %s", tc.a, err, tc.field)
		}
	}
	if _, err := s.Account(ctx, "nope"); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("Account(nope) = %v, want not_found", err)
	}
}

func TestAuthenticateCache(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewAccountService(db)
	a := &callbridge.Account{Name: "Cached"}
	key, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, key); err != nil {
		t.Fatal(err)
	}
	// Another controller revokes the key: this one keeps it for at most
	// AuthCacheTTL without asking the database again...
	other := postgres.NewAccountService(db)
	if err := other.RevokeAPIKey(ctx, a.ID, key); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Authenticate(ctx, key); err != nil || got.ID != a.ID {
		t.Fatalf("cached Authenticate = %v, %v; want the account until the TTL", got, err)
	}
	// ...a revocation through this process takes effect at once...
	key2, _ := s.CreateAPIKey(ctx, a.ID)
	s.Authenticate(ctx, key2)
	if err := s.RevokeAPIKey(ctx, a.ID, key2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, key2); callbridge.ErrorCode(err) != callbridge.EUNAUTHORIZED {
		t.Errorf("key revoked here still authenticates: %v", err)
	}
	// ...and without the cache every lookup reads the database.
	s.AuthCacheTTL = -1
	if _, err := s.Authenticate(ctx, key); callbridge.ErrorCode(err) != callbridge.EUNAUTHORIZED {
		t.Errorf("uncached Authenticate of a revoked key = %v, want unauthorized", err)
	}
}
