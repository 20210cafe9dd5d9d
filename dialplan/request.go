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
	if !isToken(r.Context, 64) || !isUUID(r.UniqueID) || (r.CoreUUID != "" && !isUUID(r.CoreUUID)) {
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

// isUUID reports whether s has the textual form of a UUID (8-4-4-4-12 hex).
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}
