package controller_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"callbridge"
	"callbridge/controller"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
)

// BenchmarkCreateCallback measures accepted POST /v1/callbacks through the
// whole HTTP stack with the database in the loop, and reports p50/p99.
// Requests are spread over accounts so that queue bounds never refuse one.
// The server has the accounts and callbacks and nothing else (no engine
// admission, no rate limits), so the figure is the handler's and the
// database's, comparable with the figures in docs/benchmarks.md.
func BenchmarkCreateCallback(b *testing.B) {
	db := pgtest.New(b)
	ctx := context.Background()
	accounts := postgres.NewAccountService(db)
	const perAccount = 900
	keys := make([]string, b.N/perAccount+1)
	for i := range keys {
		k, err := accounts.CreateAccount(ctx, &callbridge.Account{Name: "bench", ServiceNumber: "4930100100"})
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = k
	}
	srv := &controller.Server{Accounts: accounts, Callbacks: postgres.NewCallbackService(db)}
	api := httptest.NewServer(srv.Handler())
	defer api.Close()
	client := api.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	body := []byte(`{"a":"+49 170 1111111","b":"4917022222","ring_timeout_a":20,"webhook_url":"https://crm.example/hook","metadata":{"ticket":"T-1"}}`)

	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	var next int64
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			mu.Lock()
			i := next
			next++
			mu.Unlock()
			req, _ := http.NewRequest("POST", api.URL+"/v1/callbacks", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+keys[int(i)/perAccount])
			req.Header.Set("Content-Type", "application/json")
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mine = append(mine, time.Since(t0))
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	reportLatency(b, lat, elapsed)
}

func reportLatency(b *testing.B, lat []time.Duration, elapsed time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
