package callbridge

import (
	"errors"
	"fmt"
)

// Error codes. The HTTP boundary maps each to one status in one table.
const (
	ECONFLICT       = "conflict"            // 409: the request conflicts with current state
	EINTERNAL       = "internal"            // 500: a bug or an unexpected failure
	EINVALID        = "invalid"             // 400: the request is malformed or out of range
	ENOTFOUND       = "not_found"           // 404: no such object for this account
	EUNAUTHORIZED   = "unauthorized"        // 401: missing or wrong credentials
	EFORBIDDEN      = "forbidden"           // 403: authenticated, but not allowed
	ERATELIMIT      = "rate_limited"        // 429: too many requests or a full queue
	EUNAVAILABLE    = "unavailable"         // 503: a dependency is down; retry later
	ETOOLARGE       = "too_large"           // 413: the request body is too large
	ENOFUNDS        = "insufficient_funds"  // 402: a prepaid balance cannot pay for the call
	ENONUMBER       = "no_number_available" // 409: the pool has no virtual number that fits
	ENOTIMPLEMENTED = "not_implemented"     // 501: the operation is not supported
	// EOUTCOMEUNKNOWN (503): a creation may or may not have taken effect,
	// and the store could not be reached to learn which. Unlike
	// EUNAVAILABLE it does not mean "nothing was done": the client learns
	// the outcome by sending the request again with the same idempotency
	// key, which returns what was created or creates it.
	EOUTCOMEUNKNOWN = "outcome_unknown"
)

// Error is the domain error. Code is one of the E* constants and is what
// programs branch on; Message is for people. Field, when set, names the
// request field at fault.
type Error struct {
	Code    string
	Message string
	Field   string
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("callbridge: %s: %s: %s", e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("callbridge: %s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldError returns an EINVALID *Error naming the offending request field.
func FieldError(field, format string, args ...any) *Error {
	return &Error{Code: EINVALID, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of the first *Error in err's chain, or a
// generic message that leaks nothing for any other error.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// ErrorField returns the field named by the first *Error in err's chain.
func ErrorField(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}

// RetryAfter may wrap an error to ask the client to come back later, in
// Seconds; the HTTP answer then carries a Retry-After header.
type RetryAfter struct {
	Seconds int
	Err     error
}

// Error returns the wrapped error's message.
func (r *RetryAfter) Error() string { return r.Err.Error() }

// Unwrap returns the wrapped error.
func (r *RetryAfter) Unwrap() error { return r.Err }
