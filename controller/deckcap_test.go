package controller_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"callbridge/app"
	"callbridge/internal/wait"
	"callbridge/postgres"
)

// countingReader counts the bytes read from it (by the HTTP client
// sending them), safely for another goroutine.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// seqCSV generates a rate file of n rows of the form a tenant used to
// make controllers hold gigabytes ("100000001,0.01"), row by row.
type seqCSV struct {
	first, n, row int
	pending       []byte
}

func newSeqCSV(first, n int) *seqCSV {
	return &seqCSV{first: first, n: n, pending: []byte("prefix,per_minute\n")}
}

func (s *seqCSV) Read(p []byte) (int, error) {
	if len(s.pending) == 0 {
		if s.row >= s.n {
			return 0, io.EOF
		}
		s.pending = fmt.Appendf(s.pending[:0], "%d,0.01\n", s.first+s.row)
		s.row++
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// deckCapEnv is the wired API with the rate caps set and one tenant with
// two decks (a, in force, and b, taking over tomorrow).
type deckCapEnv struct {
	*fullEnv
	tenant tenant
	a, b   string
}

func newDeckCapEnv(t *testing.T, maxDeck, maxAccount int) *deckCapEnv {
	t.Helper()
	e := &deckCapEnv{fullEnv: newEnv(t, envOptions{configure: func(c *app.Config) {
		c.MaxDeckRates, c.MaxAccountRates = maxDeck, maxAccount
	}})}
	e.tenant = e.newTenant("deck cap")
	for i, id := range []*string{&e.a, &e.b} {
		body := map[string]any{"name": fmt.Sprint("deck ", i), "currency": "EUR", "time_zone": "UTC"}
		if i == 1 {
			body["effective_from"] = time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
		}
		d := e.mustCall(http.StatusCreated, "POST", "/v1/rate-decks", e.tenant.key, body).json(t)
		*id, _ = d["id"].(string)
	}
	return e
}

// importRates posts body as deck's rates (chunked: its length is not
// announced) and returns the answer.
func (e *deckCapEnv) importRates(deck, mode string, body io.Reader) answer {
	e.t.Helper()
	return e.send(request{method: "POST", path: "/v1/rate-decks/" + deck + "/rates?mode=" + mode,
		auth: "Bearer " + e.tenant.key, contentType: "text/csv", body: body, contentLength: -1})
}

// deckState returns a deck's version and how many rates it has.
func (e *deckCapEnv) deckState(deck string) (version, rates int) {
	e.t.Helper()
	var v struct {
		Deck struct {
			Version int `json:"version"`
		} `json:"rate_deck"`
		Rates []any `json:"rates"`
	}
	a := e.mustCall(http.StatusOK, "GET", "/v1/rate-decks/"+deck+"/rates", e.tenant.key, nil)
	if err := json.Unmarshal(a.body, &v); err != nil {
		e.t.Fatal(err)
	}
	return v.Deck.Version, len(v.Rates)
}

// wantTooLarge checks a refusal: 413, too_large, naming setting.
func wantTooLarge(t *testing.T, what string, a answer, setting string) {
	t.Helper()
	code, _ := a.errorCode()
	if a.status != http.StatusRequestEntityTooLarge || code != "too_large" || !strings.Contains(string(a.body), setting) {
		t.Errorf("%s: got %d %.300s, want 413 too_large naming %s", what, a.status, a.body, setting)
	}
}

// TestRateImportOverDeckCap streams a 60 MB file of 5.5 million rates
// into a deck capped at 1,000: the answer is 413 naming
// CALLBRIDGE_MAX_DECK_RATES once the 1,001st row arrives, the server
// having read a small part of the body, and the deck is unchanged. It
// was 200 and a deck of 5.5 million rates on every controller.
func TestRateImportOverDeckCap(t *testing.T) {
	e := newDeckCapEnv(t, 1000, 100_000)
	if a := e.importRates(e.a, "replace", strings.NewReader("prefix,per_minute\n49,0.01\n4930,0.02\n")); a.status != http.StatusOK {
		t.Fatalf("first import: got %d %s", a.status, a.body)
	}
	version, rates := e.deckState(e.a)

	const rows = 5_500_000 // "100000000,0.01\n": 15 bytes a row, 82 MB
	body := &countingReader{r: io.LimitReader(newSeqCSV(100_000_000, rows), 60<<20)}
	a := e.importRates(e.a, "replace", body)
	wantTooLarge(t, "an import over the deck cap", a, "CALLBRIDGE_MAX_DECK_RATES")
	sent := body.n.Load()
	t.Logf("the client sent %d KB of 60 MB before the answer", sent>>10)
	// What the server read plus what the sockets' buffers held.
	if sent > 16<<20 {
		t.Errorf("the client sent %d MB before the answer, want the server to stop reading soon after row 1,001", sent>>20)
	}
	if v, n := e.deckState(e.a); v != version || n != rates {
		t.Errorf("after the refusal: version %d with %d rates, want %d with %d (unchanged)", v, n, version, rates)
	}
	// Exactly the cap is taken.
	if a := e.importRates(e.a, "replace", newSeqCSV(100_000_000, 1000)); a.status != http.StatusOK {
		t.Errorf("an import of exactly the cap: got %d %.300s, want 200", a.status, a.body)
	}
	if a := e.importRates(e.a, "append", strings.NewReader("prefix,per_minute\n1,0.01\n")); a.status != http.StatusRequestEntityTooLarge {
		t.Errorf("appending to a full deck: got %d %.300s, want 413", a.status, a.body)
	}
}

// TestRateImportAccountCap fills one deck of an account to the account's
// cap: another deck of the account cannot take a rate, while replacing
// the full deck (its own rates count out) still can.
func TestRateImportAccountCap(t *testing.T) {
	e := newDeckCapEnv(t, 1200, 1500)
	if a := e.importRates(e.a, "replace", newSeqCSV(100_000_000, 1000)); a.status != http.StatusOK {
		t.Fatalf("deck a: got %d %.300s", a.status, a.body)
	}
	wantTooLarge(t, "deck b past the account's cap", e.importRates(e.b, "replace", newSeqCSV(200_000_000, 501)), "CALLBRIDGE_MAX_ACCOUNT_RATES")
	if _, n := e.deckState(e.b); n != 0 {
		t.Errorf("deck b holds %d rates after the refusal, want 0", n)
	}
	if a := e.importRates(e.b, "replace", newSeqCSV(200_000_000, 500)); a.status != http.StatusOK {
		t.Fatalf("deck b up to the account's cap: got %d %.300s, want 200", a.status, a.body)
	}
	wantTooLarge(t, "one more rate in deck b", e.importRates(e.b, "append", newSeqCSV(300_000_000, 1)), "CALLBRIDGE_MAX_ACCOUNT_RATES")
	wantTooLarge(t, "one more rate in deck a", e.importRates(e.a, "append", newSeqCSV(300_000_000, 1)), "CALLBRIDGE_MAX_ACCOUNT_RATES")
	if a := e.importRates(e.a, "replace", newSeqCSV(400_000_000, 1000)); a.status != http.StatusOK {
		t.Errorf("replacing deck a with as many rates: got %d %.300s, want 200", a.status, a.body)
	}
}

// TestRateImportMaxDeckHeap imports a deck of exactly the cap, 200,000
// rates, and measures the controller's heap once the deck is compiled in
// its registry: the cap is what bounds it, at about 250 bytes a rate
// (docs/capacity.md). Loading it held every row beside the compiled
// deck: 4.1 million rates took 2.3 GB, 560 bytes a rate.
func TestRateImportMaxDeckHeap(t *testing.T) {
	const n = 200_000
	e := newDeckCapEnv(t, n, n)
	sync := e.srv.DeckSync.(*postgres.DeckSync)
	compiles := sync.Compiles()
	base := heapNow()
	stop := heapPeak()
	a := e.importRates(e.a, "replace", newSeqCSV(100_000_000, n))
	if a.status != http.StatusOK {
		t.Fatalf("import of the cap: got %d %.300s, want 200", a.status, a.body)
	}
	// The answer's own reload, then the notification's.
	wait.ForState(t, "the deck compiled twice", func() (bool, string) {
		got := sync.Compiles() - compiles
		return got >= 2, fmt.Sprintf("%d compiles", got)
	})
	peak := stop()
	d := e.srv.Decks.Deck(e.a)
	if d == nil || d.Len() != n {
		t.Fatalf("the registry holds %v after the import, want the deck with %d rates", d, n)
	}
	held := int64(heapNow()) - int64(base)
	grew := int64(peak) - int64(base)
	t.Logf("%d rates: heap %d MB at start; %d bytes a rate held after the import, peak %d bytes a rate", n, base>>20, held/n, grew/n)
	if held > n*320 {
		t.Errorf("the controller holds %d bytes a rate after the import, want at most 320", held/n)
	}
	if grew > n*1024 {
		t.Errorf("the heap grew by %d bytes a rate during the import, want at most 1 KB", grew/n)
	}
}

// TestQuoteRefusedDeck: a deck over CALLBRIDGE_MAX_DECK_RATES (put there
// by SQL, behind the API's back) is not loaded; a quote under it, the
// account's deck in force or named with ?deck=, answers 409 saying so
// rather than 404 "rate deck not found", which it was.
func TestQuoteRefusedDeck(t *testing.T) {
	e := newDeckCapEnv(t, 10, 0)
	if a := e.importRates(e.a, "replace", strings.NewReader("prefix,per_minute\n49,0.01\n")); a.status != http.StatusOK {
		t.Fatalf("import: %d %s", a.status, a.body)
	}
	quote := "/v1/rates/quote?number=4930123&duration=60"
	wait.ForState(t, "the deck in force", func() (bool, string) {
		a := e.call("GET", quote, e.tenant.key, nil)
		return a.status == http.StatusOK, fmt.Sprintf("%d %s", a.status, a.body)
	})
	if _, err := e.db.Exec(`INSERT INTO rates (deck_id, prefix, per_minute, first_increment, next_increment, days, time_from, time_until)
		SELECT $1, (4900 + g)::text, 20000, 60, 60, 127, 0, 86400 FROM generate_series(1, 20) g`, e.a); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{quote, quote + "&deck=" + e.a} {
		wait.ForState(t, "409 for "+path, func() (bool, string) {
			a := e.call("GET", path, e.tenant.key, nil)
			code, _ := a.errorCode()
			return a.status == http.StatusConflict && code == "conflict" && strings.Contains(string(a.body), e.a) &&
				strings.Contains(string(a.body), "CALLBRIDGE_MAX_DECK_RATES"), fmt.Sprintf("%d %s", a.status, a.body)
		})
	}
	// Another account's refused deck stays unknown.
	other := e.newTenant("other")
	if a := e.call("GET", quote+"&deck="+e.a, other.key, nil); a.status != http.StatusNotFound {
		t.Errorf("another account's refused deck: got %d %s, want 404", a.status, a.body)
	}
}
