package controller

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/dialplan"
	"callbridge/metrics"

	"github.com/gin-gonic/gin"
)

// slowLines answers after a delay.
type slowLines struct {
	staticLines
	delay time.Duration
}

func (s slowLines) Line(ctx context.Context, x callbridge.Number) (*dialplan.Line, error) {
	time.Sleep(s.delay)
	return s.staticLines.Line(ctx, x)
}

// TestDialplanLatencyFromArrival: /fs/dialplan is timed from the
// connection's arrival, as mod_xml_curl times it, and answers later than
// FreeSWITCH's timeout are counted as late: a request the controller was
// slow to read, and one whose lookup was slow. A fast one is not.
func TestDialplanLatencyFromArrival(t *testing.T) {
	const timeout = 200 * time.Millisecond
	m := metrics.New()
	m.DialplanTimeout = timeout
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(observe(m))
	lines := slowLines{staticLines: testLines()}
	fast := &PrivacyNumbers{Lines: lines, Dialplan: DialplanConfig{User: dpUser, Password: dpPass}, Logger: slog.New(slog.DiscardHandler)}
	e.POST("/fs/dialplan", fsDialplan(&fast.Dialplan, fast.Lines, time.Now, fast.Logger))
	lines.delay = timeout + 50*time.Millisecond
	srv := httptest.NewUnstartedServer(e)
	srv.Config.ConnContext = ConnArrival
	srv.Start()
	t.Cleanup(srv.Close)
	body := fixtureBody(t, string(tX), string(tA))

	late := func() float64 { return scraped(t, m, "callbridge_dialplan_late_total", "") }
	if code, _ := postDialplan(t, srv, body, basic); code != http.StatusOK || late() != 0 {
		t.Fatalf("fast request: %d, late %v", code, late())
	}

	// FreeSWITCH connected, then the controller took 300 ms to read the
	// request (here the request's bytes come late; a stopped or starved
	// controller looks the same from FreeSWITCH's side).
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(timeout + 100*time.Millisecond)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/fs/dialplan", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	basic(req)
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("slow-to-read request: %v %v", resp, err)
	}
	resp.Body.Close()
	if late() != 1 {
		t.Errorf("late after a request read 300 ms after its connection: %v, want 1", late())
	}
	if sum := scraped(t, m, "callbridge_http_request_duration_seconds_sum", "/fs/dialplan"); sum < (timeout + 100*time.Millisecond).Seconds() {
		t.Errorf("dialplan latency sum %.3fs, want at least the 300 ms the request waited", sum)
	}

	// A slow lookup on the dialplan route itself.
	e2 := gin.New()
	e2.Use(observe(m))
	e2.POST("/fs/dialplan", fsDialplan(&fast.Dialplan, lines, time.Now, fast.Logger))
	srv2 := httptest.NewServer(e2)
	t.Cleanup(srv2.Close)
	if code, _ := postDialplan(t, srv2, body, basic); code != http.StatusOK {
		t.Fatalf("slow lookup: %d", code)
	}
	if late() != 2 {
		t.Errorf("late after a slow lookup: %v, want 2", late())
	}
}

// scraped is the value of the series name (of route, unless empty) that
// m serves in the Prometheus text format.
func scraped(t *testing.T, m *metrics.Metrics, name, route string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		series, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		metric, labels, _ := strings.Cut(series, "{")
		if metric != name || (route != "" && !strings.Contains(labels, `route="`+route+`"`)) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		return v
	}
	t.Fatalf("no %s for route %q", name, route)
	return 0
}
