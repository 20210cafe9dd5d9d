package cdr

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/esl"
	"callbridge/esl/esltest"
	"callbridge/esl/freeswitch"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
	"callbridge/rating"

	"github.com/google/uuid"
)

// testTimeout is a generous upper bound for anything these tests wait
// for.
const testTimeout = 60 * time.Second

const fixtureDir = "../testdata/freeswitch-esl"

type logWriter struct{ tb testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// fixtureFrame returns the one frame of a fixture file.
func fixtureFrame(tb testing.TB, name string) *esltest.Frame {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		tb.Fatal(err)
	}
	f, err := esltest.ReadFrame(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return f
}

// fixtureEvent reads a fixture file into a freeswitch.Event, as the client
// would deliver it.
func fixtureEvent(tb testing.TB, name string) freeswitch.Event {
	tb.Helper()
	f := fixtureFrame(tb, name)
	h := map[string]string{}
	body := ""
	if strings.HasSuffix(name, ".json.txt") {
		var m map[string]any
		if err := json.Unmarshal(f.Body, &m); err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		for k, v := range m {
			if s, ok := v.(string); ok {
				h[k] = s
			}
		}
	} else {
		fields, b, err := esltest.EventHeaders(f.Body)
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		for _, fl := range fields {
			if _, dup := h[fl.Name]; !dup {
				h[fl.Name] = fl.Value
			}
		}
		body = string(b)
	}
	return freeswitch.NewEvent("fs1", h, body)
}

func usTime(v int64) time.Time { return time.UnixMicro(v).UTC() }

func TestParseHangupFixtures(t *testing.T) {
	type want struct {
		uuid, other, direction, caller, callee, presented, cause, disposition string
		q850                                                                  int
		start, answer, end                                                    int64
		durMS, billMS                                                         int64
	}
	tests := []struct {
		file string
		want want
	}{
		{"29-channel-hangup-complete-normal.plain.txt", want{"2ae15a25-0dcc-4c2e-b0e9-15464728d43f", "", "outbound", "1000", "2000", "1000",
			"NORMAL_CLEARING", "answered", 16, 1795304197467271, 1795304197467271, 1795304200527270, 3060, 3060}},
		{"29b-channel-hangup-complete-remote-bye.plain.txt", want{"32b40e3c-eed1-4012-bd3d-478e3f678ae3", "", "outbound", "1000", "2001", "1000",
			"NORMAL_CLEARING", "answered", 16, 1795304201027351, 1795304201547307, 1795304204567303, 3540, 3020}},
		{"29c-channel-hangup-complete-user-busy.plain.txt", want{"32bd3967-2a28-47c3-9f9b-816945ca759f", "", "outbound", "0000000000", "2002", "0000000000",
			"USER_BUSY", "busy", 17, 1795304205067282, 0, 1795304205087422, 20, 0}},
		{"29d-channel-hangup-complete-no-answer.plain.txt", want{"b23d6ef6-66e7-4a48-b390-c80d6b2e2935", "", "outbound", "0000000000", "2003", "0000000000",
			"NO_ANSWER", "no_answer", 19, 1795304205627289, 0, 1795304209007268, 3380, 0}},
		{"29e-channel-hangup-complete-temporary-failure.plain.txt", want{"ee3a5603-7e19-43fa-b779-b7bc5a4cb59e", "", "outbound", "0000000000", "2004", "0000000000",
			"NORMAL_TEMPORARY_FAILURE", "failed", 41, 1795304209527273, 0, 1795304209527273, 0, 0}},
		{"29g-channel-hangup-complete-bridged-a-leg.plain.txt", want{"c50a79f3-c5df-4f15-915b-9c47e49fe4de", "61ebd53d-a686-434d-8d53-0b68f1417b89", "outbound", "1000", "2010", "1000",
			"NORMAL_CLEARING", "answered", 16, 1795304213147281, 1795304213147281, 1795304217247258, 4100, 4100}},
		{"29h-channel-hangup-complete-bridged-b-leg.plain.txt", want{"61ebd53d-a686-434d-8d53-0b68f1417b89", "c50a79f3-c5df-4f15-915b-9c47e49fe4de", "outbound", "1000", "2011", "1000",
			"NORMAL_CLEARING", "answered", 16, 1795304213147281, 1795304213147281, 1795304217247258, 4100, 4100}},
		{"42-inbound-channel-hangup-complete-a-leg.plain.txt", want{"5c9a4dc0-67dc-4464-b4fe-ea2894d7dce0", "beebd7d6-6447-4dd8-89f6-0d10f8211b7f", "inbound", "sipp", "5551234", "sipp",
			"NORMAL_CLEARING", "answered", 16, 1795304224047264, 1795304224087281, 1795304227107256, 3060, 3020}},
		{"43-inbound-channel-hangup-complete-b-leg.plain.txt", want{"beebd7d6-6447-4dd8-89f6-0d10f8211b7f", "5c9a4dc0-67dc-4464-b4fe-ea2894d7dce0", "outbound", "sipp", "5551234", "sipp",
			"NORMAL_CLEARING", "answered", 16, 1795304224067275, 1795304224067275, 1795304227107256, 3040, 3040}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c, err := parseHangup(fixtureEvent(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			w := tt.want
			var answer time.Time
			if w.answer != 0 {
				answer = usTime(w.answer)
			}
			got := []any{c.UUID, c.OtherUUID, c.Leg, c.Direction, c.Caller, c.Callee, c.Presented, c.HangupCause,
				c.Disposition, c.Q850, c.StartAt, c.AnswerAt, c.EndAt, c.DurationMS, c.BillMS, c.Node, c.AccountID, c.Gateway}
			exp := []any{w.uuid, w.other, callbridge.LegPlain, w.direction, w.caller, w.callee, w.presented, w.cause,
				w.disposition, w.q850, usTime(w.start), answer, usTime(w.end), w.durMS, w.billMS, "fs1", "", ""}
			names := []string{"uuid", "other", "leg", "direction", "caller", "callee", "presented", "cause",
				"disposition", "q850", "start", "answer", "end", "duration_ms", "bill_ms", "node", "account", "gateway"}
			for i := range got {
				if fmt.Sprint(got[i]) != fmt.Sprint(exp[i]) {
					t.Errorf("%s: got %v, want %v", names[i], got[i], exp[i])
				}
			}
		})
	}
}

// The JSON captures come from another run: check each against its own
// headers rather than a table.
func TestParseHangupFixturesJSON(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "*-hangup-complete-*.json.txt"))
	if len(files) != 9 {
		t.Fatalf("found %d JSON hangup fixtures, want 9", len(files))
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			ev := fixtureEvent(t, name)
			c, err := parseHangup(ev)
			if err != nil {
				t.Fatal(err)
			}
			if c.UUID != ev.Get("Unique-ID") {
				t.Errorf("uuid %s, want %s", c.UUID, ev.Get("Unique-ID"))
			}
			if fmt.Sprint(c.BillMS) != ev.Var("billmsec") || fmt.Sprint(c.DurationMS) != ev.Var("mduration") {
				t.Errorf("bill %d duration %d, want %s %s", c.BillMS, c.DurationMS, ev.Var("billmsec"), ev.Var("mduration"))
			}
			if got := fmt.Sprint(c.EndAt.UnixMicro()); got != ev.Var("end_uepoch") {
				t.Errorf("end %s, want %s", got, ev.Var("end_uepoch"))
			}
			if c.HangupCause != ev.Get("Hangup-Cause") || c.Callee != ev.Get("Caller-Destination-Number") {
				t.Errorf("cause %s callee %s", c.HangupCause, c.Callee)
			}
		})
	}
}

