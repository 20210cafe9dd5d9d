package controller

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"callbridge/metrics"

	"github.com/gin-gonic/gin"
)

// stalledListener accepts each connection only after a delay, as a
// controller that is stopped (SIGSTOP) or starved of CPU does: the kernel
// has completed the handshake and queued the request meanwhile.
type stalledListener struct {
	net.Listener
	delay time.Duration
}

func (l stalledListener) Accept() (net.Conn, error) {
	time.Sleep(l.delay)
	return l.Listener.Accept()
}

// TestDialplanArrivalBeforeAccept: a request that waited in the listen
// backlog is timed from when the kernel received it, so FreeSWITCH's
// timeout is counted even though the handler ran fast once accepted.
func TestDialplanArrivalBeforeAccept(t *testing.T) {
	const timeout = 200 * time.Millisecond
	m := metrics.New()
	m.DialplanTimeout = timeout
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(observe(m))
	p := &PrivacyNumbers{Lines: testLines(), Dialplan: DialplanConfig{User: dpUser, Password: dpPass}}
	e.POST("/fs/dialplan", fsDialplan(&p.Dialplan, p.Lines, time.Now, slog.New(slog.DiscardHandler)))
	srv := httptest.NewUnstartedServer(e)
	srv.Listener = stalledListener{Listener: srv.Listener, delay: timeout + 100*time.Millisecond}
	srv.Config.ConnContext = ConnArrival
	srv.Start()
	t.Cleanup(srv.Close)
	if code, _ := postDialplan(t, srv, fixtureBody(t, string(tX), string(tA)), basic); code != http.StatusOK {
		t.Fatalf("dialplan: %d", code)
	}
	if late := scraped(t, m, "callbridge_dialplan_late_total", ""); late != 1 {
		t.Errorf("late %v after 300 ms in the backlog, want 1", late)
	}
}
