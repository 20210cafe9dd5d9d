// Package dialplan decides how FreeSWITCH routes a call to a virtual number
// X and writes the decision as the XML document mod_xml_curl expects.
//
// It parses the form mod_xml_curl posts for a dialplan lookup, picks the
// binding of X that matches the caller (AXB: A reaches B and B reaches A;
// XB: anyone reaches B), and renders either a bridge through the number's
// gateway presenting X, a refusal (optional announcement, then hang-up), or
// the "not found" document for requests it does not serve.
//
// It is pure: no I/O, no clock (callers pass now), no storage. It does not
// authenticate FreeSWITCH, look bindings up, or enforce the routing rules
// between bindings; the controller and the database do.
package dialplan

import (
	"bytes"
	"errors"
	"net/url"

	"callbridge"
)

// ErrNotDialplan is returned by ParseRequest for a mod_xml_curl request of
// another section (directory, configuration...).
var ErrNotDialplan = errors.New("dialplan: not a dialplan request")

// ErrMalformed is returned by ParseRequest for a dialplan request that lacks
// a field it needs or holds a value that cannot be trusted.
var ErrMalformed = errors.New("dialplan: malformed request")

// Request is a mod_xml_curl dialplan lookup for one inbound call.
type Request struct {
	// Destination is the dialled number, normalised: the virtual number X.
	Destination callbridge.Number
	// DestinationRaw is the destination as FreeSWITCH holds it, used to
	// anchor the extension's condition. It contains only characters that
	// NumberRules.Parse accepts.
	DestinationRaw string
	// Caller is the caller's number, normalised; empty when the caller id
	// is withheld or not a phone number.
	Caller callbridge.Number
	// Context is the dialplan context FreeSWITCH looks the extension up in.
	Context string
	// UniqueID is the inbound channel's uuid.
	UniqueID string
	// CoreUUID identifies the FreeSWITCH process that asked.
	CoreUUID string
	// Hostname is the FreeSWITCH host that asked.
	Hostname string
}

// ParseRequest reads the form mod_xml_curl posts. It returns ErrNotDialplan
// when section is not "dialplan", and ErrMalformed when the destination is
// not a phone number or the context, channel uuid or core uuid are missing
// or unsafe. A caller id that is not a phone number is not an error: it
// leaves Caller empty.
func ParseRequest(form url.Values, rules callbridge.NumberRules) (*Request, error) {
	if form.Get("section") != "dialplan" {
		return nil, ErrNotDialplan
	}
	r := &Request{
		DestinationRaw: first(form, "Hunt-Destination-Number", "Caller-Destination-Number"),
		Context:        first(form, "Hunt-Context", "Caller-Context"),
		UniqueID:       first(form, "Unique-ID", "Caller-Unique-ID"),
		CoreUUID:       form.Get("Core-UUID"),
		Hostname:       first(form, "FreeSWITCH-Hostname", "hostname"),
	}
	d, err := rules.Parse(r.DestinationRaw)
	if err != nil {
		return nil, ErrMalformed
	}
	r.Destination = d
	if !isToken(r.Context, 64) || !callbridge.IsUUID(r.UniqueID) || (r.CoreUUID != "" && !callbridge.IsUUID(r.CoreUUID)) {
		return nil, ErrMalformed
	}
	if !isToken(r.Hostname, 255) {
		r.Hostname = ""
	}
	if c, err := rules.Parse(first(form, "Hunt-Caller-ID-Number", "Caller-Caller-ID-Number")); err == nil {
		r.Caller = c
	}
	return r, nil
}

// maxFormFields is the number of fields above which a form is refused
// whole, as url.ParseQuery refuses it (its default GODEBUG limit).
const maxFormFields = 10000

// Form fields ParseForm reads, as indexes into a formFields.
const (
	fSection = iota
	fHuntDest
	fCallerDest
	fHuntContext
	fCallerContext
	fUniqueID
	fCallerUniqueID
	fCoreUUID
	fHostnameFS
	fHostname
	fHuntCallerID
	fCallerCallerID
	nFields
)

// formField returns the index of a field ParseForm reads, or -1.
func formField(key []byte) int {
	switch string(key) { // no allocation: the compiler compares in place
	case "section":
		return fSection
	case "Hunt-Destination-Number":
		return fHuntDest
	case "Caller-Destination-Number":
		return fCallerDest
	case "Hunt-Context":
		return fHuntContext
	case "Caller-Context":
		return fCallerContext
	case "Unique-ID":
		return fUniqueID
	case "Caller-Unique-ID":
		return fCallerUniqueID
	case "Core-UUID":
		return fCoreUUID
	case "FreeSWITCH-Hostname":
		return fHostnameFS
	case "hostname":
		return fHostname
	case "Hunt-Caller-ID-Number":
		return fHuntCallerID
	case "Caller-Caller-ID-Number":
		return fCallerCallerID
	}
	return -1
}

// maxFieldLen caps the values ParseForm keeps: every field it reads is
// refused or ignored well below this length anyway (a number has at most
// a few dozen characters, a uuid 36, a host name 255).
const maxFieldLen = 1024

// formFields holds the first value of each field ParseForm reads.
type formFields struct {
	val  [nFields]string
	seen [nFields]bool
	// long marks a field whose first value exceeded maxFieldLen; it is
	// kept as a value no check accepts.
	long [nFields]bool
}

