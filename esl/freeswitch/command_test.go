package freeswitch

import (
	"errors"
	"strings"
	"testing"
	"time"

	"callbridge"
)

// testUUID and otherUUID are canonical uuids for the builders.
const (
	testUUID  = "5f5fc208-2bec-4937-a862-c229da18fc2b"
	otherUUID = "32b40e3c-eed1-4012-bd3d-478e3f678ae3"
)

func TestBuilders(t *testing.T) {
	n := callbridge.Number("4930123456")
	must := func(c Command, err error) Command {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name string
		cmd  Command
		want string
	}{
		{"bridge", must(UUIDBridge(testUUID, otherUUID)), "uuid_bridge " + testUUID + " " + otherUUID},
		{"kill", must(UUIDKill(testUUID, "")), "uuid_kill " + testUUID},
		{"kill cause", must(UUIDKill(testUUID, "USER_BUSY")), "uuid_kill " + testUUID + " USER_BUSY"},
		{"broadcast", must(UUIDBroadcast(testUUID, "/srv/prompts/hold-1.wav", "")), "uuid_broadcast " + testUUID + " /srv/prompts/hold-1.wav aleg"},
		{"broadcast ringback", must(UUIDBroadcast(testUUID, ToneRingbackUS, "aleg")), "uuid_broadcast " + testUUID + " tone_stream://%(2000,4000,440,480);loops=-1 aleg"},
		{"broadcast then hangup", must(UUIDBroadcastThenHangup(testUUID, "/srv/prompts/busy.wav", "NORMAL_CLEARING")), "uuid_broadcast " + testUUID + " playback!NORMAL_CLEARING::/srv/prompts/busy.wav aleg"},
		{"broadcast tone then hangup", must(UUIDBroadcastThenHangup(testUUID, ToneRingbackEU, "NORMAL_CLEARING")), "uuid_broadcast " + testUUID + " playback!NORMAL_CLEARING::tone_stream://%(1000,4000,425);loops=-1 aleg"},
		{"setvar", must(UUIDSetVar(testUUID, callbridge.VarLeg, "a")), "uuid_setvar " + testUUID + " callbridge_leg a"},
		{"unsetvar", must(UUIDSetVar(testUUID, "x", "")), "uuid_setvar " + testUUID + " x"},
		{"exists", must(UUIDExists(testUUID)), "uuid_exists " + testUUID},
		{"record", must(UUIDRecord(testUUID, "start", "/var/rec/a.wav")), "uuid_record " + testUUID + " start /var/rec/a.wav"},
		{"sched", must(SchedHangup(1500*time.Millisecond, testUUID, "ALLOTTED_TIMEOUT")), "sched_hangup +2 " + testUUID + " ALLOTTED_TIMEOUT"},
		{"show", ShowChannels(), "show channels as json"},
		{"hash dump", must(HashDump(callbridge.CDRHookRealm)), "hash_dump db callbridge_cdr"},
		{"hash delete", must(HashDelete(callbridge.CDRHookRealm, testUUID)), "hash delete/callbridge_cdr/" + testUUID},
		{"status", Status(), "status"},
		{"hupall", must(Hupall("MANAGER_REQUEST")), "hupall MANAGER_REQUEST"},
		{"originate gateway", must(Originate{
			UUID: testUUID, Endpoint: Gateway("carrier-1", n),
			Vars:           []Var{{callbridge.VarAccount, "acc_1"}, {callbridge.VarLeg, "a"}},
			CallerIDNumber: "4940111222", CallerIDName: "Callbridge", Timeout: 30 * time.Second,
		}.Command()), "originate {origination_uuid=" + testUUID + ",callbridge_account=acc_1,callbridge_leg=a,origination_caller_id_number=4940111222,origination_caller_id_name=Callbridge,originate_timeout=30,callbridge_callee=4930123456,callbridge_dollar=$}sofia/gateway/carrier-1/4930123456" + hookApp("park")},
		{"originate profile", must(Originate{UUID: testUUID, Endpoint: Profile("internal", n, "127.0.0.1:5090")}.Command()),
			"originate {origination_uuid=" + testUUID + ",callbridge_callee=4930123456,callbridge_dollar=$}sofia/internal/4930123456@127.0.0.1:5090" + hookApp("park")},
		{"originate loopback echo", must(Originate{UUID: testUUID, Endpoint: Loopback(n, "default"), App: AppEcho}.Command()),
			"originate {origination_uuid=" + testUUID + ",callbridge_callee=4930123456,callbridge_dollar=$}loopback/4930123456/default" + hookApp("echo")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cmd.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// hookApp is the inline dialplan an originated leg runs once it answers:
// its CDR hook, then app.
func hookApp(app string) string {
	return " set:api_reporting_hook=" + callbridge.CDRHook(callbridge.CDRHookSetRef) + "," + app + " inline"
}

// hostile is a corpus of values that must never reach a command.
var hostile = []string{
	"a\r\nexit", "a\nb", "a\rb", "\n", "\r", "a\x00b", "\x00",
	"{x=y}", "a}b", "a{b", "[x=y]", "a]b", "a,b", "a|b", "a^b", "a&b", "a'b", `a"b`,
	"a b", " ", "a\tb", `a\b`, "${sip_h_x}", "$$", "a:_:b", "a;b", "a=b", "a%20b",
	"ä", "😀", "a\u00a0b", "\xff", "a\x7fb", "../../etc/passwd", "&bridge(sofia/x/y)",
	"x}sofia/gateway/evil/1 &park()", "uuid_kill all", "a\r\n\r\nbgapi hupall", "",
	strings.Repeat("a", 1000),
}

func TestBuildersRefuseHostile(t *testing.T) {
	n := callbridge.Number("4930123456")
	builders := map[string]func(v string) (Command, error){
		"bridge a":               func(v string) (Command, error) { return UUIDBridge(v, testUUID) },
		"bridge b":               func(v string) (Command, error) { return UUIDBridge(testUUID, v) },
		"kill uuid":              func(v string) (Command, error) { return UUIDKill(v, "") },
		"kill cause":             func(v string) (Command, error) { return UUIDKill(testUUID, nonEmpty(v)) },
		"broadcast uuid":         func(v string) (Command, error) { return UUIDBroadcast(v, "/a.wav", "") },
		"broadcast path":         func(v string) (Command, error) { return UUIDBroadcast(testUUID, "/a/"+v, "") },
		"broadcast leg":          func(v string) (Command, error) { return UUIDBroadcast(testUUID, "/a.wav", nonEmpty(v)) },
		"broadcast hangup path":  func(v string) (Command, error) { return UUIDBroadcastThenHangup(testUUID, "/a/"+v, "NORMAL_CLEARING") },
		"broadcast hangup cause": func(v string) (Command, error) { return UUIDBroadcastThenHangup(testUUID, "/a.wav", nonEmpty(v)) },
		"setvar uuid":            func(v string) (Command, error) { return UUIDSetVar(v, "x", "y") },
		"setvar name":            func(v string) (Command, error) { return UUIDSetVar(testUUID, v, "y") },
		"setvar value":           func(v string) (Command, error) { return UUIDSetVar(testUUID, "x", nonEmpty(v)) },
		"exists":                 func(v string) (Command, error) { return UUIDExists(v) },
		"record action":          func(v string) (Command, error) { return UUIDRecord(testUUID, v, "/a.wav") },
		"record path":            func(v string) (Command, error) { return UUIDRecord(testUUID, "start", "/a/"+v) },
		"sched uuid":             func(v string) (Command, error) { return SchedHangup(time.Second, v, "") },
		"sched cause":            func(v string) (Command, error) { return SchedHangup(time.Second, testUUID, nonEmpty(v)) },
		"hupall":                 func(v string) (Command, error) { return Hupall(v) },
		"hash dump":              func(v string) (Command, error) { return HashDump(v) },
		"hash realm":             func(v string) (Command, error) { return HashDelete(v, "k") },
		"hash key":               func(v string) (Command, error) { return HashDelete("r", v) },
		"orig uuid": func(v string) (Command, error) {
			return Originate{UUID: nonEmpty(v), Endpoint: Gateway("g", n)}.Command()
		},
		"orig gateway": func(v string) (Command, error) { return Originate{Endpoint: Gateway(v, n)}.Command() },
		"orig gw number": func(v string) (Command, error) {
			return Originate{Endpoint: Gateway("g", callbridge.Number(v))}.Command()
		},
		"orig profile": func(v string) (Command, error) { return Originate{Endpoint: Profile(v, n, "h")}.Command() },
		"orig host":    func(v string) (Command, error) { return Originate{Endpoint: Profile("p", n, v)}.Command() },
		"orig context": func(v string) (Command, error) { return Originate{Endpoint: Loopback(n, v)}.Command() },
		"orig var name": func(v string) (Command, error) {
			return Originate{Endpoint: Gateway("g", n), Vars: []Var{{v, "x"}}}.Command()
		},
		"orig var value": func(v string) (Command, error) {
			return Originate{Endpoint: Gateway("g", n), Vars: []Var{{"x", nonEmpty(v)}}}.Command()
		},
		"orig cid number": func(v string) (Command, error) {
			return Originate{Endpoint: Gateway("g", n), CallerIDNumber: callbridge.Number(nonEmpty(v))}.Command()
		},
		"orig cid name": func(v string) (Command, error) {
			return Originate{Endpoint: Gateway("g", n), CallerIDName: nonEmpty(v)}.Command()
		},
		"orig app": func(v string) (Command, error) {
			return Originate{Endpoint: Gateway("g", n), App: nonEmpty(v)}.Command()
		},
	}
	for name, build := range builders {
		t.Run(name, func(t *testing.T) {
			for _, v := range hostile {
				c, err := build(v)
				var ve *ValidationError
				if !errors.As(err, &ve) || !c.IsZero() {
					t.Errorf("value %q: got %q, %v, want a ValidationError", v, c, err)
				}
			}
		})
	}
	// Reserved and duplicate variables.
	for _, vars := range [][]Var{{{"origination_uuid", testUUID}}, {{"x", "1"}, {"x", "2"}}} {
		if _, err := (Originate{Endpoint: Gateway("g", n), Vars: vars}).Command(); err == nil {
			t.Errorf("vars %v accepted", vars)
		}
	}
}

// nonEmpty maps "" to a hostile non-empty value, for slots where empty
// means "not set" and is legitimately accepted.
func nonEmpty(v string) string {
	if v == "" {
		return "\x00"
	}
	return v
}

func FuzzOriginate(f *testing.F) {
	for _, v := range hostile {
		f.Add(v, v, v)
	}
	f.Add("carrier", "callbridge_account", "acc-1")
	f.Fuzz(func(t *testing.T, gw, name, value string) {
		c, err := Originate{Endpoint: Gateway(gw, "4930123456"), Vars: []Var{{name, value}}, CallerIDName: value}.Command()
		if err != nil {
			return
		}
		s := c.String()
		// The builder's own CDR hook is the only text with '$' and ';'.
		head, ok := strings.CutSuffix(s, ","+callbridge.VarDollar+"=$}sofia/gateway/"+gw+"/4930123456"+hookApp("park"))
		if !ok || strings.ContainsAny(head, "\r\n\x00'\"\\$[]|^;") || strings.Count(head, "{") != 1 || strings.Count(head, "}") != 0 ||
			strings.Count(head, " ") != 1 || strings.Count(head, "&") != 0 {
			t.Fatalf("unsafe command %q", s)
		}
	})
}
