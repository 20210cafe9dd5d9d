package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/esl"
	"callbridge/esl/esltest"
	"callbridge/esl/freeswitch"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
)

// deckController is one `callbridge serve` of TestDeckChangesApplyAtOnce
// with its own simulated FreeSWITCH node and a test ESL client on it that
// places calls whose hangups that controller prices.
type deckController struct {
	base   string
	caller *esl.Client
}

func startDeckController(t *testing.T, dbURL string) *deckController {
	t.Helper()
	fs := esltest.NewUnstartedServer()
	fs.Speed = 100 // a call rings 10 ms and talks 30 ms
	fs.Start()
	t.Cleanup(fs.Close)
	base := startServe(t, map[string]string{
		"CALLBRIDGE_DATABASE_URL": dbURL,
		"CALLBRIDGE_ADMIN_TOKEN":  "admin-secret",
		"CALLBRIDGE_ESL":          fs.Addr(),
		"CALLBRIDGE_SPOOL_DIR":    t.TempDir(),
		"CALLBRIDGE_REPORT_DIR":   t.TempDir(),
		"CALLBRIDGE_LOG_LEVEL":    "warn",
	})
	caller := esl.NewClient(esl.Config{Name: "test", Addr: fs.Addr(), Password: "ClueCon",
		BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		caller.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	wait.ForState(t, "the test's ESL client connects", func() (bool, string) {
		st := caller.State()
		return st == esl.StateConnected, st.String()
	})
	return &deckController{base: base, caller: caller}
}

// quote is GET /v1/rates/quote of one minute to number with the account's
// deck in force: the status, and the deck's version and the amount.
func (c *deckController) quote(t *testing.T, key, number string) (int, int64, string) {
	t.Helper()
	code, v := do(t, "GET", c.base+"/v1/rates/quote?number="+number+"&duration=60", key, "")
	version, _ := v["deck_version"].(float64)
	amount, _ := v["amount"].(string)
	return code, int64(version), amount
}

// importRates posts a CSV to POST /v1/rate-decks/{id}/rates?mode=replace
// and returns the deck's new version.
func (c *deckController) importRates(t *testing.T, key, deck, csv string) int64 {
	t.Helper()
	req, _ := http.NewRequest("POST", c.base+"/v1/rate-decks/"+deck+"/rates?mode=replace", strings.NewReader(csv))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v struct {
		Deck struct {
			Version int64 `json:"version"`
		} `json:"rate_deck"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &v) != nil {
		t.Fatalf("import rates: %d %s", resp.StatusCode, body)
	}
	return v.Deck.Version
}

// call places an answered call of account to number on the controller's
// node and returns the CDR the controller stored for it.
func (c *deckController) call(t *testing.T, cdrs *postgres.CDRStore, account string, number callbridge.Number) *callbridge.CDR {
	t.Helper()
	ctx := context.Background()
	job, err := c.caller.Originate(ctx, freeswitch.Originate{
		Endpoint: freeswitch.Gateway("carrier", number),
		Vars: []freeswitch.Var{{Name: callbridge.VarAccount, Value: account}, {Name: callbridge.VarLeg, Value: "a"},
			{Name: callbridge.VarCallbackID, Value: "7d1f4a52-1c7e-4c1a-9a53-0c0d5f1e2b3a"}},
		CallerIDNumber: "4940123456",
		Timeout:        30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	var cdr *callbridge.CDR
	wait.ForState(t, "the call's CDR", func() (bool, string) {
		cdr, err = cdrs.CDR(ctx, account, job.UUID)
		return err == nil, fmt.Sprint(err)
	})
	if cdr.BillMS <= 0 {
		t.Fatalf("the call was not answered: %+v", cdr)
	}
	return cdr
}

// TestDeckChangesApplyAtOnce runs two controllers on one database. A deck
// imported through one controller prices that controller's very next
// quote and CDR, and the other controller's as soon as LISTEN/NOTIFY
// reaches it: before this, a controller kept pricing calls "unrated" for
// up to 30 s after an import.
func TestDeckChangesApplyAtOnce(t *testing.T) {
	dbURL := pgtest.URL(t)
	one := startDeckController(t, dbURL)
	two := startDeckController(t, dbURL)
	db, err := postgres.Open(context.Background(), dbURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cdrs := postgres.NewCDRStore(db)

	code, v := do(t, "POST", one.base+"/v1/admin/accounts", "admin-secret", `{"name":"Decks","currency":"EUR"}`)
	if code != 201 {
		t.Fatalf("create account = %d %v", code, v)
	}
	key, _ := v["api_key"].(string)
	account, _ := v["account"].(map[string]any)["id"].(string)

	// No deck yet: both controllers say so, and price calls unrated.
	for _, c := range []*deckController{one, two} {
		if code, _, _ := c.quote(t, key, "4930123456"); code != 404 {
			t.Fatalf("quote without a deck = %d, want 404", code)
		}
	}
	if cdr := one.call(t, cdrs, account, "4930123456"); !cdr.Flags.Has(callbridge.CDRUnrated) || cdr.Sell != 0 {
		t.Fatalf("CDR without a deck: sell %d flags %v, want unrated", cdr.Sell, cdr.Flags)
	}

	// A deck created and filled through controller one...
	code, v = do(t, "POST", one.base+"/v1/rate-decks", key, `{"name":"retail","currency":"EUR","time_zone":"UTC","precision":6}`)
	if code != 201 {
		t.Fatalf("create deck = %d %v", code, v)
	}
	deck, _ := v["id"].(string)
	version := one.importRates(t, key, deck, "prefix,per_minute\n49,0.12\n")

	// ...prices controller one's very next quote and CDR,
	if code, got, amount := one.quote(t, key, "4930123456"); code != 200 || got != version || amount != "0.12" {
		t.Fatalf("controller one's next quote: %d version %d amount %s, want 200, version %d, 0.12", code, got, amount, version)
	}
	if cdr := one.call(t, cdrs, account, "4930123456"); cdr.SellDeckID != deck || cdr.SellDeckVersion != version || cdr.Sell != 120000*((cdr.BillMS+59999)/60000) {
		t.Fatalf("controller one's next CDR: deck %s v%d sell %d for %d ms, want the new deck", cdr.SellDeckID, cdr.SellDeckVersion, cdr.Sell, cdr.BillMS)
	}
	// and controller two's once the notification arrived: its quotes turn
	// to the new deck, and its very next CDR is priced by it.
	wait.ForState(t, "controller two quoting the new deck", func() (bool, string) {
		code, got, amount := two.quote(t, key, "4930123456")
		return code == 200 && got == version, fmt.Sprintf("%d version %d amount %s", code, got, amount)
	})
	if cdr := two.call(t, cdrs, account, "4930123456"); cdr.SellDeckID != deck || cdr.SellDeckVersion != version || cdr.Flags.Has(callbridge.CDRUnrated) {
		t.Fatalf("controller two's next CDR: deck %s v%d flags %v, want the new deck", cdr.SellDeckID, cdr.SellDeckVersion, cdr.Flags)
	}

	// The other way round: a replacement through controller two.
	version = two.importRates(t, key, deck, "prefix,per_minute\n49,0.30\n")
	if code, got, amount := two.quote(t, key, "4930123456"); code != 200 || got != version || amount != "0.3" {
		t.Fatalf("controller two's next quote: %d version %d amount %s, want version %d, 0.3", code, got, amount, version)
	}
	if cdr := two.call(t, cdrs, account, "4930123456"); cdr.SellDeckVersion != version {
		t.Fatalf("controller two's next CDR: deck v%d, want v%d", cdr.SellDeckVersion, version)
	}
	wait.ForState(t, "controller one quoting the replaced rates", func() (bool, string) {
		code, got, amount := one.quote(t, key, "4930123456")
		return code == 200 && got == version, fmt.Sprintf("%d version %d amount %s", code, got, amount)
	})
	if cdr := one.call(t, cdrs, account, "4930123456"); cdr.SellDeckVersion != version {
		t.Fatalf("controller one's next CDR: deck v%d, want v%d", cdr.SellDeckVersion, version)
	}
}