// ParseForm parses the raw body mod_xml_curl posts
// (application/x-www-form-urlencoded, about 200 fields) into a Request.
// It gives the same answer as ParseRequest on url.ParseQuery(body), but
// reads the body once and keeps only the dozen fields a route needs,
// without building a map of every field. As with url.ParseQuery, a field
// containing ';' or a malformed %-escape (in its name or value) is
// skipped, names are %-unescaped too, the first value of a repeated field
// counts, and a body of more than 10000 fields is not read at all.
// Values are validated exactly as ParseRequest validates them.
func ParseForm(body []byte, rules callbridge.NumberRules) (*Request, error) {
	if bytes.Count(body, []byte{'&'})+1 > maxFormFields {
		return nil, ErrNotDialplan
	}
	var f formFields
	var kbuf [3 * 32]byte
	var vbuf [maxFieldLen]byte
	for len(body) > 0 {
		var pair []byte
		if i := bytes.IndexByte(body, '&'); i >= 0 {
			pair, body = body[:i], body[i+1:]
		} else {
			pair, body = body, nil
		}
		if len(pair) == 0 || bytes.IndexByte(pair, ';') >= 0 {
			continue
		}
		key, value := pair, []byte(nil)
		if i := bytes.IndexByte(pair, '='); i >= 0 {
			key, value = pair[:i], pair[i+1:]
		}
		// No field ParseForm reads has a name longer than 25 bytes, nor
		// one that shrinks by more than two thirds when unescaped.
		if len(key) > 3*32 {
			continue
		}
		if bytes.IndexByte(key, '%') >= 0 || bytes.IndexByte(key, '+') >= 0 {
			k, ok := unescape(kbuf[:0], key)
			if !ok {
				continue
			}
			key = k
		}
		id := formField(key)
		if id < 0 {
			continue
		}
		if !validEscapes(value) {
			continue // url.ParseQuery drops the whole pair
		}
		if f.seen[id] {
			continue
		}
		f.seen[id] = true
		escapes := bytes.Count(value, []byte{'%'})
		switch {
		case len(value)-2*escapes > maxFieldLen:
			f.long[id] = true
		case escapes == 0 && bytes.IndexByte(value, '+') < 0:
			f.val[id] = string(value)
		default:
			v, _ := unescape(vbuf[:0], value)
			f.val[id] = string(v)
		}
	}
	return f.request(rules)
}

// request validates the fields as ParseRequest does.
func (f *formFields) request(rules callbridge.NumberRules) (*Request, error) {
	if f.val[fSection] != "dialplan" {
		return nil, ErrNotDialplan
	}
	// A value too long to keep is refused where it would be used: it is
	// first among its alternatives only if it is non-empty, which a long
	// value is.
	pick := func(ids ...int) (string, bool) {
		for _, id := range ids {
			if f.long[id] {
				return "", false
			}
			if f.val[id] != "" {
				return f.val[id], true
			}
		}
		return "", true
	}
	dest, ok1 := pick(fHuntDest, fCallerDest)
	ctx, ok2 := pick(fHuntContext, fCallerContext)
	uid, ok3 := pick(fUniqueID, fCallerUniqueID)
	core, ok4 := pick(fCoreUUID)
	if !ok1 {
		return nil, ErrMalformed
	}
	r := &Request{DestinationRaw: dest, Context: ctx, UniqueID: uid, CoreUUID: core}
	d, err := rules.Parse(r.DestinationRaw)
	if err != nil {
		return nil, ErrMalformed
	}
	r.Destination = d
	if !ok2 || !ok3 || !ok4 || !isToken(r.Context, 64) || !callbridge.IsUUID(r.UniqueID) || (r.CoreUUID != "" && !callbridge.IsUUID(r.CoreUUID)) {
		return nil, ErrMalformed
	}
	if host, ok := pick(fHostnameFS, fHostname); ok && isToken(host, 255) {
		r.Hostname = host
	}
	if caller, ok := pick(fHuntCallerID, fCallerCallerID); ok {
		if c, err := rules.Parse(caller); err == nil {
			r.Caller = c
		}
	}
	return r, nil
}

// validEscapes reports whether every '%' in s starts a two-digit hex
// escape, as url.QueryUnescape requires.
func validEscapes(s []byte) bool {
	for i := bytes.IndexByte(s, '%'); i >= 0; {
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return false
		}
		j := bytes.IndexByte(s[i+3:], '%')
		if j < 0 {
			break
		}
		i += 3 + j
	}
	return true
}

// unescape appends the query-unescaped s to dst ('+' is a space); ok is
// false for a malformed escape.
func unescape(dst, s []byte) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			dst = append(dst, ' ')
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return dst, false
			}
			dst = append(dst, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst, true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// first returns the first non-empty value among keys.
func first(form url.Values, keys ...string) string {
	for _, k := range keys {
		if v := form.Get(k); v != "" {
			return v
		}
	}
	return ""
}

// isToken reports whether s is 1 to max characters of [A-Za-z0-9._-]: safe
// as an XML attribute, a file name part and a FreeSWITCH application
// argument (no '$', '{', ',', space).
func isToken(s string, max int) bool {
	if len(s) < 1 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
