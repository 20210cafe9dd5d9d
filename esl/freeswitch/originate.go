package freeswitch

import (
	"strconv"
	"strings"
	"time"

	"callbridge"

	"github.com/google/uuid"
)

// Endpoint is where an originate sends a call. Make one with Gateway,
// Profile or Loopback; it is validated when the command is built.
type Endpoint struct {
	kind   string // "gateway", "profile", "loopback"
	name   string // gateway, profile or dialplan context
	number callbridge.Number
	host   string
}

// Gateway dials n through a sofia gateway: "sofia/gateway/<gw>/<n>".
func Gateway(gw string, n callbridge.Number) Endpoint {
	return Endpoint{kind: "gateway", name: gw, number: n}
}

// Profile dials n at host through a sofia profile:
// "sofia/<profile>/<n>@<host>". host is a DNS name or IPv4 address with an
// optional ":port".
func Profile(profile string, n callbridge.Number, host string) Endpoint {
	return Endpoint{kind: "profile", name: profile, number: n, host: host}
}

// Loopback dials n through the dialplan context: "loopback/<n>/<context>".
func Loopback(n callbridge.Number, context string) Endpoint {
	return Endpoint{kind: "loopback", name: context, number: n}
}

// String returns the dial string, or "" if the endpoint is invalid.
func (e Endpoint) String() string {
	s, err := e.dial()
	if err != nil {
		return ""
	}
	return s
}

func (e Endpoint) dial() (string, error) {
	if err := e.number.Validate(); err != nil {
		return "", invalid("endpoint number", "%s", callbridge.ErrorMessage(err))
	}
	switch e.kind {
	case "gateway":
		if err := checkName("gateway", e.name); err != nil {
			return "", err
		}
		return "sofia/gateway/" + e.name + "/" + string(e.number), nil
	case "profile":
		if err := checkName("profile", e.name); err != nil {
			return "", err
		}
		if err := checkHost("host", e.host); err != nil {
			return "", err
		}
		return "sofia/" + e.name + "/" + string(e.number) + "@" + e.host, nil
	case "loopback":
		if err := checkName("context", e.name); err != nil {
			return "", err
		}
		return "loopback/" + string(e.number) + "/" + e.name, nil
	default:
		return "", invalid("endpoint", "must be made by Gateway, Profile or Loopback")
	}
}

// Var is one channel variable set on an originated leg.
type Var struct {
	Name  string // [a-z0-9_]+
	Value string // see UUIDSetVar for the accepted characters
}

// Applications an originated leg may run once it answers.
const (
	AppPark = "park" // wait, parked, for further commands (the default)
	AppEcho = "echo" // echo media back; for tests and probes
)

// Originate describes a call leg to originate with "originate
// {vars}<endpoint> set:api_reporting_hook=<hook>,<app> inline". The uuid
// is always ours, so events can be matched to the call before any reply
// arrives. Once the leg answers, the inline dialplan sets its CDR hook
// (callbridge.CDRHook: FreeSWITCH keeps the leg's CDR record until a
// controller collects it) and runs the application. FreeSWITCH refuses
// "${" in a dial-string variable, so the hook cannot be set before the
// answer: an unanswered leg that ends while no controller listens has no
// record (it costs nothing; its CDR is estimated).
type Originate struct {
	// UUID becomes origination_uuid; a random one is chosen when empty.
	UUID string
	// Endpoint is where to send the call.
	Endpoint Endpoint
	// Vars are channel variables, set in this order. Names the builder sets
	// itself (origination_uuid, origination_caller_id_number,
	// origination_caller_id_name, originate_timeout) are refused here.
	Vars []Var
	// CallerIDNumber, when set, is presented as the calling number.
	CallerIDNumber callbridge.Number
	// CallerIDName, when set, is presented as the calling name; it follows
	// the rules of variable values (no spaces).
	CallerIDName string
	// Timeout is how long to ring before giving up (originate_timeout,
	// whole seconds rounded up); zero leaves FreeSWITCH's default (60 s).
	Timeout time.Duration
	// App is AppPark (default when empty) or AppEcho.
	App string
	// HangupAfterAnswer, when positive, has FreeSWITCH hang the leg up
	// with ALLOTTED_TIMEOUT this long after it answers, timed by
	// FreeSWITCH from the answer itself (execute_on_answer=sched_hangup)
	// however late the controller learns of it: whole seconds, rounded
	// down, at least one.
	HangupAfterAnswer time.Duration
}

