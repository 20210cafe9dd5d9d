package freeswitch

import (
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// GatewayStatus is one sofia gateway as "sofia xmlstatus gateway" reports it
// (FreeSWITCH 1.10.12; esl/testdata/sofia/ holds the captured replies).
type GatewayStatus struct {
	// Name is the gateway's name, dialled as sofia/gateway/NAME/NUMBER.
	Name string
	// Profile is the sofia profile it belongs to ("external").
	Profile string
	// Proxy is where it sends calls, as a SIP URI ("sip:10.0.0.9:5060").
	Proxy string
	// State is its registration state: NOREG for a gateway that does not
	// register (an IP-authenticated trunk), else REGED, UNREGED, TRYING,
	// REGISTER, FAILED, FAIL_WAIT, EXPIRED, NOAVAIL, TIMEOUT...
	State string
	// Status is "UP" or "DOWN": a pinging gateway is DOWN once its OPTIONS
	// ping failed, and FreeSWITCH then refuses every leg sent to it with
	// GATEWAY_DOWN without sending anything (checked on 1.10.12). A
	// gateway that does not ping is always UP.
	Status string
	// PingInterval is how often it pings (pingfreq); 0 when it does not.
	PingInterval time.Duration
	// PingTime is the last ping's round trip (pingtime, milliseconds with
	// two decimals); 0 before the first answered ping.
	PingTime time.Duration
	// NextPing is when it pings next (ping, Unix seconds); zero when it
	// does not ping.
	NextPing time.Time
	// Uptime is how long it has been UP (uptime-usec); 0 while DOWN.
	Uptime time.Duration
	// CallsIn, CallsOut, FailedCallsIn and FailedCallsOut count its calls
	// since FreeSWITCH started. A leg the carrier refused counts as a call
	// out and a failed one; a leg refused because the gateway was DOWN
	// only as a failed one (FreeSWITCH 1.10.12).
	CallsIn, CallsOut, FailedCallsIn, FailedCallsOut int64
}

// Up reports whether FreeSWITCH sends calls to g.
func (g GatewayStatus) Up() bool { return g.Status == "UP" }

// ErrUnknownGateway is the error of ParseGatewayStatus (and so of
// esl.Client.GatewayStatus) for a gateway no sofia profile has (FreeSWITCH
// answers "Invalid Gateway!").
var ErrUnknownGateway = errors.New("esl: unknown gateway")

// SofiaXMLStatusGateways lists every sofia gateway: "sofia xmlstatus gateway"
// (ParseGatewayStatus reads the result).
func SofiaXMLStatusGateways() Command { return Command{"sofia xmlstatus gateway"} }

// SofiaXMLStatusGateway asks for one gateway: "sofia xmlstatus gateway NAME".
func SofiaXMLStatusGateway(name string) (Command, error) {
	if err := checkName("gateway", name); err != nil {
		return Command{}, err
	}
	return Command{"sofia xmlstatus gateway " + name}, nil
}

// xmlGateway is a <gateway> element.
type xmlGateway struct {
	Name           string `xml:"name"`
	Profile        string `xml:"profile"`
	Proxy          string `xml:"proxy"`
	Ping           string `xml:"ping"`
	PingFreq       string `xml:"pingfreq"`
	PingTime       string `xml:"pingtime"`
	State          string `xml:"state"`
	Status         string `xml:"status"`
	UptimeUsec     string `xml:"uptime-usec"`
	CallsIn        string `xml:"calls-in"`
	CallsOut       string `xml:"calls-out"`
	FailedCallsIn  string `xml:"failed-calls-in"`
	FailedCallsOut string `xml:"failed-calls-out"`
}

// ParseGatewayStatus reads the result of SofiaXMLStatusGateways (a <gateways> document)
// or of SofiaXMLStatusGateway (one <gateway> element). It fails with
// ErrUnknownGateway on "Invalid Gateway!" and with an error for anything
// else that is not such a document, or a gateway without a name, status
// or state.
func ParseGatewayStatus(body string) ([]GatewayStatus, error) {
	s := strings.TrimSpace(body)
	if s == "Invalid Gateway!" {
		return nil, ErrUnknownGateway
	}
	// FreeSWITCH declares ISO-8859-1 and sends ASCII (names and URIs are
	// ASCII in a configuration this client can dial); drop the
	// declaration rather than teach the decoder a charset.
	if strings.HasPrefix(s, "<?xml") {
		if i := strings.Index(s, "?>"); i >= 0 {
			s = s[i+2:]
		}
	}
	var list struct {
		XMLName  xml.Name
		Gateways []xmlGateway `xml:"gateway"`
	}
	var one xmlGateway
	d := xml.NewDecoder(strings.NewReader(s))
	start, err := rootElement(d)
	if err != nil {
		return nil, fmt.Errorf("esl: sofia gateway status: %w", err)
	}
	var raw []xmlGateway
	switch start.Name.Local {
	case "gateways":
		if err := d.DecodeElement(&list, &start); err != nil {
			return nil, fmt.Errorf("esl: sofia gateway status: %w", err)
		}
		raw = list.Gateways
	case "gateway":
		if err := d.DecodeElement(&one, &start); err != nil {
			return nil, fmt.Errorf("esl: sofia gateway status: %w", err)
		}
		raw = []xmlGateway{one}
	default:
		return nil, fmt.Errorf("esl: sofia gateway status: unexpected <%s>", start.Name.Local)
	}
	out := make([]GatewayStatus, 0, len(raw))
	for _, x := range raw {
		g, err := x.gateway()
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

// rootElement returns the first start element of d.
func rootElement(d *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.CharData:
			if strings.TrimSpace(string(t)) != "" {
				return xml.StartElement{}, errors.New("text outside an element")
			}
		}
	}
}

func (x xmlGateway) gateway() (GatewayStatus, error) {
	if x.Name == "" || x.Status == "" || x.State == "" {
		return GatewayStatus{}, fmt.Errorf("esl: sofia gateway status: gateway %q without name, state or status", x.Name)
	}
	g := GatewayStatus{Name: x.Name, Profile: x.Profile, Proxy: x.Proxy, State: x.State, Status: x.Status}
	var err error
	num := func(field, s string) int64 {
		if s == "" || err != nil {
			return 0
		}
		n, e := strconv.ParseInt(s, 10, 64)
		if e != nil || n < 0 {
			err = fmt.Errorf("esl: sofia gateway %s: %s %q is not a count", x.Name, field, s)
		}
		return n
	}
	g.PingInterval = time.Duration(num("pingfreq", x.PingFreq)) * time.Second
	if next := num("ping", x.Ping); next > 0 && g.PingInterval > 0 {
		g.NextPing = time.Unix(next, 0).UTC()
	}
	g.Uptime = time.Duration(num("uptime-usec", x.UptimeUsec)) * time.Microsecond
	g.CallsIn = num("calls-in", x.CallsIn)
	g.CallsOut = num("calls-out", x.CallsOut)
	g.FailedCallsIn = num("failed-calls-in", x.FailedCallsIn)
	g.FailedCallsOut = num("failed-calls-out", x.FailedCallsOut)
	if err != nil {
		return GatewayStatus{}, err
	}
	if x.PingTime != "" {
		ms, e := strconv.ParseFloat(x.PingTime, 64)
		if e != nil || ms < 0 || ms > 1e9 {
			return GatewayStatus{}, fmt.Errorf("esl: sofia gateway %s: pingtime %q is not milliseconds", x.Name, x.PingTime)
		}
		g.PingTime = time.Duration(ms * float64(time.Millisecond))
	}
	return g, nil
}

// GatewayStateSubclass is the CUSTOM event sofia fires when a gateway's
// registration state or ping status changes. FreeSWITCH sends it only to
// connections subscribed to this subclass by name ("event plain CUSTOM
// sofia::gateway_state"; a bare CUSTOM does not get it, checked on
// 1.10.12): add it to esl.Config.Subclasses.
const GatewayStateSubclass = "sofia::gateway_state"

// GatewayState is a sofia::gateway_state event.
type GatewayState struct {
	// Gateway is the gateway's name.
	Gateway string
	// State is its registration state (GatewayStatus.State).
	State string
	// PingStatus is "UP" or "DOWN" (GatewayStatus.Status); FreeSWITCH fires the
	// event when it changes.
	PingStatus string
	// SIPStatus and Phrase are the answer to the ping that changed it:
	// 200 OK, or 503 Service Unavailable when nothing answered.
	SIPStatus int
	Phrase    string
}

// ParseGatewayState reads a sofia::gateway_state event; ok is false for any
// other event or one without a gateway name.
func ParseGatewayState(e Event) (gs GatewayState, ok bool) {
	if e.Name != Custom || e.Get("Event-Subclass") != GatewayStateSubclass || e.Get("Gateway") == "" {
		return GatewayState{}, false
	}
	gs = GatewayState{Gateway: e.Get("Gateway"), State: e.Get("State"), PingStatus: e.Get("Ping-Status"), Phrase: e.Get("Phrase")}
	if n, ok := e.Int64("Status"); ok && n >= 100 && n <= 699 {
		gs.SIPStatus = int(n)
	}
	return gs, true
}

// OriginateAttempt is one leg a bridge or originate created, as its
// caller's originate_causes variable lists it.
type OriginateAttempt struct {
	// UUID is the leg's unique id: its CHANNEL_HANGUP_COMPLETE names the
	// gateway (variable_sip_gateway_name) and cause.
	UUID string
	// Cause is how the attempt ended for the originate: NONE for the leg
	// that was bridged, else its hang-up cause (NORMAL_TEMPORARY_FAILURE
	// for a carrier's 503).
	Cause string
}

// ParseOriginateCauses reads the originate_causes variable of a leg whose
// bridge tried several dial strings in turn (FreeSWITCH 1.10.12:
// "ARRAY::<uuid>;NORMAL_TEMPORARY_FAILURE|:<uuid>;NONE", or one
// "<uuid>;CAUSE" without the ARRAY prefix). A dial string refused before
// any leg existed (a DOWN gateway: GATEWAY_DOWN) is not listed. Items
// that are not uuid;CAUSE are skipped.
func ParseOriginateCauses(v string) []OriginateAttempt {
	v = strings.TrimPrefix(v, "ARRAY::")
	if v == "" {
		return nil
	}
	var out []OriginateAttempt
	for _, item := range strings.Split(v, "|:") {
		id, cause, ok := strings.Cut(item, ";")
		if !ok || checkUUID("uuid", id) != nil || checkCause("cause", cause) != nil {
			continue
		}
		out = append(out, OriginateAttempt{UUID: id, Cause: cause})
	}
	return out
}
