package controller

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"callbridge/metrics"

	"github.com/gin-gonic/gin"
)

// observe records every request in m by its route pattern, timed from its
// arrival (ConnArrival).
func observe(m *metrics.Metrics) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := arrival(c.Request)
		c.Next()
		m.ObserveRequest(c.Request.Method, c.FullPath(), c.Writer.Status(), time.Since(start))
	}
}

type arrivalKey struct{}

// connArrival is when a connection was accepted; the first request read
// from it arrived then.
type connArrival struct {
	at   time.Time
	used atomic.Bool
}

// ConnArrival is an http.Server ConnContext hook noting when each
// connection was accepted. The HTTP metrics time the first request of a
// connection from then, not from when its handler first ran: FreeSWITCH's
// mod_xml_curl opens a connection per request and times it from the
// connect, so a controller slow to accept, read headers or schedule the
// handler (a saturated CPU, a stop) is seen as FreeSWITCH sees it. Later
// requests of a kept-alive connection are timed from their handler.
//
// The connection may have waited before it was accepted: in the listen
// backlog while the process was stopped or starved. Where the kernel tells
// (Linux TCP_INFO), the arrival is when it last received data on the
// connection, or completed its handshake, before the accept.
func ConnArrival(ctx context.Context, c net.Conn) context.Context {
	now := time.Now()
	return context.WithValue(ctx, arrivalKey{}, &connArrival{at: now.Add(-receivedAgo(c))})
}

// arrival is when r arrived, as far as the server can tell.
func arrival(r *http.Request) time.Time {
	if a, ok := r.Context().Value(arrivalKey{}).(*connArrival); ok && !a.used.Swap(true) {
		return a.at
	}
	return time.Now()
}