var reservedVars = map[string]bool{
	"origination_uuid":             true,
	callbridge.VarDollar:           true,
	callbridge.VarCallee:           true,
	"api_reporting_hook":           true,
	"origination_caller_id_number": true,
	"origination_caller_id_name":   true,
	"originate_timeout":            true,
	"execute_on_answer":            true,
}

// Command validates o and builds its originate command. It does not modify
// o; if o.UUID is empty the generated uuid is the one in the command, so
// callers that need it should set o.UUID first (esl.Client.Originate does).
func (o Originate) Command() (Command, error) {
	id := o.UUID
	if id == "" {
		id = uuid.NewString()
	}
	if err := checkUUID("uuid", id); err != nil {
		return Command{}, err
	}
	dial, err := o.Endpoint.dial()
	if err != nil {
		return Command{}, err
	}
	var b strings.Builder
	b.WriteString("originate {origination_uuid=")
	b.WriteString(id)
	seen := make(map[string]bool, len(o.Vars))
	for _, v := range o.Vars {
		if err := checkVarName("variable name", v.Name); err != nil {
			return Command{}, err
		}
		if reservedVars[v.Name] {
			return Command{}, invalid("variable name", "%s is set by the builder", v.Name)
		}
		if seen[v.Name] {
			return Command{}, invalid("variable name", "%s is set twice", v.Name)
		}
		seen[v.Name] = true
		if err := checkValue("variable "+v.Name, v.Value); err != nil {
			return Command{}, err
		}
		b.WriteString("," + v.Name + "=" + v.Value)
	}
	if o.CallerIDNumber != "" {
		if err := o.CallerIDNumber.Validate(); err != nil {
			return Command{}, invalid("caller id number", "%s", callbridge.ErrorMessage(err))
		}
		b.WriteString(",origination_caller_id_number=" + string(o.CallerIDNumber))
	}
	if o.CallerIDName != "" {
		if err := checkValue("caller id name", o.CallerIDName); err != nil {
			return Command{}, err
		}
		b.WriteString(",origination_caller_id_name=" + o.CallerIDName)
	}
	if o.Timeout < 0 || o.Timeout > time.Hour {
		return Command{}, invalid("timeout", "must be between 0 and 1h")
	}
	if o.Timeout > 0 {
		secs := int64((o.Timeout + time.Second - 1) / time.Second)
		b.WriteString(",originate_timeout=" + strconv.FormatInt(secs, 10))
	}
	if o.HangupAfterAnswer < 0 || o.HangupAfterAnswer > 48*time.Hour {
		return Command{}, invalid("hangup after answer", "must be between 0 and 48h")
	}
	if o.HangupAfterAnswer > 0 {
		secs := max(int64(o.HangupAfterAnswer/time.Second), 1)
		b.WriteString(",execute_on_answer='sched_hangup +" + strconv.FormatInt(secs, 10) + " ALLOTTED_TIMEOUT'")
	}
	b.WriteString("," + callbridge.VarCallee + "=" + string(o.Endpoint.number))
	b.WriteString("," + callbridge.VarDollar + "=$}")
	b.WriteString(dial)
	b.WriteString(" set:api_reporting_hook=" + callbridge.CDRHook(callbridge.CDRHookSetRef) + ",")
	switch o.App {
	case "", AppPark:
		b.WriteString(AppPark)
	case AppEcho:
		b.WriteString(AppEcho)
	default:
		return Command{}, invalid("app", "must be park or echo")
	}
	b.WriteString(" inline")
	return Command{b.String()}, nil
}
