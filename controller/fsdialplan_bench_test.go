package controller

import (
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"callbridge/privacy"
	"callbridge/privacy/privacytest"
)

// BenchmarkDialplanLookup answers mod_xml_curl requests (the real 5.6 KB
// form FreeSWITCH sends, for random parties of random numbers) over HTTP
// from an index of 1,000,000 active bindings, one request at a time, and
// reports the latency of each request as the client sees it (p50_ms,
// p99_ms) and lookups/s. keepalive reuses one connection; newconn opens a
// TCP connection per request, as mod_xml_curl's libcurl does. The target
// is p99 under 1 ms.
func BenchmarkDialplanLookup(b *testing.B) {
	b.Run("1M_bindings", func(b *testing.B) {
		ix, probes := privacytest.Lines(1_000_000)
		srv := dialplanServer(b, ix, nil)
		bodies := make([]string, 0, 1024)
		rng := rand.New(rand.NewPCG(1, 2))
		for range 1024 {
			p := probes[rng.IntN(len(probes))]
			bodies = append(bodies, fixtureBody(b, string(p[0]), string(p[1])))
		}
		for _, mode := range []string{"keepalive", "newconn"} {
			b.Run(mode, func(b *testing.B) {
				tr := &http.Transport{DisableKeepAlives: mode == "newconn", MaxIdleConnsPerHost: 4}
				defer tr.CloseIdleConnections()
				client := &http.Client{Transport: tr, Timeout: 30 * time.Second} // a hung answer fails the run
				lat := make([]time.Duration, 0, 1<<16)
				buf := make([]byte, 0, 4096)
				b.ReportAllocs()
				start := time.Now()
				for i := 0; b.Loop(); i++ {
					t0 := time.Now()
					req, err := http.NewRequest(http.MethodPost, srv.URL+"/fs/dialplan", strings.NewReader(bodies[i%len(bodies)]))
					if err != nil {
						b.Fatal(err)
					}
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.SetBasicAuth(dpUser, dpPass)
					resp, err := client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					buf, err = appendBody(resp.Body, buf[:0])
					resp.Body.Close()
					if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(buf), `application="bridge"`) {
						b.Fatalf("got %d %s %v, want a bridge", resp.StatusCode, buf, err)
					}
					lat = append(lat, time.Since(t0))
				}
				elapsed := time.Since(start)
				if len(lat) == 0 {
					return
				}
				slices.Sort(lat)
				ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
				b.ReportMetric(ms(lat[len(lat)/2]), "p50_ms")
				b.ReportMetric(ms(lat[len(lat)*99/100]), "p99_ms")
				b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "lookups/s")
			})
		}
	})
}

// BenchmarkDialplanAnswer is the handler's own work for one request (form
// parse, lookup, decision, XML) without HTTP, on the 1M-binding index.
func BenchmarkDialplanAnswer(b *testing.B) {
	ix, probes := privacytest.Lines(1_000_000)
	cfg := &privacy.Routing{LookupTimeout: time.Second}
	bodies := make([][]byte, 0, 1024)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1024 {
		p := probes[rng.IntN(len(probes))]
		bodies = append(bodies, []byte(fixtureBody(b, string(p[0]), string(p[1]))))
	}
	logger := slog.New(slog.DiscardHandler)
	out := make([]byte, 0, 4096)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		out = cfg.Answer(b.Context(), out[:0], bodies[i%len(bodies)], ix, time.Now, logger)
		if !strings.Contains(string(out), `application="bridge"`) {
			b.Fatalf("got %s, want a bridge", out)
		}
	}
}
