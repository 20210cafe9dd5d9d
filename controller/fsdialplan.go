package controller

import (
	"context"
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

	"callbridge"
	"callbridge/dialplan"

	"github.com/gin-gonic/gin"
)

// DialplanConfig configures POST /fs/dialplan, the endpoint FreeSWITCH's
// mod_xml_curl asks for the route of each inbound call.
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
	// Rules normalise the dialled and calling numbers.
	Rules callbridge.NumberRules
	// Options shape the XML (ring timeout, recordings, refusals).
	Options dialplan.Options
	// LookupTimeout bounds a database fallback; 0 means 2 s (mod_xml_curl
	// gives up after its own timeout and falls back to the static plan).
	LookupTimeout time.Duration
}

// LineLookup finds what is known of a virtual number (BindingIndex).
type LineLookup interface {
	Line(ctx context.Context, x callbridge.Number) (*dialplan.Line, error)
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
func fsDialplan(cfg *DialplanConfig, lines LineLookup, now func() time.Time, logger *slog.Logger) gin.HandlerFunc {
	user := sha256.Sum256([]byte(cfg.User))
	pass := sha256.Sum256([]byte(cfg.Password))
	timeout := cfg.LookupTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
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
				c.AbortWithStatus(http.StatusRequestEntityTooLarge)
				return
			}
			c.AbortWithStatus(http.StatusBadRequest)
			return
		}
		*out = answerDialplan(c.Request.Context(), (*out)[:0], body, cfg, lines, now, timeout, logger)
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

// answerDialplan appends the document for one mod_xml_curl form body.
func answerDialplan(ctx context.Context, out, body []byte, cfg *DialplanConfig, lines LineLookup, now func() time.Time, timeout time.Duration, logger *slog.Logger) []byte {
	req, err := dialplan.ParseForm(body, cfg.Rules)
	if err != nil {
		if !errors.Is(err, dialplan.ErrNotDialplan) {
			logger.Warn("dialplan request refused", "err", err)
		}
		return dialplan.AppendNotFound(out)
	}
	lctx, cancel := context.WithTimeout(ctx, timeout)
	line, err := lines.Line(lctx, req.Destination)
	cancel()
	if err != nil {
		logger.Error("dialplan lookup", "x", req.Destination, "err", err)
		return dialplan.AppendNotFound(out)
	}
	d := dialplan.Decide(req, line, now().UTC())
	doc, err := dialplan.Render(out, req, d, &cfg.Options)
	if err != nil {
		logger.Error("dialplan render", "x", req.Destination, "err", err)
		return dialplan.AppendNotFound(out)
	}
	if d.Routed() {
		// Checked first: the arguments would be boxed even if discarded.
		if logger.Enabled(ctx, slog.LevelDebug) {
			logger.Debug("dialplan route", "x", d.X, "binding", d.Binding.ID, "direction", d.Direction, "uuid", req.UniqueID)
		}
	} else {
		logger.Info("dialplan refusal", "x", d.X, "reason", d.Reason, "uuid", req.UniqueID)
	}
	return doc
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
