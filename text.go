package callbridge

import "unicode/utf8"

// TextProblem says what makes s unacceptable as free text (a name, a
// label, a description, a string in callback metadata), or "" when it is
// fine: text is valid UTF-8 without NUL, other C0 control characters or
// DEL (PostgreSQL refuses NUL; the others break logs, CSV exports and
// the FreeSWITCH variables text may end up in), and without U+FFFD, which
// is what a JSON decoder makes of invalid UTF-8 and lone surrogates.
// Multi-line text may also hold tab, line feed and carriage return.
//
// Every route checks every string of its input with it (the controller's
// JSON decoding, query strings and path parameters; rating's CSV cells),
// so one rule answers 400 naming the field, everywhere.
func TextProblem(s string, multiline bool) string {
	for i, c := range s {
		switch {
		case c == utf8.RuneError:
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return "must be valid UTF-8"
			}
			return "must be valid UTF-8 (holds U+FFFD, the mark of an invalid byte or a lone surrogate)"
		case c == 0:
			return "must not contain NUL (\\u0000)"
		case multiline && (c == '\t' || c == '\n' || c == '\r'):
		case c < 0x20 || c == 0x7f:
			return "must not contain control characters"
		}
	}
	return ""
}

// CheckText returns an EINVALID error naming field when s is not
// acceptable single-line text (TextProblem).
func CheckText(field, s string) error {
	if p := TextProblem(s, false); p != "" {
		return FieldError(field, "%s", p)
	}
	return nil
}
