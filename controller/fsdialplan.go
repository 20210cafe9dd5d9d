package controller

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"callbridge/dialplan"
	"callbridge/privacy"

	"github.com/gin-gonic/gin"
)

// DialplanConfig configures POST /fs/dialplan, the endpoint FreeSWITCH's
// mod_xml_curl asks for the route of each inbound call: its credential
// and allowed sources here, the routing decisions in privacy.Routing.
type DialplanConfig struct {
	// User and Password are the endpoint's own HTTP basic credential (the
	// one in mod_xml_curl's binding). Both are required: an empty password
	// disables the endpoint.
	User     string
	Password string
	// AllowedSources, when not empty, is the list of networks FreeSWITCH
	// nodes connect from; other peers are refused before authentication.
	// The TCP peer address is used, never X-Forwarded-For.
	AllowedSources []netip.Prefix
	// Routing decides the route of each call.
	privacy.Routing
}

// fsDialplanRoute is mod_xml_curl's route: it answers XML, always.
const fsDialplanRoute = "/fs/dialplan"

// dialplanNotFound answers mod_xml_curl with the not-found document: a
// form it cannot use (too large) must still get XML, which FreeSWITCH
// reads as "no dialplan here" and handles, where a JSON error body would
// only be logged as a parse failure.
func dialplanNotFound(c *gin.Context) {
	c.Data(http.StatusOK, "text/xml; charset=utf-8", dialplan.NotFound())
	c.Abort()
}

// fsDialplan answers mod_xml_curl. Every answer FreeSWITCH can use is 200
// text/xml: a route, a refusal, or "not found" for requests of another
// section, malformed requests and lookup failures (FreeSWITCH then uses
// its static fallback extension). Credentials and source are checked
// first; failures get 401/403 with no XML.
//
// It is on the path of every inbound call, so it keeps garbage low: the
// form (about 200 fields, 6 KB) is read into a recycled buffer and only
// the fields a route needs are extracted from it (dialplan.ParseForm),
// and the answer is rendered into a recycled buffer too.
func fsDialplan(cfg *DialplanConfig, lines privacy.LineLookup, now func() time.Time, logger *slog.Logger) gin.HandlerFunc {
	user := sha256.Sum256([]byte(cfg.User))
	pass := sha256.Sum256([]byte(cfg.Password))
	bufs := sync.Pool{New: func() any {
		b := make([]byte, 0, 8<<10)
		return &b
	}}
	return func(c *gin.Context) {
		if len(cfg.AllowedSources) > 0 && !allowedSource(c.Request.RemoteAddr, cfg.AllowedSources) {
			c.AbortWithStatus(http.StatusForbidden)
			return
		}
		u, p, ok := c.Request.BasicAuth()
		us, ps := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		if !ok || cfg.Password == "" ||
			subtle.ConstantTimeCompare(us[:], user[:])&subtle.ConstantTimeCompare(ps[:], pass[:]) != 1 {
			c.Header("WWW-Authenticate", `Basic realm="callbridge-dialplan"`)
			c.AbortWithStatus(http.StatusUnauthorized)
			return
		}
		in, out := bufs.Get().(*[]byte), bufs.Get().(*[]byte)
		defer func() {
			recycle(&bufs, in)
			recycle(&bufs, out)
		}()
		body, err := appendBody(c.Request.Body, (*in)[:0])
		*in = body
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				dialplanNotFound(c)
				return
			}
			c.AbortWithStatus(http.StatusBadRequest)
			return
		}
		*out = cfg.Answer(c.Request.Context(), (*out)[:0], body, lines, now, logger)
		c.Data(http.StatusOK, "text/xml; charset=utf-8", *out)
	}
}

// maxRecycled is the largest buffer put back for reuse; a rare big form
// is left to the garbage collector rather than kept forever.
const maxRecycled = 64 << 10

func recycle(p *sync.Pool, b *[]byte) {
	if cap(*b) <= maxRecycled {
		*b = (*b)[:0]
		p.Put(b)
	}
}

// appendBody appends all of r to b.
func appendBody(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// allowedSource reports whether the TCP peer remoteAddr is in one of nets.
func allowedSource(remoteAddr string, nets []netip.Prefix) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}
