//go:build realswitch

package realswitch_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/esl"
	"callbridge/esl/esltest"
	"callbridge/esl/freeswitch"
	"callbridge/realswitch"
)

// statusShape blanks what differs between two nodes in an xmlstatus
// reply (names, addresses, times, counters), and sorts the gateways
// (FreeSWITCH lists them in its hash's order), leaving the shape.
func statusShape(body string) string {
	body = regexp.MustCompile(`>[^<]*<`).ReplaceAllString(strings.TrimRight(body, "\n")+"\n", "><")
	head, rest, _ := strings.Cut(body, "<gateways>\n")
	blocks := strings.SplitAfter(strings.TrimSuffix(rest, "</gateways>\n"), "  </gateway>\n")
	sort.Strings(blocks)
	return head + "<gateways>\n" + strings.Join(blocks, "") + "</gateways>\n"
}

func eventHeaderNames(e freeswitch.Event) []string {
	var names []string
	for k := range e.Headers() {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// TestCarriers proves dialplan.Failover (checkBindingFailover) and reads
// sofia gateway state over ESL from a real
// FreeSWITCH 1.10.12 running three gateways of freeswitch-conf's template:
// carrier and backup, each in front of a sipp carrier that answers the
// OPTIONS ping (carrier refuses calls with 503), and dead, whose proxy is
// a port nothing listens on. All three start UP; dead goes DOWN at its
// first ping (30 s), firing sofia::gateway_state, and a leg to it is
// refused with GATEWAY_DOWN; a bridge goes on past it only when
// GATEWAY_DOWN is a failover cause. A gateway added while FreeSWITCH runs
// is listed after reloadxml and a rescan. The simulator, given the same
// gateways, answers the same shape.
func TestCarriers(t *testing.T) {
	t.Parallel()
	port, err := realswitch.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	deadProxy := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	f := startFailoverSwitch(t, realswitch.Gateway{Name: "dead", Proxy: deadProxy})
	sw, carrier, backup := f.sw, f.refusing, f.backup
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := esl.NewClient(esl.Config{Name: "real", Addr: sw.ESLAddr, Password: sw.ESLPassword, Subclasses: []string{freeswitch.GatewayStateSubclass}})
	sub := c.Subscribe(0)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for e, err := sub.Next(ctx); e.Name != freeswitch.SocketConnected; e, err = sub.Next(ctx) {
		if err != nil {
			t.Fatal(err)
		}
	}

	gws, err := c.GatewayStatuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]freeswitch.GatewayStatus{}
	for _, g := range gws {
		byName[g.Name] = g
	}
	for _, name := range []string{"carrier", "backup", "dead"} {
		if g, ok := byName[name]; !ok || !g.Up() || g.State != "NOREG" || g.PingInterval != 30*time.Second {
			t.Errorf("at start %s = %+v, want UP, NOREG, pinging every 30s", name, g)
		}
	}
	if g := byName["dead"]; g.Proxy != "sip:"+deadProxy {
		t.Errorf("dead's proxy %q, want sip:%s", g.Proxy, deadProxy)
	}
	// While dead waits for its first ping.
	t.Run("binding failover", func(t *testing.T) { checkBindingFailover(t, ctx, f) })

	// dead's first ping fails.
	var down freeswitch.Event
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("no sofia::gateway_state for dead: %v", err)
		}
		if gs, ok := freeswitch.ParseGatewayState(e); ok && gs.Gateway == "dead" {
			want := freeswitch.GatewayState{Gateway: "dead", State: "NOREG", PingStatus: "DOWN", SIPStatus: 503, Phrase: "Service Unavailable"}
			if gs != want {
				t.Errorf("got %+v, want %+v", gs, want)
			}
			down = e
			break
		}
		if gs, ok := freeswitch.ParseGatewayState(e); ok {
			t.Errorf("unexpected gateway state %+v", gs)
		}
	}
	dead, err := c.GatewayStatus(ctx, "dead")
	if err != nil {
		t.Fatal(err)
	}
	if dead.Up() || dead.Uptime != 0 {
		t.Errorf("dead after its ping: %+v, want DOWN, uptime 0", dead)
	}
	for _, name := range []string{"carrier", "backup"} {
		g, err := c.GatewayStatus(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if !g.Up() || g.PingTime <= 0 {
			t.Errorf("%s after its ping: %+v, want UP with a ping time", name, g)
		}
	}
	if _, err := c.GatewayStatus(ctx, "nosuch"); !errors.Is(err, freeswitch.ErrUnknownGateway) {
		t.Errorf("unknown gateway: %v, want ErrUnknownGateway", err)
	}
	job, err := c.Originate(ctx, freeswitch.Originate{Endpoint: freeswitch.Gateway("dead", "4930123456")})
	if err != nil {
		t.Fatal(err)
	}
	var re *esl.ReplyError
	if _, err := job.Wait(ctx); !errors.As(err, &re) || re.Cause() != "GATEWAY_DOWN" {
		t.Errorf("originate through dead: %v, want -ERR GATEWAY_DOWN", err)
	}
	// An originate (no calling leg) whose first dial string is a DOWN
	// gateway ends with GATEWAY_DOWN, whatever fail_on_single_reject says:
	// sequential failover past a DOWN gateway is for bridges (below).
	for _, reject := range []string{"!NORMAL_TEMPORARY_FAILURE", "!NORMAL_TEMPORARY_FAILURE,GATEWAY_DOWN"} {
		out, err := sw.API(ctx, "originate {fail_on_single_reject='"+reject+"'}sofia/gateway/dead/4930000170200|sofia/gateway/backup/4930000170200 &park()")
		if err != nil {
			t.Fatal(err)
		}
		if out != "-ERR GATEWAY_DOWN\n" {
			t.Errorf("originate through dead then backup, fail_on_single_reject=%s: %q, want -ERR GATEWAY_DOWN", reject, out)
		}
		if id, ok := strings.CutPrefix(strings.TrimSpace(out), "+OK "); ok {
			sw.API(ctx, "uuid_kill "+id)
		}
	}
	// A binding call's bridge through dead, then backup, goes on to
	// backup when GATEWAY_DOWN is a failover cause (no leg through dead
	// exists: originate_causes lists backup's only), and ends with
	// GATEWAY_DOWN (SIP 503 to the caller) when it is not.
	for _, tt := range []struct {
		x      string
		causes []string
		status int
		cause  string
		legs   int
	}{
		{"4930990011", carrierCauses, 200, "NORMAL_CLEARING", 1},
		{"4930990012", []string{"NORMAL_TEMPORARY_FAILURE"}, 503, "GATEWAY_DOWN", 0},
	} {
		f.mu.Lock()
		f.causes[tt.x] = tt.causes
		f.mu.Unlock()
		target := callbridge.Number(realswitch.Digits(realswitch.Number(171, realswitch.Answer)))
		phone, a := f.call(t, ctx, tt.x, target, "dead", "backup")
		fin, _ := phone.Final()
		attempts := freeswitch.ParseOriginateCauses(a.Var("originate_causes"))
		if fin.Status != tt.status || a.Get("Hangup-Cause") != tt.cause || len(attempts) != tt.legs {
			t.Errorf("bridge dead|backup, failover causes %v: the phone got %d, inbound leg %s, originate_causes %q; want %d, %s, %d legs",
				tt.causes, fin.Status, a.Get("Hangup-Cause"), a.Var("originate_causes"), tt.status, tt.cause, tt.legs)
		}
		for _, at := range attempts {
			if e, err := sw.Hangup(ctx, at.UUID); err != nil || e.Var("sip_gateway_name") != "backup" {
				t.Errorf("attempt %s: %v through %q, want backup", at.UUID, err, e.Var("sip_gateway_name"))
			}
		}
	}
	real, err := c.API(ctx, freeswitch.SofiaXMLStatusGateways())
	if err != nil {
		t.Fatal(err)
	}

	// A gateway added while FreeSWITCH runs, as freeswitch-conf/README.md
	// says: its values in the file's set lines, then reloadxml and a
	// rescan of the external profile.
	template, err := os.ReadFile(filepath.Join(sw.Conf, "sip_profiles", "external", "carrier.xml"))
	if err != nil {
		t.Fatal(err)
	}
	late := strings.Replace(string(realswitch.GatewayFile(template, "late")), `data="gateway_proxy=sip.late.invalid"`, `data="gateway_proxy=`+backup.Addr+`"`, 1)
	if err := os.WriteFile(filepath.Join(sw.Conf, "sip_profiles", "external", "late.xml"), []byte(late), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"reloadxml", "sofia profile external rescan"} {
		out, err := sw.API(ctx, cmd)
		if err != nil || !strings.Contains(out, "+OK") {
			t.Fatalf("%s: %q %v", cmd, out, err)
		}
	}
	if g, err := c.GatewayStatus(ctx, "late"); err != nil || g.Proxy != "sip:"+backup.Addr || !g.Up() {
		t.Errorf("the gateway added at run time: %+v %v, want UP with proxy sip:%s", g, err, backup.Addr)
	}

	// The simulator, with the same gateways.
	srv := esltest.NewUnstartedServer()
	srv.Gateways = []esltest.Gateway{{Name: "carrier", Proxy: carrier.Addr}, {Name: "backup", Proxy: backup.Addr}, {Name: "dead", Proxy: deadProxy}}
	srv.Start()
	defer srv.Close()
	sc := esl.NewClient(esl.Config{Name: "sim", Addr: srv.Addr(), Password: "ClueCon", Subclasses: []string{freeswitch.GatewayStateSubclass}})
	ssub := sc.Subscribe(0)
	sdone := make(chan error, 1)
	go func() { sdone <- sc.Run(ctx) }()
	defer func() { cancel(); <-sdone }()
	for e, err := ssub.Next(ctx); e.Name != freeswitch.SocketConnected; e, err = ssub.Next(ctx) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.SetGatewayStatus("dead", "DOWN"); err != nil {
		t.Fatal(err)
	}
	var simDown freeswitch.Event
	for {
		e, err := ssub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := freeswitch.ParseGatewayState(e); ok {
			simDown = e
			break
		}
	}
	if got, want := eventHeaderNames(simDown), eventHeaderNames(down); !slices.Equal(got, want) {
		t.Errorf("sofia::gateway_state headers: simulator %v, FreeSWITCH %v", got, want)
	}
	sim, err := sc.API(ctx, freeswitch.SofiaXMLStatusGateways())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := statusShape(sim), statusShape(real); got != want {
		t.Errorf("sofia xmlstatus gateway: simulator\n%s\nFreeSWITCH\n%s", sim, real)
	}
	simGws, err := freeswitch.ParseGatewayStatus(sim)
	if err != nil {
		t.Fatal(err)
	}
	realGws, err := freeswitch.ParseGatewayStatus(real)
	if err != nil {
		t.Fatal(err)
	}
	key := func(g freeswitch.GatewayStatus) string {
		return strings.Join([]string{g.Name, g.Profile, g.Proxy, g.State, g.Status, g.PingInterval.String()}, " ")
	}
	var s, r []string
	for _, g := range simGws {
		s = append(s, key(g))
	}
	for _, g := range realGws {
		r = append(r, key(g))
	}
	sort.Strings(s)
	sort.Strings(r)
	if !slices.Equal(s, r) {
		t.Errorf("gateways: simulator %v, FreeSWITCH %v", s, r)
	}
	sjob, err := sc.Originate(ctx, freeswitch.Originate{Endpoint: freeswitch.Gateway("dead", "4930123456")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sjob.Wait(ctx); !errors.As(err, &re) || re.Cause() != "GATEWAY_DOWN" {
		t.Errorf("simulator: originate through dead: %v, want -ERR GATEWAY_DOWN", err)
	}
}
