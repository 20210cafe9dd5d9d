package call

import (
	"errors"
	"strings"
)

// Endpoint is a parsed dial string.
type Endpoint struct {
	Vars    Vars   // {global} and [local] variables, in order
	Kind    string // "sofia", "loopback", "error"
	Profile string // sofia profile; "gateway" for gateways
	Gateway string
	Number  string
	Host    string
	raw     string // dial string without variables
	Cause   string // for error/<cause>
}

// ParseVarBlock splits "a=b,c='x,y'" into ordered variables. Values may be
// single-quoted to protect commas; "\," is an escaped comma.
func ParseVarBlock(s string, into *Vars) {
	var parts []string
	var cur strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			cur.WriteByte(s[i+1])
			i++
		case c == '\'':
			quoted = !quoted
		case c == ',' && !quoted:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	parts = append(parts, cur.String())
	for _, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		if !ok || strings.TrimSpace(k) == "" {
			continue
		}
		into.Set(strings.TrimSpace(k), v)
	}
}

// BlockEnd returns the index of the bracket that closes the variable
// block ds starts with, or -1. Brackets of the same kind nest (a CDR
// hook holds "{name}" references) and escaped characters are skipped.
func BlockEnd(ds string) int {
	open := ds[0]
	closer := map[byte]byte{'{': '}', '[': ']', '<': '>'}[open]
	depth := 0
	for i := 0; i < len(ds); i++ {
		switch ds[i] {
		case '\\':
			i++
		case open:
			depth++
		case closer:
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// ErrBadDialString reports a dial string that names no usable endpoint.
var ErrBadDialString = errors.New("esltest: bad dial string")

// ParseEndpoint parses "{vars}[vars]tech/..." dial strings.
func ParseEndpoint(ds string) (*Endpoint, error) {
	ep := &Endpoint{}
	for len(ds) > 0 && (ds[0] == '{' || ds[0] == '[' || ds[0] == '<') {
		end := BlockEnd(ds)
		if end < 0 {
			return nil, ErrBadDialString
		}
		ParseVarBlock(ds[1:end], &ep.Vars)
		ds = ds[end+1:]
	}
	ep.raw = ds
	parts := strings.Split(ds, "/")
	switch parts[0] {
	case "sofia":
		if len(parts) < 3 {
			return nil, ErrBadDialString
		}
		if parts[1] == "gateway" {
			if len(parts) < 4 || parts[2] == "" {
				return nil, ErrBadDialString
			}
			ep.Kind, ep.Profile, ep.Gateway = "sofia", "gateway", parts[2]
			ep.Number = strings.Join(parts[3:], "/")
		} else {
			ep.Kind, ep.Profile = "sofia", parts[1]
			ep.Number = strings.Join(parts[2:], "/")
		}
		ep.Number = strings.TrimPrefix(ep.Number, "sip:")
		if user, host, ok := strings.Cut(ep.Number, "@"); ok {
			ep.Number, ep.Host = user, host
		}
	case "loopback":
		if len(parts) < 2 {
			return nil, ErrBadDialString
		}
		ep.Kind, ep.Number = "loopback", parts[1]
	case "error":
		if len(parts) < 2 {
			return nil, ErrBadDialString
		}
		ep.Kind, ep.Cause = "error", NormalizeCause(parts[1])
		return ep, nil
	default:
		ep.Kind = parts[0]
		return ep, nil
	}
	if ep.Number == "" {
		return nil, ErrBadDialString
	}
	return ep, nil
}

// ChannelName is the Channel-Name FreeSWITCH gives such a leg.
func (ep *Endpoint) ChannelName() string {
	switch {
	case ep.Kind == "loopback":
		return "loopback/" + ep.Number + "-a"
	case ep.Profile == "gateway":
		return "sofia/gateway/" + ep.Gateway + "/" + ep.Number
	case ep.Host != "":
		return "sofia/" + ep.Profile + "/" + ep.Number + "@" + ep.Host
	}
	return "sofia/" + ep.Profile + "/" + ep.Number
}

// Application is an "&app(arg)" originate target, or the last
// application of an inline one ("set:a=b,park inline"), whose sets run
// first.
type Application struct {
	Name, Arg string
	Sets      []string
}

// ParseOriginate splits "originate <dialstring> &app(arg) [...]" arguments.
func ParseOriginate(arg string) (string, Application, error) {
	arg = strings.TrimSpace(arg)
	// The dial string ends at the first space outside {} and [].
	depth := 0
	split := -1
	for i := 0; i < len(arg); i++ {
		switch arg[i] {
		case '{', '[', '<':
			depth++
		case '}', ']', '>':
			depth--
		case ' ':
			if depth == 0 && split < 0 {
				split = i
			}
		}
		if split >= 0 {
			break
		}
	}
	if split < 0 {
		return "", Application{}, errors.New("missing target")
	}
	ds, rest := arg[:split], strings.TrimSpace(arg[split:])
	if apps, ok := strings.CutSuffix(rest, " inline"); ok {
		app, err := parseInline(apps)
		return ds, app, err
	}
	if !strings.HasPrefix(rest, "&") {
		return "", Application{}, errors.New("only &application and inline targets are simulated")
	}
	rest = rest[1:]
	name := rest
	var appArg string
	if i := strings.IndexByte(rest, '('); i >= 0 {
		name = rest[:i]
		depth := 0
		end := -1
		for j := i; j < len(rest); j++ {
			if rest[j] == '(' {
				depth++
			} else if rest[j] == ')' {
				depth--
				if depth == 0 {
					end = j
					break
				}
			}
		}
		if end < 0 {
			return "", Application{}, errors.New("unbalanced parentheses")
		}
		appArg = rest[i+1 : end]
	} else if sp := strings.IndexByte(rest, ' '); sp >= 0 {
		name, appArg = rest[:sp], strings.TrimSpace(rest[sp+1:])
	}
	return ds, Application{Name: name, Arg: appArg}, nil
}

// parseInline reads an inline dialplan "app[:arg],app[:arg]" of set
// applications followed by one other application.
func parseInline(apps string) (Application, error) {
	var app Application
	list := strings.Split(apps, ",")
	for i, a := range list {
		name, arg, _ := strings.Cut(a, ":")
		if i < len(list)-1 {
			if name != "set" {
				return app, errors.New("only set may come before the last inline application")
			}
			app.Sets = append(app.Sets, arg)
			continue
		}
		app.Name, app.Arg = name, arg
	}
	return app, nil
}

// SplitOutsideQuotes splits s at sep outside single quotes, as
// switch_separate_string splits a dial string's "|" list.
func SplitOutsideQuotes(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case s[i] == '\'':
			quoted = !quoted
		case s[i] == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// StopsSequence applies fail_on_single_reject to a failed dial string of a
// sequential bridge.
func StopsSequence(reject, cause string) bool {
	if reject == "" {
		return false
	}
	if IsTrue(reject) {
		return true
	}
	found := strings.Contains(strings.ToUpper(reject), strings.ToUpper(cause))
	if reject[0] == '!' {
		return !found
	}
	return found
}
