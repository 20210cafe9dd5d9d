package handler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"callbridge"

	"github.com/gin-gonic/gin"
)

// DecodeJSON reads one JSON object from the request body into v. It
// refuses unknown fields, wrong types, trailing data, invalid UTF-8 and
// bodies over the size cap, each as a 4xx *callbridge.Error that names the
// field where it can.
func DecodeJSON(c *gin.Context, v any) error {
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
	return DecodeJSONBytes(body, v)
}

func DecodeJSONBytes(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return callbridge.Errorf(callbridge.EINVALID, "request body must be a JSON object")
	}
	if err := checkJSONText(body); err != nil {
		return err
	}
	if !utf8.Valid(body) {
		return callbridge.Errorf(callbridge.EINVALID, "request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		jerr := jsonError(err)
		if callbridge.ErrorField(jerr) == "" {
			if f := failingField(body, v); f != "" {
				return callbridge.FieldError(f, "has an invalid value")
			}
		}
		return jerr
	}
	if _, err := dec.Token(); err != io.EOF {
		return callbridge.Errorf(callbridge.EINVALID, "request body must hold one JSON object")
	}
	return nil
}

// multilineFields are the top-level fields whose strings may span lines
// (callback metadata is the client's own JSON; a billing profile's
// customer address is a postal address, one line per line).
var multilineFields = map[string]bool{"metadata": true, "customer_address": true}

// checkJSONText checks every string of body, keys included, at any depth,
// with callbridge.TextProblem, and names the first bad one by its path:
// "name", "labels[0]", "metadata.note". A body that is not well-formed
// JSON passes: decoding reports that.
func checkJSONText(body []byte) error {
	type frame struct {
		object  bool
		wantKey bool
		key     string
		index   int
	}
	var stack []frame
	path := func(last string) string {
		var b strings.Builder
		for i, f := range stack {
			seg := f.key
			if i == len(stack)-1 && last != "" {
				seg = last
			}
			if f.object {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(seg)
			} else {
				fmt.Fprintf(&b, "[%d]", f.index)
			}
		}
		return b.String()
	}
	// consumed moves past one value of the innermost container.
	consumed := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].object {
				stack[n-1].wantKey = true
			} else {
				stack[n-1].index++
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // the end, or malformed JSON that decoding reports
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				stack = append(stack, frame{object: t == '{', wantKey: true})
			default:
				stack = stack[:len(stack)-1]
				consumed()
			}
		case string:
			top := len(stack) - 1
			if top >= 0 && stack[top].object && stack[top].wantKey {
				stack[top].key, stack[top].wantKey = t, false
				if p := callbridge.TextProblem(t, false); p != "" {
					return callbridge.FieldError(path(""), "has a key that %s", p)
				}
				continue
			}
			multiline := len(stack) > 0 && multilineFields[stack[0].key]
			if p := callbridge.TextProblem(t, multiline); p != "" {
				return callbridge.FieldError(path(""), "%s", p)
			}
			consumed()
		default:
			consumed()
		}
	}
}

// failingField finds which top-level field of body fails to decode into
// v's type, for errors encoding/json does not attribute to a field (those
// of types with their own UnmarshalJSON, such as time.Time). It returns ""
// when body is not an object or no single field fails.
func failingField(body []byte, v any) string {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer {
		return ""
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return ""
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		one, _ := json.Marshal(map[string]json.RawMessage{k: fields[k]})
		if json.Unmarshal(one, reflect.New(t.Elem()).Interface()) != nil {
			return k
		}
	}
	return ""
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

// QueryLimit reads the limit of a list route: absent means the route's
// default (0 is returned), else a whole number from 1 to max. Every list
// route reads it here, so limit=0 is refused everywhere alike.
func QueryLimit(c *gin.Context, max int) (int, error) {
	s := c.Query("limit")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, callbridge.FieldError("limit", "must be a whole number from 1 to %d", max)
	}
	return n, nil
}
