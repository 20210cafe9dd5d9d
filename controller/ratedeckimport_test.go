package controller_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"callbridge"
	"callbridge/controller"
	"callbridge/postgres"
	"callbridge/rating"
)

// drainingStore is the real rate-deck store, except that ImportRates reads its
// source to the end and stores nothing: the memory an import takes in the
// controller can then be measured apart from the database's.
type drainingStore struct {
	*postgres.RateDeckService
	// started, when set, is told each import has begun; the import then
	// waits for proceed to close before reading.
	started chan<- struct{}
	proceed <-chan struct{}
}

func (s drainingStore) ImportRates(ctx context.Context, deckID string, src rating.RateSource, replace bool) (*rating.DeckInfo, error) {
	if s.started != nil {
		s.started <- struct{}{}
		<-s.proceed
	}
	for src.Next() {
	}
	if err := src.Err(); err != nil {
		return nil, err
	}
	return s.RateDeck(ctx, deckID)
}

// importEnv is the fully wired API over a drainingStore with two
// accounts, each with a deck.
type importEnv struct {
	*fullEnv
	keys, decks [2]string
	store       *drainingStore
}

func newImportEnv(t *testing.T, tweak func(*controller.Server)) *importEnv {
	t.Helper()
	env := &importEnv{}
	env.fullEnv = newEnv(t, envOptions{tweak: func(s *controller.Server) {
		env.store = &drainingStore{RateDeckService: s.RateDecks.(*postgres.RateDeckService)}
		s.RateDecks = env.store
		if tweak != nil {
			tweak(s)
		}
	}})
	accounts := postgres.NewAccountService(env.db)
	for i := range env.keys {
		a := &callbridge.Account{Name: fmt.Sprintf("tenant %d", i)}
		key, err := accounts.CreateAccount(context.Background(), a)
		if err != nil {
			t.Fatal(err)
		}
		d := &rating.DeckInfo{AccountID: a.ID, Name: "deck", Currency: "EUR", TimeZone: "UTC", Precision: 6}
		if err := env.store.CreateRateDeck(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		env.keys[i], env.decks[i] = key, d.ID
	}
	return env
}

// upload posts body (sent chunked: its length is not announced) as
// tenant i's rates.
func (e *importEnv) upload(t *testing.T, i int, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("POST", e.api.URL+"/v1/rate-decks/"+e.decks[i]+"/rates?mode=replace", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+e.keys[i])
	req.Header.Set("Content-Type", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// csvBody generates a rate file of about size bytes, row by row, without
// holding it: rows of about 200 bytes with distinct prefixes.
type csvBody struct {
	size, sent int
	row        int
	pending    []byte
}

func newCSVBody(size int) *csvBody {
	return &csvBody{size: size, pending: []byte("prefix,per_minute,description\n")}
}

func (b *csvBody) Read(p []byte) (int, error) {
	if len(b.pending) == 0 {
		if b.sent >= b.size {
			return 0, io.EOF
		}
		b.row++
		b.pending = fmt.Appendf(b.pending[:0], "%d,0.0%03d,%s %d\n", 100_000_000+b.row, b.row%1000, strings.Repeat("destination ", 15), b.row)
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	b.sent += n
	return n, nil
}

// heapPeak samples the bytes of live and not-yet-swept heap objects every
// millisecond until stop is called, and returns the highest.
func heapPeak() (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak.Load()
	}
}

func heapNow() uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

// TestRateImportMemoryBounded streams a 100 MB chunked rate file through
// the API: the controller's heap must stay within a constant of where it
// started, whatever the file's size. Once with a cap above the file (all
// of it is read and imported), once with the default 64 MiB cap (cut
// there: 413).
func TestRateImportMemoryBounded(t *testing.T) {
	const size = 100 << 20
	const bound = 32 << 20 // far below the file, far above a row
	for _, tc := range []struct {
		name   string
		capB   int64
		status int
	}{
		{"imported", 128 << 20, http.StatusOK},
		{"cut at the cap", 0, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newImportEnv(t, func(s *controller.Server) { s.MaxCSVBytes = tc.capB })
			base := heapNow()
			stop := heapPeak()
			start := time.Now()
			resp, body := e.upload(t, 0, newCSVBody(size))
			peak := stop()
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d %.300s, want %d", resp.StatusCode, body, tc.status)
			}
			grew := int64(peak) - int64(base)
			t.Logf("%d MB in %v: heap %d MB at start, peak %d MB (grew %d MB)", size>>20, time.Since(start).Round(time.Millisecond), base>>20, peak>>20, grew>>20)
			if grew > bound {
				t.Errorf("heap grew by %d MB during the upload, want at most %d MB", grew>>20, bound>>20)
			}
		})
	}
}

// TestRateImportRefusedEarly announces a body over the cap: the answer is
// 413 before any of it is sent.
func TestRateImportRefusedEarly(t *testing.T) {
	e := newImportEnv(t, nil)
	conn, err := net.Dial("tcp", e.api.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/rate-decks/%s/rates HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: text/csv\r\nContent-Length: %d\r\n\r\n", e.decks[0], e.keys[0], 100<<20)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer before the body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("got %d, want 413", resp.StatusCode)
	}
}

// TestRateImportConcurrency holds imports open: a second import of the
// same account, and a third in the process, answer 429 with Retry-After;
// once one ends, the next is taken.
func TestRateImportConcurrency(t *testing.T) {
	started := make(chan struct{})
	proceed := make(chan struct{})
	e := newImportEnv(t, func(s *controller.Server) { s.MaxImports = 1 })
	e.store.started, e.store.proceed = started, proceed

	good := "prefix,per_minute\n4930,0.01\n"
	first := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", e.api.URL+"/v1/rate-decks/"+e.decks[0]+"/rates", strings.NewReader(good))
		req.Header.Set("Authorization", "Bearer "+e.keys[0])
		req.Header.Set("Content-Type", "text/csv")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	select {
	case <-started:
	case code := <-first:
		t.Fatalf("the first import ended (%d) before it began reading", code)
	case <-time.After(20 * time.Second):
		t.Fatal("the first import never began")
	}
	for i, who := range []string{"same account", "another account, process full"} {
		resp, body := e.upload(t, i, strings.NewReader(good))
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: got %d %s (Retry-After %q), want 429 with Retry-After", who, resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
	}
	close(proceed)
	if got := <-first; got != http.StatusOK {
		t.Fatalf("first import: got %d, want 200", got)
	}
	go func() { <-started }()
	if resp, body := e.upload(t, 1, strings.NewReader(good)); resp.StatusCode != http.StatusOK {
		t.Errorf("after the first ended: got %d %s, want 200", resp.StatusCode, body)
	}
}
