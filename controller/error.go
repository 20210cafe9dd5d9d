package controller

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
}

// errorJSON is the body of every error answer:
// {"error":{"code":"invalid","message":"...","field":"a"}}.
type errorJSON struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field,omitempty"`
	} `json:"error"`
}

func errorBody(code, message, field string) errorJSON {
	var e errorJSON
	e.Error.Code, e.Error.Message, e.Error.Field = code, message, field
	return e
}

// writeError answers with err's code and message. Internal errors are
// logged and their text is never shown to the client.
func writeError(c *gin.Context, err error) {
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
	c.AbortWithStatusJSON(status, errorBody(code, callbridge.ErrorMessage(err), callbridge.ErrorField(err)))
}
