package controller

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"callbridge"

	"github.com/gin-gonic/gin"
)

// decodeJSON reads one JSON object from the request body into v. It
// refuses unknown fields, wrong types, trailing data, invalid UTF-8 and
// bodies over the size cap, each as a 4xx *callbridge.Error that names the
// field where it can.
func decodeJSON(c *gin.Context, v any) error {
	if ct := c.ContentType(); ct != "" && ct != "application/json" {
		return callbridge.Errorf(callbridge.EINVALID, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return callbridge.Errorf(callbridge.ETOOLARGE, "request body is larger than %d bytes", mbe.Limit)
		}
		return callbridge.Errorf(callbridge.EINVALID, "cannot read request body")
	}
	return decodeJSONBytes(body, v)
}

func decodeJSONBytes(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return callbridge.Errorf(callbridge.EINVALID, "request body must be a JSON object")
	}
	if !utf8.Valid(body) {
		return callbridge.Errorf(callbridge.EINVALID, "request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return callbridge.Errorf(callbridge.EINVALID, "request body must hold one JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return callbridge.Errorf(callbridge.EINVALID, "malformed JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return callbridge.FieldError(te.Field, "must be %s", kind(te.Type.String()))
		}
		return callbridge.Errorf(callbridge.EINVALID, "request body must be a JSON object")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return callbridge.FieldError(f, "unknown field")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return callbridge.Errorf(callbridge.EINVALID, "truncated JSON")
	}
	return callbridge.Errorf(callbridge.EINVALID, "invalid JSON: %v", err)
}

func kind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "an integer in range"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "string", strings.HasSuffix(goType, "Number"):
		return "a string"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	}
	return "an object of the right shape"
}