func TestParseHangupAttribution(t *testing.T) {
	acc, cb := uuid.NewString(), uuid.NewString()
	ev := fixtureEvent(t, "29-channel-hangup-complete-normal.plain.txt")
	h := ev.Headers()
	h["variable_"+callbridge.VarAccount] = strings.ToUpper(acc)
	h["variable_"+callbridge.VarCallbackID] = cb
	h["variable_"+callbridge.VarLeg] = callbridge.LegCallbackB
	h["variable_"+callbridge.VarBindingID] = "not-a-uuid"
	h["variable_"+callbridge.VarMaxMS] = "600000"
	h["variable_sip_gateway_name"] = "carrier"
	h["variable_billsec"] = "4" // whole seconds are never used
	h["variable_"+callbridge.VarAttempt] = "2"
	h["variable_sip_term_status"] = "503"
	h["variable_"+callbridge.VarRouter] = "host-1_0a1b2c"
	c, err := parseHangup(freeswitch.NewEvent("fs2", h, ""))
	if err != nil {
		t.Fatal(err)
	}
	if c.AccountID != acc || c.CallbackID != cb || c.Leg != callbridge.LegCallbackB || c.BindingID != "" ||
		c.Gateway != "carrier" || c.MaxMS != 600000 || c.Node != "fs2" || c.BillMS != 3060 || c.Attempt != 2 || c.SIPStatus != 503 ||
		c.Router != "host-1_0a1b2c" {
		t.Errorf("got %+v", c)
	}
	// The router is read as a controller set it, or not at all.
	h["variable_"+callbridge.VarRouter] = "host 1,x"
	if c, _ := parseHangup(freeswitch.NewEvent("fs2", h, "")); c.Router != "" {
		t.Errorf("router %q, want none from a hostile value", c.Router)
	}
	h["variable_"+callbridge.VarRouter] = "host-1_0a1b2c"
	// A leg that never reached sofia: the attempt's variable names the
	// gateway; hostile values are dropped.
	delete(h, "variable_sip_gateway_name")
	h["variable_"+callbridge.VarGateway] = "backup"
	if c, _ := parseHangup(freeswitch.NewEvent("fs2", h, "")); c.Gateway != "backup" {
		t.Errorf("gateway %q, want backup from %s", c.Gateway, callbridge.VarGateway)
	}
	h["variable_"+callbridge.VarGateway] = "back up}"
	h["variable_"+callbridge.VarAttempt] = "1000"
	if c, _ := parseHangup(freeswitch.NewEvent("fs2", h, "")); c.Gateway != "" || c.Attempt != 0 || c.Router != "" {
		t.Errorf("gateway %q attempt %d router %q, want all empty", c.Gateway, c.Attempt, c.Router)
	}

	// An event without a Unique-ID cannot make a CDR.
	for k := range h {
		if strings.EqualFold(k, "Unique-ID") {
			delete(h, k)
		}
	}
	if _, err := parseHangup(freeswitch.NewEvent("fs2", h, "")); err == nil {
		t.Error("event without Unique-ID parsed")
	}
}

func FuzzParseHangup(f *testing.F) {
	f.Add("2ae15a25-0dcc-4c2e-b0e9-15464728d43f", "1795304197467271", "0", "1795304200527270", "3060", "a", "\x00\xff")
	f.Fuzz(func(t *testing.T, id, start, answer, end, bill, leg, caller string) {
		ev := freeswitch.NewEvent("fs1", map[string]string{
			"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": id, "variable_start_uepoch": start,
			"variable_answer_uepoch": answer, "variable_end_uepoch": end, "variable_billmsec": bill,
			"variable_callbridge_leg": leg, "Caller-Orig-Caller-ID-Number": caller,
		}, "")
		c, err := parseHangup(ev)
		if err != nil {
			return
		}
		if c.EndAt.Before(c.StartAt) || c.DurationMS < 0 || c.BillMS < 0 || (!c.Answered() && c.BillMS != 0) {
			t.Errorf("inconsistent CDR %+v", c)
		}
		if sanitize(c.Caller) != c.Caller {
			t.Errorf("caller %q not sanitized", c.Caller)
		}
	})
}

