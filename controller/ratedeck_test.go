package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/app"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
)

// rateEnv is the fully wired API on a real database with two accounts.
type rateEnv struct {
	*fullEnv
	key, other string
}

func newRateEnv(t *testing.T) *rateEnv {
	t.Helper()
	e := &rateEnv{fullEnv: newFullEnv(t, nil)}
	e.key, e.other = rateAccounts(t, e.db)
	return e
}

// rateAccounts creates the accounts "shop" and "other" and returns their
// keys.
func rateAccounts(t *testing.T, db *postgres.DB) (shop, other string) {
	t.Helper()
	accounts := postgres.NewAccountService(db)
	shop, err := accounts.CreateAccount(context.Background(), &callbridge.Account{Name: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	other, err = accounts.CreateAccount(context.Background(), &callbridge.Account{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	return shop, other
}

// do sends a request with a bearer token and returns the status and body.
func (e *rateEnv) do(t *testing.T, method, path, token, contentType, body string, header ...string) (int, string) {
	t.Helper()
	r := request{method: method, path: path, auth: "Bearer " + token, contentType: contentType, header: map[string]string{}}
	if body != "" {
		r.body = strings.NewReader(body)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.header[header[i]] = header[i+1]
	}
	a := e.send(r)
	return a.status, string(a.body)
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	return v
}

func TestRateDeckAPI(t *testing.T) {
	e := newRateEnv(t)

	status, body := e.do(t, "POST", "/v1/rate-decks", e.key, "application/json",
		`{"name":"retail","currency":"EUR","time_zone":"Europe/Berlin","precision":4,"default_rate":{"per_minute_micros":300000,"first_increment":60,"next_increment":60}}`)
	if status != http.StatusCreated {
		t.Fatalf("create: got %d %s", status, body)
	}
	deck := decode[struct {
		ID        string `json:"id"`
		AccountID string `json:"account_id"`
		Version   int64  `json:"version"`
	}](t, body)

	tests := []struct {
		name, method, path, token, ctype, body string
		status                                 int
		contains                               string
	}{
		{"account may not create carrier decks", "POST", "/v1/rate-decks", e.key, "application/json",
			`{"gateway":"carrier-a","name":"buy","currency":"USD","time_zone":"UTC"}`, 403, `"forbidden"`},
		{"admin creates carrier deck", "POST", "/v1/rate-decks", fullAdminToken, "application/json",
			`{"gateway":"carrier-a","name":"buy","currency":"USD","time_zone":"America/New_York"}`, 201, `"gateway":"carrier-a"`},
		{"bad zone", "POST", "/v1/rate-decks", e.key, "application/json",
			`{"name":"x","currency":"EUR","time_zone":"Nowhere/Land","effective_from":"2030-01-01T00:00:00Z"}`, 400, `"field":"time_zone"`},
		{"no credentials", "GET", "/v1/rate-decks", "wrong", "", "", 401, `"unauthorized"`},
		{"list own", "GET", "/v1/rate-decks", e.key, "", "", 200, deck.ID},
		{"get own", "GET", "/v1/rate-decks/" + deck.ID, e.key, "", "", 200, `"name":"retail"`},
		{"other account cannot see it", "GET", "/v1/rate-decks/" + deck.ID, e.other, "", "", 404, `"not_found"`},
		{"admin sees it", "GET", "/v1/rate-decks/" + deck.ID, fullAdminToken, "", "", 200, deck.ID},
		{"csv needs text/csv", "POST", "/v1/rate-decks/" + deck.ID + "/rates", e.key, "application/json", "{}", 400, "text/csv"},
		{"bad mode", "POST", "/v1/rate-decks/" + deck.ID + "/rates?mode=merge", e.key, "text/csv", "", 400, `"field":"mode"`},
		{"bad file refused whole", "POST", "/v1/rate-decks/" + deck.ID + "/rates", e.key, "text/csv",
			"prefix,per_minute\n49,0.02\n049,0.01\n4930,x\n", 400, `"rows":[{"line":3,"column":"prefix"`},
		{"import", "POST", "/v1/rate-decks/" + deck.ID + "/rates?mode=replace", e.key, "text/csv",
			"prefix,per_minute,description,days,from,until,first_increment,next_increment,band,priority\n" +
				"49,0.02,Germany,,,,,,,0\n" +
				"4915,0.12,Germany mobile,mon-fri,08:00,18:00,1,1,peak,0\n" +
				"4915,0.06,Germany mobile,,,,1,1,offpeak,1\n", 200, `"imported":3`},
		{"other account cannot import", "POST", "/v1/rate-decks/" + deck.ID + "/rates", e.other, "text/csv", "prefix,per_minute\n1,1\n", 404, `"not_found"`},
		{"export json", "GET", "/v1/rate-decks/" + deck.ID + "/rates", e.key, "", "", 200, `"per_minute_micros":120000`},
		// Wed 15 Jan 2025 17:59 Berlin, 2 min: 60 s peak (0.12) + 60 s off-peak (0.06).
		{"quote across 18:00", "GET", "/v1/rates/quote?number=%2B4915112345678&at=2025-01-15T16:59:00Z&duration=2m", e.key, "", "", 200,
			`"amount":"0.18"`},
		{"quote default rate", "GET", "/v1/rates/quote?number=81312345678&at=2025-01-15T16:59:00Z&duration=60", e.key, "", "", 200,
			`"flags":["unrated_default"]`},
		{"quote bad number", "GET", "/v1/rates/quote?number=abc", e.key, "", "", 400, `"field":"number"`},
		{"quote bad duration", "GET", "/v1/rates/quote?number=4930123456&duration=-1s", e.key, "", "", 400, `"field":"duration"`},
		{"quote without a deck", "GET", "/v1/rates/quote?number=4930123456", e.other, "", "", 404, `"not_found"`},
		{"admin quote needs a deck", "GET", "/v1/rates/quote?number=4930123456", fullAdminToken, "", "", 400, `"field":"deck"`},
		{"admin quote of a deck", "GET", "/v1/rates/quote?number=4930123456&deck=" + deck.ID, fullAdminToken, "", "", 200, `"prefix":"49"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.do(t, tt.method, tt.path, tt.token, tt.ctype, tt.body)
			if status != tt.status || !strings.Contains(body, tt.contains) {
				t.Errorf("got %d %s, want %d containing %s", status, body, tt.status, tt.contains)
			}
		})
	}

	status, body = e.do(t, "GET", "/v1/rate-decks/"+deck.ID+"/rates", e.key, "", "", "Accept", "text/csv")
	want := "prefix,description,band,per_minute,connect_fee,min_charge,first_increment,next_increment,days,from,until,effective_from,effective_until,priority\n" +
		"49,Germany,,0.02,0,0,60,60,all,00:00,24:00,,,0\n" +
		"4915,Germany mobile,peak,0.12,0,0,1,1,mon-fri,08:00,18:00,,,0\n" +
		"4915,Germany mobile,offpeak,0.06,0,0,1,1,all,00:00,24:00,,,1\n"
	if status != http.StatusOK || body != want {
		t.Errorf("csv export: got %d\n%s\nwant\n%s", status, body, want)
	}

	status, body = e.do(t, "GET", "/v1/rates/quote?number=4915112345678&at=2025-01-15T16:59:00Z&duration=120", e.key, "", "")
	q := decode[struct {
		Result struct {
			Prefix string `json:"prefix"`
			Band   string `json:"band"`
			Amount int64  `json:"amount_micros"`
			Parts  []struct {
				Band   string `json:"band"`
				Amount int64  `json:"amount_micros"`
			} `json:"parts"`
		} `json:"result"`
	}](t, body)
	if status != 200 || q.Result.Prefix != "4915" || q.Result.Band != "peak" || q.Result.Amount != 180000 ||
		len(q.Result.Parts) != 2 || q.Result.Parts[1].Band != "offpeak" || q.Result.Parts[1].Amount != 60000 {
		t.Errorf("quote: got %d %s", status, body)
	}
}

// TestRateDeckImportLargeCSV uploads a 100,000-row deck (about 4 MB, over
// the 1 MiB cap of JSON bodies) through the API with the default limits.
func TestRateDeckImportLargeCSV(t *testing.T) {
	e := newRateEnv(t)
	status, body := e.do(t, "POST", "/v1/rate-decks", e.key, "application/json",
		`{"name":"wholesale","currency":"USD","time_zone":"UTC"}`)
	if status != http.StatusCreated {
		t.Fatalf("create: got %d %s", status, body)
	}
	id := decode[struct {
		ID string `json:"id"`
	}](t, body).ID
	var csv strings.Builder
	csv.WriteString("prefix,description,per_minute,first_increment,next_increment\n")
	for i := range 100_000 {
		fmt.Fprintf(&csv, "%d,destination %d,0.%04d,60,60\n", 1_000_000+i, i, i%10000)
	}
	if csv.Len() <= 1<<20 {
		t.Fatalf("the file is only %d bytes; the test needs more than the JSON cap", csv.Len())
	}
	status, body = e.do(t, "POST", "/v1/rate-decks/"+id+"/rates?mode=replace", e.key, "text/csv", csv.String())
	if status != http.StatusOK || !strings.Contains(body, `"imported":100000`) {
		t.Fatalf("import: got %d %.300s", status, body)
	}
}

// TestQuoteWithoutDatabase cuts the database off after a deck was
// imported: quotes still answer, from memory, with the new deck. (The
// API key stays valid from the authentication cache meanwhile.)
func TestQuoteWithoutDatabase(t *testing.T) {
	u := pgtest.URL(t)
	proxied, proxy := pgtest.Proxied(t, u)
	db, err := postgres.Open(context.Background(), proxied, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &rateEnv{fullEnv: newEnv(t, envOptions{db: db, adjust: func(a *app.App) {
		a.Server.Accounts.(*postgres.AccountService).AuthCacheTTL = time.Minute
	}})}
	key, _ := rateAccounts(t, db)

	status, body := e.do(t, "POST", "/v1/rate-decks", key, "application/json", `{"name":"retail","currency":"EUR","time_zone":"UTC"}`)
	if status != http.StatusCreated {
		t.Fatalf("create: got %d %s", status, body)
	}
	deck := decode[struct {
		ID string `json:"id"`
	}](t, body)
	if status, body := e.do(t, "POST", "/v1/rate-decks/"+deck.ID+"/rates?mode=replace", key, "text/csv", "prefix,per_minute\n49,0.12\n"); status != http.StatusOK {
		t.Fatalf("import: got %d %s", status, body)
	}
	proxy.Cut()
	defer proxy.Restore()
	for _, q := range []string{"", "&deck=" + deck.ID} {
		status, body := e.do(t, "GET", "/v1/rates/quote?number=4930123456&duration=60"+q, key, "", "")
		if status != http.StatusOK || !strings.Contains(body, `"amount_micros":120000`) {
			t.Errorf("quote%s with the database cut off: got %d %s, want 0.12", q, status, body)
		}
	}
}
