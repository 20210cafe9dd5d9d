package controller

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	"callbridge"
	"callbridge/controller/internal/handler"

	"github.com/gin-gonic/gin"
)

// recovery turns a panic in a handler into a logged 500 with the JSON
// error shape; the process keeps serving.
func recovery(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if v := recover(); v != nil {
				if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(v)
				}
				log.Error("panic in handler", "route", c.FullPath(), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if !c.Writer.Written() {
					c.AbortWithStatusJSON(http.StatusInternalServerError, handler.ErrorBody(callbridge.EINTERNAL, "internal error", ""))
				}
			}
		}()
		c.Next()
	}
}

// requestLog logs one line per request. It never logs headers, so API
// keys and basic-auth credentials stay out of the logs.
func requestLog(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		status := c.Writer.Status()
		attrs := []any{
			"method", c.Request.Method, "route", c.FullPath(), "status", status,
			"duration_ms", float64(time.Since(start).Microseconds()) / 1000,
		}
		if a := callbridge.AccountFromContext(c.Request.Context()); a != nil {
			attrs = append(attrs, "account", a.ID)
		}
		switch {
		case status >= 500:
			attrs = append(attrs, "error", c.Errors.String())
			log.Error("http request", attrs...)
		case status >= 400:
			log.Info("http request", attrs...)
		default:
			log.Debug("http request", attrs...)
		}
	}
}

// limitBody caps the request body at n, or at the cap routes names for a
// route pattern; reading past it fails, and handlers turn that into 413.
func limitBody(n int64, routes map[string]int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		n := n
		if r, ok := routes[c.FullPath()]; ok {
			n = r
		}
		if c.Request.ContentLength > n {
			if c.FullPath() == fsDialplanRoute {
				dialplanNotFound(c) // FreeSWITCH reads XML only
				return
			}
			handler.WriteError(c, callbridge.Errorf(callbridge.ETOOLARGE, "request body is larger than %d bytes", n))
			return
		}
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, n)
		c.Next()
	}
}

// checkInput refuses, with 400, a request whose query string Go's parser
// cannot read whole (it drops a pair holding ';' or a bad escape, so a
// filter would silently vanish: /v1/cdrs?binding_id=';x listed every
// CDR), and one whose query keys, query values or path parameters are not
// acceptable text (callbridge.TextProblem), naming the parameter.
func checkInput() gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.FullPath() == fsDialplanRoute {
			c.Next() // FreeSWITCH's form: the dialplan reads it and answers XML
			return
		}
		q, err := url.ParseQuery(c.Request.URL.RawQuery)
		if err != nil {
			msg := "malformed query string: " + err.Error()
			if strings.Contains(err.Error(), "semicolon") {
				msg = "malformed query string: a ';' must be escaped (%3B)"
			}
			handler.WriteError(c, callbridge.Errorf(callbridge.EINVALID, "%s", msg))
			return
		}
		for k, vs := range q {
			if err := callbridge.CheckText(k, k); err != nil {
				handler.WriteError(c, callbridge.Errorf(callbridge.EINVALID, "a query parameter's name %s", callbridge.ErrorMessage(err)))
				return
			}
			for _, v := range vs {
				if err := callbridge.CheckText(k, v); err != nil {
					handler.WriteError(c, err)
					return
				}
			}
		}
		for _, p := range c.Params {
			if err := callbridge.CheckText(p.Key, p.Value); err != nil {
				handler.WriteError(c, err)
				return
			}
		}
		c.Next()
	}
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(c *gin.Context) (string, bool) {
	h := c.GetHeader("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// authenticate requires an account's API key and puts the account in the
// request context (callbridge.AccountFromContext). Failed lookups are
// counted per client address in failures (nil counts nothing): once an
// address has used its bucket, its requests answer 429 before any lookup,
// so guessing keys cannot cost a database query each at high rate.
func authenticate(accounts callbridge.AccountService, failures *limiter) gin.HandlerFunc {
	return func(c *gin.Context) {
		key, ok := bearer(c)
		if !ok {
			c.Header("WWW-Authenticate", `Bearer realm="callbridge"`)
			handler.WriteError(c, callbridge.Errorf(callbridge.EUNAUTHORIZED, "missing Authorization: Bearer <API key>"))
			return
		}
		client := clientKey(c.Request.RemoteAddr)
		if failures != nil {
			if wait, limited := failures.wait(client); limited {
				handler.WriteError(c, retryAfter(wait, "too many failed authentications from this address; retry in %d s"))
				return
			}
		}
		a, err := accounts.Authenticate(c.Request.Context(), key)
		if err != nil {
			if callbridge.ErrorCode(err) == callbridge.EUNAUTHORIZED {
				c.Header("WWW-Authenticate", `Bearer realm="callbridge", error="invalid_token"`)
				if failures != nil {
					failures.allow(client)
				}
			}
			handler.WriteError(c, err)
			return
		}
		c.Request = c.Request.WithContext(callbridge.NewContextWithAccount(c.Request.Context(), a))
		c.Next()
	}
}

// adminOnly requires the operator's admin token, compared in constant time.
// With no token configured, admin routes are closed.
func adminOnly(token string) gin.HandlerFunc {
	return func(c *gin.Context) {
		tok, ok := bearer(c)
		if token == "" || !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(token)) != 1 {
			handler.WriteError(c, callbridge.Errorf(callbridge.EUNAUTHORIZED, "admin token required"))
			return
		}
		c.Next()
	}
}

// adminOrAccount accepts the operator's admin token (compared in constant
// time; marks the request as the admin's) or an account's API key (puts
// the account in the request context, like authenticate).
func adminOrAccount(token string, auth gin.HandlerFunc) gin.HandlerFunc {
	return func(c *gin.Context) {
		if tok, ok := bearer(c); ok && token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(token)) == 1 {
			handler.MarkAdmin(c)
			c.Next()
			return
		}
		auth(c)
	}
}