// testDecks prices calls to 49... for account acc at 0.12/min billed per
// second (2000 micro-units a second) and buys them from gateway "carrier" at
// 0.06/min billed per minute; other numbers fall to the sell deck's default
// rate, 0.60/min per second.
func testDecks(tb testing.TB, acc string) *rating.Registry {
	tb.Helper()
	sell, err := rating.NewDeck(rating.DeckInfo{ID: "sell-1", AccountID: acc, Name: "sell", Currency: "EUR", TimeZone: "UTC",
		Precision: 6, Version: 3, Default: &rating.Rate{PerMinute: 600000, FirstIncrement: 1, NextIncrement: 1, Days: rating.AllDays, Until: rating.Midnight}},
		time.UTC, []rating.Rate{{Prefix: "49", PerMinute: 120000, FirstIncrement: 1, NextIncrement: 1, Days: rating.AllDays, Until: rating.Midnight}})
	if err != nil {
		tb.Fatal(err)
	}
	buy, err := rating.NewDeck(rating.DeckInfo{ID: "buy-1", Gateway: "carrier", Name: "buy", Currency: "EUR", TimeZone: "UTC", Precision: 6, Version: 7},
		time.UTC, []rating.Rate{{Prefix: "49", PerMinute: 60000, FirstIncrement: 60, NextIncrement: 60, Days: rating.AllDays, Until: rating.Midnight}})
	if err != nil {
		tb.Fatal(err)
	}
	reg := &rating.Registry{}
	reg.Replace([]*rating.Deck{sell, buy}, reg.Mark())
	return reg
}

func TestPricer(t *testing.T) {
	acc := uuid.NewString()
	p := NewPricer(testDecks(t, acc), nil)
	start := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	mk := func(account, callee, gw string, billMS int64, answered bool) *callbridge.CDR {
		c := &callbridge.CDR{UUID: uuid.NewString(), AccountID: account, Callee: callee, Gateway: gw, StartAt: start, BillMS: billMS,
			Flags: callbridge.CDREstimated}
		if answered {
			c.AnswerAt = start.Add(time.Second)
		}
		return c
	}
	tests := []struct {
		name      string
		c         *callbridge.CDR
		sell, buy int64
		flags     callbridge.CDRFlags
	}{
		{"per second and per minute", mk(acc, "4930123", "carrier", 61001, true), 62 * 2000, 120000, callbridge.CDREstimated},
		{"billmsec not billsec", mk(acc, "4930123", "carrier", 3060, true), 4 * 2000, 60000, callbridge.CDREstimated},
		{"unanswered", mk(acc, "4930123", "carrier", 0, false), 0, 0, callbridge.CDREstimated | callbridge.CDRUnanswered},
		{"short", mk(acc, "4930123", "", 999, true), 0, 0, callbridge.CDREstimated | callbridge.CDRShort},
		{"default rate", mk(acc, "3312345", "carrier", 10000, true), 10 * 10000, 0,
			callbridge.CDREstimated | callbridge.CDRUnratedDefault | callbridge.CDRBuyUnrated},
		{"no sell deck", mk(uuid.NewString(), "4930123", "", 10000, true), 0, 0, callbridge.CDREstimated | callbridge.CDRUnrated},
		{"not a number", mk(acc, "sipp", "", 10000, true), 0, 0, callbridge.CDREstimated | callbridge.CDRUnrated},
		{"plain leg", mk("", "4930123", "", 10000, true), 0, 0, callbridge.CDREstimated},
		{"no buy deck", mk("", "4930123", "other", 10000, true), 0, 0, callbridge.CDREstimated | callbridge.CDRBuyUnrated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := p.Price(context.Background(), tt.c); err != nil {
				t.Fatal(err)
			}
			if tt.c.Sell != tt.sell || tt.c.Buy != tt.buy || tt.c.Flags != tt.flags {
				t.Errorf("got sell %d buy %d flags %v, want %d %d %v", tt.c.Sell, tt.c.Buy, tt.c.Flags, tt.sell, tt.buy, tt.flags)
			}
		})
	}
	c := mk(acc, "4930123", "carrier", 61001, true)
	p.Price(context.Background(), c)
	if c.SellDeckID != "sell-1" || c.SellDeckVersion != 3 || c.BuyDeckVersion != 7 || c.SellCurrency != "EUR" || c.SellPrefix != "49" {
		t.Errorf("deck attribution %+v", c)
	}
	if s := p.Stats(); s.UnratedDefault != 1 || s.Unrated != 2 {
		t.Errorf("stats %+v, want 1 unrated_default and 2 unrated", s)
	}
	notLoaded := NewPricer(&rating.Registry{}, nil)
	if err := notLoaded.Price(context.Background(), mk(acc, "4930123", "", 1000, true)); callbridge.ErrorCode(err) != callbridge.EUNAVAILABLE {
		t.Errorf("decks not loaded yet: got %v, want EUNAVAILABLE", err)
	}
}

