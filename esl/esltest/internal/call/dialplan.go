package call

import (
	"encoding/xml"
	"regexp"
	"strconv"
	"strings"
)

// Document is a dialplan XML document as mod_xml_curl returns it.
type Document struct {
	XMLName  xml.Name     `xml:"document"`
	Sections []xmlSection `xml:"section"`
}

type xmlSection struct {
	Name     string       `xml:"name,attr"`
	Result   *xmlResult   `xml:"result"`
	Contexts []xmlContext `xml:"context"`
}

type xmlResult struct {
	Status string `xml:"status,attr"`
}

type xmlContext struct {
	Name       string         `xml:"name,attr"`
	Extensions []xmlExtension `xml:"extension"`
}

type xmlExtension struct {
	Name       string         `xml:"name,attr"`
	Conditions []xmlCondition `xml:"condition"`
}

type xmlCondition struct {
	Field       string   `xml:"field,attr"`
	Expression  string   `xml:"expression,attr"`
	Actions     []Action `xml:"action"`
	AntiActions []Action `xml:"anti-action"`
}

type Action struct {
	Application string `xml:"application,attr"`
	Data        string `xml:"data,attr"`
}

// Route finds the extension mod_dialplan_xml runs for ch: the first of
// its context whose conditions match. It returns that extension's actions
// and the captures of its last matched condition.
func (d *Document) Route(ch *Channel) ([]Action, []string, bool) {
	for _, sec := range d.Sections {
		if sec.Name != "dialplan" || sec.Result != nil {
			continue
		}
		for _, cx := range sec.Contexts {
			if cx.Name != ch.Profile.Context {
				continue
			}
			for _, ext := range cx.Extensions {
				if acts, caps, ok := matchExtension(ch, ext); ok {
					return acts, caps, true
				}
			}
		}
	}
	return nil, nil, false
}

// matchExtension evaluates an extension's conditions (all must
// match; anti-actions run for a failed condition that has them).
func matchExtension(ch *Channel, ext xmlExtension) ([]Action, []string, bool) {
	var acts []Action
	var caps []string
	for _, c := range ext.Conditions {
		if c.Field == "" && c.Expression == "" {
			acts = append(acts, c.Actions...)
			continue
		}
		value := field(ch, c.Field)
		re, err := regexp.Compile(c.Expression)
		if err != nil {
			return nil, nil, false
		}
		m := re.FindStringSubmatch(value)
		if m == nil {
			if len(c.AntiActions) > 0 {
				return append(acts, c.AntiActions...), caps, true
			}
			return nil, nil, false
		}
		caps = m
		acts = append(acts, c.Actions...)
	}
	return acts, caps, len(ext.Conditions) > 0
}

// field is the value a condition's field attribute names: a ${...}
// expression, a caller-profile field or a channel variable.
func field(ch *Channel, name string) string {
	if strings.HasPrefix(name, "${") {
		return ExpandVars(ch, name, nil)
	}
	if v, ok := profileField(ch, name); ok {
		return v
	}
	return ch.Vars.Get(name)
}

// profileField returns a caller-profile field (or the channel uuid) by the
// name dialplan conditions and ${...} references use; ok is false for
// names that are channel variables instead.
func profileField(ch *Channel, name string) (v string, ok bool) {
	switch name {
	case "destination_number":
		return ch.Profile.Destination, true
	case "caller_id_number":
		return ch.Profile.CIDNumber, true
	case "caller_id_name":
		return ch.Profile.CIDName, true
	case "ani":
		return ch.Profile.ANI, true
	case "context":
		return ch.Profile.Context, true
	case "network_addr":
		return ch.Profile.NetworkAddr, true
	case "username":
		return ch.Profile.Username, true
	case "uuid":
		return ch.UUID, true
	}
	return "", false
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}|\$([0-9])`)

// ExpandVars substitutes ${var} (channel variables and caller-profile
// fields) and $N (regex captures of the matched condition).
func ExpandVars(ch *Channel, s string, caps []string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if m[1] != '{' {
			n := int(m[1] - '0')
			if n < len(caps) {
				return caps[n]
			}
			return ""
		}
		name := m[2 : len(m)-1]
		if v, ok := profileField(ch, name); ok {
			return v
		}
		return ch.Vars.Get(name)
	})
}

func IsTrue(v string) bool {
	switch strings.ToLower(v) {
	case "true", "yes", "on", "1", "enabled", "active", "allow":
		return true
	}
	return false
}

// ContinueOnFail applies the continue_on_fail variable: true, or a list of
// causes (names or numbers) for which the dialplan continues.
func ContinueOnFail(v, cause string) bool {
	if v == "" {
		return false
	}
	if IsTrue(v) {
		return true
	}
	for _, c := range strings.Split(v, ",") {
		c = strings.TrimSpace(c)
		if strings.EqualFold(c, cause) || c == strconv.Itoa(causeCode[cause]) {
			return true
		}
	}
	return false
}

func DialStatus(cause string) string {
	switch cause {
	case "USER_BUSY":
		return "BUSY"
	case "NO_ANSWER", "NO_USER_RESPONSE":
		return "NOANSWER"
	case "ORIGINATOR_CANCEL":
		return "CANCEL"
	}
	return "CONGESTION"
}
