// Package handler holds what every handler of the HTTP API shares: the one
// table mapping domain error codes to HTTP statuses and the error body,
// strict JSON request decoding with its text checks, list limits, and the
// caller (account or admin) a request is authenticated as. It registers
// no route.
package handler

import (
	"errors"
	"net/http"
	"strconv"

	"callbridge"

	"github.com/gin-gonic/gin"
)

// statusOf maps domain error codes to HTTP statuses: the one table.
var statusOf = map[string]int{
	callbridge.EINVALID:        http.StatusBadRequest,
	callbridge.EUNAUTHORIZED:   http.StatusUnauthorized,
	callbridge.ENOFUNDS:        http.StatusPaymentRequired,
	callbridge.EFORBIDDEN:      http.StatusForbidden,
	callbridge.ENOTFOUND:       http.StatusNotFound,
	callbridge.ECONFLICT:       http.StatusConflict,
	callbridge.ENONUMBER:       http.StatusConflict,
	callbridge.ETOOLARGE:       http.StatusRequestEntityTooLarge,
	callbridge.ERATELIMIT:      http.StatusTooManyRequests,
	callbridge.EINTERNAL:       http.StatusInternalServerError,
	callbridge.ENOTIMPLEMENTED: http.StatusNotImplemented,
	callbridge.EUNAVAILABLE:    http.StatusServiceUnavailable,
	callbridge.EOUTCOMEUNKNOWN: http.StatusServiceUnavailable,
}

// ErrorJSON is the body of every error answer:
// {"error":{"code":"invalid","message":"...","field":"a"}}.
type ErrorJSON struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field,omitempty"`
	} `json:"error"`
}

func ErrorBody(code, message, field string) ErrorJSON {
	var e ErrorJSON
	e.Error.Code, e.Error.Message, e.Error.Field = code, message, field
	return e
}

// WriteError answers with err's code and message. Internal errors are
// logged and their text is never shown to the client.
func WriteError(c *gin.Context, err error) {
	code := callbridge.ErrorCode(err)
	status, ok := statusOf[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if status >= 500 {
		c.Error(err) // logged by requestLog
	}
	var ra *callbridge.RetryAfter
	if errors.As(err, &ra) && ra.Seconds > 0 {
		c.Header("Retry-After", strconv.Itoa(ra.Seconds))
	} else if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		c.Header("Retry-After", "1")
	}
	c.AbortWithStatusJSON(status, ErrorBody(code, callbridge.ErrorMessage(err), callbridge.ErrorField(err)))
}
