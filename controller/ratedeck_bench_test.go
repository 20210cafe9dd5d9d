package controller_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"callbridge"
	"callbridge/controller"
	"callbridge/postgres"
)

// quoteBench is the fully wired API (app.New, as in serve) on a real
// database, with an account and its 100,000-prefix deck imported over
// HTTP.
type quoteBench struct {
	srv *controller.Server
	api *httptest.Server
	key string
}

func newQuoteBench(b *testing.B) *quoteBench {
	b.Helper()
	env := newEnv(b, envOptions{})
	key, err := postgres.NewAccountService(env.db).CreateAccount(context.Background(), &callbridge.Account{Name: "bench", Currency: "EUR"})
	if err != nil {
		b.Fatal(err)
	}
	decks := env.srv.Decks
	q := &quoteBench{srv: env.srv, api: env.api, key: key}

	deck := q.call(b, "POST", "/v1/rate-decks", "application/json", `{"name":"bench","currency":"EUR","time_zone":"Europe/Berlin","precision":4}`, http.StatusCreated)
	id := deck[strings.Index(deck, `"id":"`)+6:]
	id = id[:strings.IndexByte(id, '"')]
	var csv strings.Builder
	csv.WriteString("prefix,per_minute,first_increment,next_increment,description\n")
	rng := rand.New(rand.NewPCG(1, 2))
	seen := map[string]bool{}
	for len(seen) < 100_000 {
		p := strconv.Itoa(1 + rng.IntN(9))
		for l := 2 + rng.IntN(8); len(p) < l; {
			p += strconv.Itoa(rng.IntN(10))
		}
		if !seen[p] {
			seen[p] = true
			fmt.Fprintf(&csv, "%s,0.%04d,30,6,destination %s\n", p, rng.IntN(5000), p)
		}
	}
	q.call(b, "POST", "/v1/rate-decks/"+id+"/rates?mode=replace", "text/csv", csv.String(), http.StatusOK)
	if n := decks.AccountDeck(q.accountID(b), time.Now()).Len(); n != 100_000 {
		b.Fatalf("the deck in force has %d rates, want 100000", n)
	}
	return q
}

func (q *quoteBench) accountID(b *testing.B) string {
	a, err := q.srv.Accounts.Authenticate(context.Background(), q.key)
	if err != nil {
		b.Fatal(err)
	}
	return a.ID
}

func (q *quoteBench) call(b *testing.B, method, path, contentType, body string, want int) string {
	b.Helper()
	req, _ := http.NewRequest(method, q.api.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+q.key)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		b.Fatalf("%s %s: got %d %s, want %d", method, path, resp.StatusCode, out, want)
	}
	return string(out)
}

// randomNumber appends a random 11-digit number: never seen before, so
// nothing but the deck can answer it.
func randomNumber(dst []byte, rng *rand.Rand) []byte {
	dst = append(dst, byte('1'+rng.IntN(9)))
	for range 10 {
		dst = append(dst, byte('0'+rng.IntN(10)))
	}
	return dst
}

// BenchmarkQuote measures GET /v1/rates/quote over HTTP (keep-alive, 8
// concurrent clients) for random numbers on a 100,000-prefix deck, with
// the database and the deck sync wired as in serve, and reports quotes/s
// and the latency each client saw. The target is 12,500 quotes/s.
func BenchmarkQuote(b *testing.B) {
	q := newQuoteBench(b)
	client := q.api.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	client.Timeout = 30 * time.Second // a quote that never answers fails the run instead of hanging it
	auth := "Bearer " + q.key

	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	var seed uint64
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		seed++
		rng := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
		mu.Unlock()
		mine := make([]time.Duration, 0, 1024)
		url := make([]byte, 0, 128)
		body := make([]byte, 0, 2048)
		for pb.Next() {
			url = append(url[:0], q.api.URL...)
			url = append(url, "/v1/rates/quote?duration=95&number="...)
			url = randomNumber(url, rng)
			req, _ := http.NewRequest("GET", string(url), nil)
			req.Header.Set("Authorization", auth)
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			body, err = controller.AppendBody(resp.Body, body[:0])
			resp.Body.Close()
			mine = append(mine, time.Since(t0))
			if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"amount_micros"`) {
				b.Errorf("got %d %s %v, want a quote", resp.StatusCode, body, err)
				return
			}
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	cpu := processCPU(b) - cpu0
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "quotes/s")
	// The CPU time of client and server per quote: on a machine others
	// share, what the throughput would be with its cores to itself.
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(lat)), "cpu-µs/quote")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// processCPU returns the CPU time (user and system) the process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkQuoteInProcess is one quote through the whole handler chain
// (authentication, rating, JSON) without HTTP transport: the server's own
// cost per quote.
func BenchmarkQuoteInProcess(b *testing.B) {
	q := newQuoteBench(b)
	h := q.srv.Handler()
	rng := rand.New(rand.NewPCG(5, 6))
	url := make([]byte, 0, 128)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	for b.Loop() {
		url = append(url[:0], "/v1/rates/quote?duration=95&number="...)
		url = randomNumber(url, rng)
		req := httptest.NewRequest("GET", string(url), nil)
		req.Header.Set("Authorization", "Bearer "+q.key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("got %d %s", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N)/1000, "cpu-µs/op")
}