// testEnv is a simulated FreeSWITCH node, a database reachable through a
// proxy, and the account and decks CDRs are priced with. It tests the
// pipeline as one component (its retries, spool and kills need its own
// Config and a store behind a proxy); the wiring of `callbridge serve`
// (app.New) is what the controller tests build, through apptest.
type testEnv struct {
	sim    *esltest.Server
	db     *postgres.DB // direct connection, for checks
	viaPx  *postgres.DB // through the proxy, for pipelines
	proxy  *pgtest.Proxy
	acc    string
	decks  *rating.Registry
	spool  string
	logger *slog.Logger
}

func newTestEnv(t testing.TB, simOpts ...func(*esltest.Server)) *testEnv {
	t.Helper()
	u := pgtest.URL(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	proxied, proxy := pgtest.Proxied(t, u)
	via, err := postgres.Open(ctx, proxied, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { via.Close() })
	a := &callbridge.Account{Name: "cdr", Currency: "EUR"}
	if _, err := postgres.NewAccountService(db).CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	sim := esltest.NewUnstartedServer()
	sim.Hostname = "fs1"
	sim.Speed = 1000
	for _, o := range simOpts {
		o(sim)
	}
	sim.Start()
	t.Cleanup(sim.Close)
	return &testEnv{sim: sim, db: db, viaPx: via, proxy: proxy, acc: a.ID, decks: testDecks(t, a.ID),
		spool: t.TempDir(), logger: testLogger(t)}
}

// process is a pipeline with its own ESL client, as one controller process.
type process struct {
	p      *Pipeline
	client *esl.Client
	cancel context.CancelFunc
	done   chan struct{}
}

func (e *testEnv) start(t testing.TB, spool string, tweak func(*Config)) *process {
	t.Helper()
	cfg := Config{
		Store: postgres.NewCDRStore(e.viaPx), Pricer: NewPricer(e.decks, e.logger), SpoolDir: spool,
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, SweepGrace: 50 * time.Millisecond,
		Logger: e.logger,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	p, err := NewPipeline(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client := esl.NewClient(esl.Config{Name: "fs1", Addr: e.sim.Addr(), Password: "ClueCon",
		BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	r := &process{p: p, client: client, cancel: cancel, done: make(chan struct{})}
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		client.Run(ctx)
	}()
	go func() {
		defer close(r.done)
		if err := p.Run(ctx, client); err != nil {
			t.Errorf("pipeline: %v", err)
		}
		<-clientDone
	}()
	t.Cleanup(r.stop)
	// Events are only delivered to a subscribed, connected client.
	wait.For(t, "pipeline subscribed", func() bool {
		s := client.Stats()
		return s.State == esl.StateConnected && len(s.QueueDepths) > 0
	})
	return r
}

// stop ends the process: with DrainTimeout < 0 it leaves its queue in the
// spool as a killed process would.
func (r *process) stop() {
	r.cancel()
	<-r.done
}

func (e *testEnv) count(tb testing.TB) int {
	tb.Helper()
	var n int
	if err := pgtest.Get(context.Background(), e.db, &n, `SELECT count(*) FROM cdrs`); err != nil {
		tb.Fatal(err)
	}
	return n
}

// hangupTemplate holds the headers of a real CHANNEL_HANGUP_COMPLETE, in
// order, to make events that differ only in the fields a test sets.
type hangupTemplate []esltest.Field

func newHangupTemplate(tb testing.TB) hangupTemplate {
	tb.Helper()
	f := fixtureFrame(tb, "29b-channel-hangup-complete-remote-bye.plain.txt")
	fields, _, err := esltest.EventHeaders(f.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return fields
}

// frame renders a text/event-plain frame from the template with the given
// headers replaced (or appended), values URL-encoded as FreeSWITCH does.
func (h hangupTemplate) frame(set map[string]string) []byte {
	var b bytes.Buffer
	done := map[string]bool{}
	for _, f := range h {
		v := f.Value
		if nv, ok := set[f.Name]; ok {
			v, done[f.Name] = nv, true
		}
		b.WriteString(f.Name + ": " + url.PathEscape(v) + "\n")
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		if !done[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(k + ": " + url.PathEscape(set[k]) + "\n")
	}
	b.WriteString("\n")
	return fmt.Appendf(nil, "Content-Length: %d\nContent-Type: text/event-plain\n\n%s", b.Len(), b.Bytes())
}

// call is one simulated call leg: the hangup event of leg i.
func (e *testEnv) call(h hangupTemplate, i int, base time.Time) (string, []byte) {
	id := uuid.NewString()
	start := base.Add(time.Duration(i) * time.Millisecond)
	answer := start.Add(500 * time.Millisecond)
	bill := int64(500 + (i%700)*173) // 0.5 s to 121 s
	end := answer.Add(time.Duration(bill) * time.Millisecond)
	u := func(t time.Time) string { return fmt.Sprint(t.UnixMicro()) }
	return id, h.frame(map[string]string{
		"Unique-ID": id, "Channel-Call-UUID": id, "variable_uuid": id, "Caller-Unique-ID": id,
		"Caller-Destination-Number": fmt.Sprintf("49301%06d", i), "Caller-Orig-Caller-ID-Number": "4940123456",
		"variable_start_uepoch": u(start), "variable_answer_uepoch": u(answer), "variable_end_uepoch": u(end),
		"variable_billmsec": fmt.Sprint(bill), "variable_mduration": fmt.Sprint(end.Sub(start).Milliseconds()),
		"variable_billsec": fmt.Sprint(bill / 1000), "variable_sip_gateway_name": "carrier",
		"variable_callbridge_account": e.acc, "variable_callbridge_leg": "a",
		"variable_callbridge_callback_id": "7d1f4a52-1c7e-4c1a-9a53-0c0d5f1e2b3a",
	})
}

// checkPrices verifies every stored CDR against the decks' arithmetic,
// computed independently in SQL: sell 2000 micro-units per started second
// from 1 s on, buy 60000 per started minute.
func (e *testEnv) checkPrices(tb testing.TB, want int) {
	tb.Helper()
	var bad, n, dups int
	err := pgtest.Get(context.Background(), e.db, &n, `SELECT count(*) FROM cdrs WHERE account_id = $1`, e.acc)
	if err != nil {
		tb.Fatal(err)
	}
	pgtest.Get(context.Background(), e.db, &bad, `SELECT count(*) FROM cdrs WHERE sell_micros <> CASE WHEN bill_ms < 1000 THEN 0 ELSE 2000 * ceil(bill_ms / 1000.0) END
		OR buy_micros <> CASE WHEN bill_ms < 1000 THEN 0 ELSE 60000 * ceil(bill_ms / 60000.0) END
		OR sell_deck_version <> 3 OR buy_deck_version <> 7 OR sell_currency <> 'EUR'`)
	pgtest.Get(context.Background(), e.db, &dups, `SELECT count(*) - count(DISTINCT uuid) FROM cdrs`)
	if n != want || bad != 0 || dups != 0 {
		tb.Errorf("%d CDRs (want %d), %d wrongly priced, %d duplicates", n, want, bad, dups)
	}
}

func spoolFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.cdrs"))
	return m
}

func TestCDRPipelineFixturesExactlyOnce(t *testing.T) {
	e := newTestEnv(t)
	// Two controllers receive every event of the node, and FreeSWITCH's
	// events arrive twice (a redelivery after a reconnect).
	r1 := e.start(t, t.TempDir(), nil)
	r2 := e.start(t, t.TempDir(), nil)
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "*-hangup-complete-*.plain.txt"))
	for range 2 {
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			e.sim.InjectFrame(raw)
		}
	}
	wait.For(t, "18 hangups written by each pipeline", func() bool {
		s1, s2 := r1.p.Stats(), r2.p.Stats()
		return s1.Inserted+s1.Duplicates == 18 && s2.Inserted+s2.Duplicates == 18
	})
	if n := e.count(t); n != 9 {
		t.Errorf("%d CDRs stored, want 9", n)
	}
	s1, s2 := r1.p.Stats(), r2.p.Stats()
	if s1.Inserted+s2.Inserted != 9 {
		t.Errorf("inserted %d + %d, want 9 in all", s1.Inserted, s2.Inserted)
	}
	c, err := postgres.NewCDRStore(e.db).CDRByUUID(context.Background(), "5c9a4dc0-67dc-4464-b4fe-ea2894d7dce0")
	if err != nil {
		t.Fatal(err)
	}
	if c.BillMS != 3020 || c.Callee != "5551234" || c.Direction != "inbound" || c.Node != "fs1" || c.Leg != callbridge.LegPlain {
		t.Errorf("inbound leg stored as %+v", c)
	}
	wait.For(t, "spools empty", func() bool { return r1.p.Stats().QueuedBatches == 0 && r2.p.Stats().QueuedBatches == 0 })
}

// TestCDRPipelineSimulatedCalls places real simulated calls and checks the
// CDRs FreeSWITCH's hangups make, priced.
func TestCDRPipelineSimulatedCalls(t *testing.T) {
	e := newTestEnv(t)
	r := e.start(t, e.spool, nil)
	ctx := context.Background()
	cbID := uuid.NewString()
	numbers := []callbridge.Number{"4930100000", "4930100486", "4930100480", "3312345000"}
	ids := map[callbridge.Number]string{}
	for _, n := range numbers {
		job, err := r.client.Originate(ctx, freeswitch.Originate{
			Endpoint: freeswitch.Gateway("carrier", n),
			Vars: []freeswitch.Var{{Name: callbridge.VarAccount, Value: e.acc}, {Name: callbridge.VarCallbackID, Value: cbID},
				{Name: callbridge.VarLeg, Value: "a"}, {Name: callbridge.VarMaxMS, Value: "3600000"}},
			CallerIDNumber: "4940123456",
			Timeout:        30 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		ids[n] = job.UUID
	}
	wait.For(t, "4 CDRs", func() bool { return e.count(t) == 4 })
	store := postgres.NewCDRStore(e.db)
	for _, n := range numbers {
		c, err := store.CDR(ctx, e.acc, ids[n])
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if c.CallbackID != cbID || c.Leg != callbridge.LegCallbackA || c.Gateway != "carrier" || c.Callee != string(n) || c.Presented != "4940123456" {
			t.Errorf("%s: attribution %+v", n, c)
		}
		switch n {
		case "4930100000":
			if c.Disposition != callbridge.DispositionAnswered || c.BillMS <= 0 ||
				c.Sell != 2000*((c.BillMS+999)/1000) || c.Buy != 60000*((c.BillMS+59999)/60000) {
				t.Errorf("answered call: bill %d sell %d buy %d", c.BillMS, c.Sell, c.Buy)
			}
		case "4930100486":
			if c.Disposition != callbridge.DispositionBusy || c.Sell != 0 || !c.Flags.Has(callbridge.CDRUnanswered) {
				t.Errorf("busy call: %+v", c)
			}
		case "4930100480":
			if c.Disposition != callbridge.DispositionNoAnswer || c.Sell != 0 {
				t.Errorf("unanswered call: %+v", c)
			}
		case "3312345000":
			if !c.Flags.Has(callbridge.CDRUnratedDefault) || !c.Flags.Has(callbridge.CDRBuyUnrated) || c.Sell != 10000*((c.BillMS+999)/1000) {
				t.Errorf("default-rated call: sell %d flags %v", c.Sell, c.Flags)
			}
		}
	}
	// Every leg that ended left live_channels.
	live, err := store.LiveChannels(ctx, "fs1")
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 0 {
		t.Errorf("%d legs still live after their hangups", len(live))
	}
}

func TestCDRPipelineSpoolsWhileDatabaseDown(t *testing.T) {
	e := newTestEnv(t)
	r := e.start(t, e.spool, nil)
	h := newHangupTemplate(t)
	base := time.Now().UTC()
	e.proxy.Cut()
	for i := range 300 {
		_, f := e.call(h, i, base)
		e.sim.InjectFrame(f)
	}
	wait.For(t, "300 records spooled", func() bool { return r.p.Stats().Spooled == 300 })
	wait.For(t, "unavailable", func() bool { return r.p.Stats().Unavailable })
	if n := len(spoolFiles(t, e.spool)); n == 0 {
		t.Fatal("no spool files while the database is down")
	}
	if n := e.count(t); n != 0 {
		t.Fatalf("%d CDRs written through a cut proxy", n)
	}
	e.proxy.Restore()
	wait.For(t, "spool replayed", func() bool { return e.count(t) == 300 && r.p.Stats().QueuedBatches == 0 })
	if n := len(spoolFiles(t, e.spool)); n != 0 {
		t.Errorf("%d spool files left after replay", n)
	}
	e.checkPrices(t, 300)
}

func TestCDRPipelineDeadLetters(t *testing.T) {
	e := newTestEnv(t)
	// A spool left by an earlier run holds a record the database refuses
	// (a leg kind it does not know) between two good ones.
	good := func() record {
		return record{CDR: &callbridge.CDR{UUID: uuid.NewString(), Leg: "a", AccountID: e.acc, Direction: "outbound",
			Callee: "4930111", Node: "fs1", StartAt: time.Now().UTC(), EndAt: time.Now().UTC(), HangupCause: "NORMAL_CLEARING",
			Disposition: "failed"}}
	}
	bad := good()
	bad.CDR.Leg = "sideways"
	recs := []record{good(), bad, good()}
	if err := writeSpoolFile(filepath.Join(e.spool, "0000000000000000001-000000001.cdrs"), recs); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(e.spool, "0000000000000000002-000000002.cdrs"), []byte("{not json"), 0o600)
	os.WriteFile(filepath.Join(e.spool, "batch-123.tmp"), []byte("torn"), 0o600)
	r := e.start(t, e.spool, nil)
	// An event that is not a channel's hangup at all.
	body := "Event-Name: CHANNEL_HANGUP_COMPLETE\nUnique-ID: x\n\n"
	e.sim.InjectFrame(fmt.Appendf(nil, "Content-Length: %d\nContent-Type: text/event-plain\n\n%s", len(body), body))
	wait.For(t, "two dead letters", func() bool { return r.p.Stats().DeadLetters == 2 })
	wait.For(t, "good records", func() bool { return e.count(t) == 2 })
	dl, err := postgres.NewCDRStore(e.db).DeadLetters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 2 {
		t.Fatalf("%d dead letters stored, want 2", len(dl))
	}
	var refused, unparsable *callbridge.CDRDeadLetter
	for _, d := range dl {
		if d.UUID == bad.CDR.UUID {
			refused = d
		} else {
			unparsable = d
		}
	}
	if refused == nil || refused.Attempts != 3 || !strings.Contains(string(refused.Payload), "sideways") {
		t.Errorf("refused record dead letter = %+v", refused)
	}
	if unparsable == nil || !strings.Contains(string(unparsable.Payload), "CHANNEL_HANGUP_COMPLETE") {
		t.Errorf("unparsable event dead letter = %+v", unparsable)
	}
	if _, err := os.Stat(filepath.Join(e.spool, "0000000000000000002-000000002.cdrs.bad")); err != nil {
		t.Errorf("unreadable spool file not set aside: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.spool, "batch-123.tmp")); !os.IsNotExist(err) {
		t.Errorf("torn temporary file not removed")
	}
}

func TestCDRPipelineDeadLetterFileWhenDatabaseDown(t *testing.T) {
	e := newTestEnv(t)
	// The store refuses a record, then the database disappears before the
	// dead letter can be stored.
	store := postgres.NewCDRStore(e.viaPx)
	deadDown := storeFuncs{Store: store, deadLetter: func(context.Context, *callbridge.CDRDeadLetter) error {
		return callbridge.Errorf(callbridge.EUNAVAILABLE, "database unavailable")
	}}
	bad := record{CDR: &callbridge.CDR{UUID: uuid.NewString(), Leg: "sideways", Direction: "outbound", Node: "fs1",
		StartAt: time.Now().UTC(), EndAt: time.Now().UTC(), HangupCause: "X", Disposition: "failed"}}
	if err := writeSpoolFile(filepath.Join(e.spool, "0000000000000000001-000000001.cdrs"), []record{bad}); err != nil {
		t.Fatal(err)
	}
	r := e.start(t, e.spool, func(c *Config) { c.Store = deadDown })
	wait.For(t, "dead letter", func() bool { return r.p.Stats().DeadLetters == 1 && r.p.Stats().QueuedBatches == 0 })
	files, _ := filepath.Glob(filepath.Join(e.spool, "dead", "*.json"))
	if len(files) != 1 {
		t.Fatalf("%d dead-letter files, want 1", len(files))
	}
	body, _ := os.ReadFile(files[0])
	var d callbridge.CDRDeadLetter
	if err := json.Unmarshal(body, &d); err != nil || d.UUID != bad.CDR.UUID || d.Attempts != 3 {
		t.Errorf("dead-letter file %s: %v", body, err)
	}
}

// storeFuncs wraps a Store, replacing DeadLetter.
type storeFuncs struct {
	Store
	deadLetter func(context.Context, *callbridge.CDRDeadLetter) error
}

func (s storeFuncs) DeadLetter(ctx context.Context, d *callbridge.CDRDeadLetter) error {
	return s.deadLetter(ctx, d)
}

// TestCDRPipeline10000WithOutageAndKill streams 10,000 hangups through the
// simulator: the database goes away in the middle, the controller is
// killed with batches only in its spool, a new one starts on the same
// spool, the database comes back; exactly 10,000 CDRs, correctly priced.
func TestCDRPipeline10000WithOutageAndKill(t *testing.T) {
	e := newTestEnv(t)
	h := newHangupTemplate(t)
	base := time.Now().UTC().Add(-time.Hour)
	ids := make([]string, 0, 10000)
	frames := make([][]byte, 0, 10000)
	for i := range 10000 {
		id, f := e.call(h, i, base)
		ids = append(ids, id)
		frames = append(frames, f)
	}
	send := func(r *process, from, to int) {
		read := r.p.Stats().Hangups
		for i := from; i < to; i += 500 {
			for _, f := range frames[i:min(i+500, to)] {
				e.sim.InjectFrame(f)
			}
			// Keep the simulator's per-connection queue short.
			wait.For(t, "events read", func() bool { return r.p.Stats().Hangups-read >= int64(min(i+500, to)-from) })
		}
	}
	kill := func(c *Config) { c.DrainTimeout = -1 }

	r1 := e.start(t, e.spool, kill)
	send(r1, 0, 2500)
	e.proxy.Cut()
	send(r1, 2500, 5000)
	// Every event the first controller read is acknowledged (spooled);
	// the database has not seen all of them.
	wait.For(t, "5000 spooled", func() bool { return r1.p.Stats().Spooled == 5000 })
	if e.count(t) >= 5000 {
		t.Fatal("database saw every CDR before the kill: the outage did not bite")
	}
	r1.stop() // killed: no drain
	if len(spoolFiles(t, e.spool)) == 0 {
		t.Fatal("killed controller left no spool")
	}

	r2 := e.start(t, e.spool, kill)
	send(r2, 5000, 7500)
	e.proxy.Restore()
	send(r2, 7500, 10000)
	wait.For(t, "10000 CDRs", func() bool { return e.count(t) >= 10000 && r2.p.Stats().QueuedBatches == 0 })
	e.checkPrices(t, 10000)
	var missing int
	pgtest.Get(context.Background(), e.db, &missing, `SELECT count(*) FROM unnest($1::uuid[]) AS u(id) WHERE NOT EXISTS (SELECT 1 FROM cdrs WHERE uuid = u.id)`,
		"{"+strings.Join(ids, ",")+"}")
	if missing != 0 {
		t.Errorf("%d of the 10000 channels have no CDR", missing)
	}
	if n := len(spoolFiles(t, e.spool)); n != 0 {
		t.Errorf("%d spool files left", n)
	}
}

// BenchmarkCDRPipelineEndToEnd measures CDRs per second from hangup
// events (9 kB, as FreeSWITCH sends them) written by the simulator, through
// the ESL client and the pipeline, into PostgreSQL.
func BenchmarkCDRPipelineEndToEnd(b *testing.B) {
	e := newTestEnv(b)
	e.logger = slog.New(slog.DiscardHandler)
	h := newHangupTemplate(b)
	r := e.start(b, e.spool, nil)
	frames := newFrameSource(e, h)
	b.ResetTimer()
	for i := 0; i < b.N; i += 1000 {
		for j := i; j < min(i+1000, b.N); j++ {
			e.sim.InjectFrame(frames.frame(j))
		}
		wait.For(b, "events read", func() bool { return r.p.Stats().Hangups >= int64(min(i+1000, b.N))-4000 })
	}
	wait.For(b, "all written", func() bool {
		s := r.p.Stats()
		return s.Inserted+s.Duplicates >= int64(b.N)
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cdrs/s")
}

// frameSource makes distinct hangup frames cheaply: 700 variants
// (durations, numbers) rendered once with a placeholder uuid that is
// patched per frame.
type frameSource struct {
	variants [][]byte
}

const placeholderUUID = "00000000-0000-4000-8000-000000000000"

func newFrameSource(e *testEnv, h hangupTemplate) *frameSource {
	src := &frameSource{}
	base := time.Now().UTC()
	for i := range 700 {
		id, f := e.call(h, i, base)
		src.variants = append(src.variants, bytes.ReplaceAll(f, []byte(id), []byte(placeholderUUID)))
	}
	return src
}

func (s *frameSource) frame(i int) []byte {
	id := []byte(uuid.NewString())
	return bytes.ReplaceAll(s.variants[i%len(s.variants)], []byte(placeholderUUID), id)
}

// BenchmarkCDRPipelineFromEvents measures the pipeline alone, from parsed
// ESL events (what the client delivers) to priced CDRs in PostgreSQL:
// parsing, batching, the fsync'ed spool, pricing and the batch writer.
func BenchmarkCDRPipelineFromEvents(b *testing.B) {
	e := newTestEnv(b)
	e.logger = slog.New(slog.DiscardHandler)
	p, err := NewPipeline(Config{Store: postgres.NewCDRStore(e.db), Pricer: NewPricer(e.decks, nil),
		SpoolDir: e.spool, Logger: e.logger})
	if err != nil {
		b.Fatal(err)
	}
	// The headers the pipeline reads, from the 29b capture; the ESL
	// client's own parsing is measured by the esl package.
	h := newHangupTemplate(b)
	keep := map[string]bool{}
	for _, k := range []string{"Event-Name", "Unique-ID", "Call-Direction", "Hangup-Cause", "Other-Leg-Unique-ID",
		"Caller-Orig-Caller-ID-Number", "Caller-Destination-Number", "Event-Date-Timestamp", "FreeSWITCH-Switchname",
		"variable_start_uepoch", "variable_answer_uepoch", "variable_end_uepoch", "variable_billmsec", "variable_mduration",
		"variable_hangup_cause_q850", "variable_sip_gateway_name", "variable_callbridge_account", "variable_callbridge_leg",
		"variable_callbridge_callback_id", "variable_origination_caller_id_number", "variable_billsec"} {
		keep[k] = true
	}
	base := time.Now().UTC()
	events := make([]freeswitch.Event, b.N)
	for i := range events {
		_, f := e.call(h, i, base)
		fr, err := esltest.ReadFrame(bufio.NewReader(bytes.NewReader(f)))
		if err != nil {
			b.Fatal(err)
		}
		fields, _, err := esltest.EventHeaders(fr.Body)
		if err != nil {
			b.Fatal(err)
		}
		m := map[string]string{}
		for _, fl := range fields {
			if keep[fl.Name] {
				m[fl.Name] = fl.Value
			}
		}
		events[i] = freeswitch.NewEvent("fs1", m, "")
	}
	// A pipeline that stops taking events fails the run instead of
	// hanging it.
	watched, advanced := wait.Progress(b, "events taken by the pipeline")
	ctx, cancel := context.WithCancel(watched)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	b.ResetTimer()
	for _, ev := range events {
		p.handle(ctx, ev)
		advanced()
	}
	wait.For(b, "all written", func() bool { return p.Stats().Inserted >= int64(b.N) })
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cdrs/s")
	cancel()
	<-done
}

// TestCDRSpoolFileRoundTrip: every kind of record the pipeline spools
// (a CDR, a live channel, a dead letter, a destroyed channel) is read back
// from its spool file, so a restart replays it instead of setting the file
// aside.
func TestCDRSpoolFileRoundTrip(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	recs := []record{
		{CDR: &callbridge.CDR{UUID: uuid.NewString(), Leg: "a", Direction: "outbound", Node: "fs1", StartAt: now, EndAt: now}},
		{Live: &callbridge.LiveChannel{UUID: uuid.NewString(), Node: "fs1", Leg: "a", Direction: "outbound", StartAt: now}},
		{Dead: &callbridge.CDRDeadLetter{UUID: uuid.NewString(), Node: "fs1", Reason: "refused", Attempts: 3, Payload: json.RawMessage(`{}`)}},
		{Destroyed: &destroyEvent{UUID: uuid.NewString(), Node: "fs1", At: now}},
		{Kept: &callbridge.CDR{UUID: uuid.NewString(), Leg: "b", Direction: "outbound", Node: "fs1", StartAt: now, EndAt: now}},
	}
	path := filepath.Join(t.TempDir(), "0000000000000000001-000000001.cdrs")
	if err := writeSpoolFile(path, recs); err != nil {
		t.Fatal(err)
	}
	got, err := readSpoolFile(path)
	if err != nil {
		t.Fatalf("readSpoolFile: %v", err)
	}
	if len(got) != len(recs) {
		t.Fatalf("read %d records, want %d", len(got), len(recs))
	}
	if got[0].CDR == nil || got[1].Live == nil || got[2].Dead == nil || got[3].Destroyed == nil ||
		got[3].Destroyed.UUID != recs[3].Destroyed.UUID || !got[3].Destroyed.At.Equal(now) ||
		got[4].Kept == nil || got[4].Kept.UUID != recs[4].Kept.UUID {
		t.Errorf("records read back as %+v", got)
	}
}

// TestPricerDeckChosenAtStart: the deck is the one in force when the call
// started, even if it was answered after the next deck took over; the
// rate within it is chosen at the answer (docs/pricing.md, rule 1).
func TestPricerDeckChosenAtStart(t *testing.T) {
	acc := uuid.NewString()
	newYear := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	deck := func(id string, from time.Time, perMinute int64) *rating.Deck {
		d, err := rating.NewDeck(rating.DeckInfo{ID: id, AccountID: acc, Name: id, Currency: "EUR", TimeZone: "UTC",
			Precision: 6, EffectiveFrom: from},
			time.UTC, []rating.Rate{{Prefix: "49", PerMinute: perMinute, FirstIncrement: 60, NextIncrement: 60, Days: rating.AllDays, Until: rating.Midnight}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	reg := &rating.Registry{}
	reg.Replace([]*rating.Deck{deck("old", time.Time{}, 100000), deck("new", newYear, 50000)}, reg.Mark())
	p := NewPricer(reg, nil)
	for _, tt := range []struct {
		name          string
		start, answer time.Time
		deck          string
		sell          int64
	}{
		{"started before, answered after the change", newYear.Add(-10 * time.Second), newYear.Add(5 * time.Second), "old", 100000},
		{"started after", newYear.Add(time.Second), newYear.Add(5 * time.Second), "new", 50000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &callbridge.CDR{UUID: uuid.NewString(), AccountID: acc, Callee: "4930123", StartAt: tt.start, AnswerAt: tt.answer, BillMS: 30000}
			if err := p.Price(context.Background(), c); err != nil {
				t.Fatal(err)
			}
			if c.SellDeckID != tt.deck || c.Sell != tt.sell {
				t.Errorf("got deck %s, sell %d; want %s, %d", c.SellDeckID, c.Sell, tt.deck, tt.sell)
			}
		})
	}
}
