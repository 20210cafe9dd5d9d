package callback_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"callbridge"
	"callbridge/callback"
	"callbridge/controller"
	"callbridge/esl"
	"callbridge/esl/esltest"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
	"callbridge/webhook"
)

// cbScript is the far-end behaviour of the callback tests (simulated
// milliseconds; the simulator runs cbSpeed times real time). Numbers not
// listed behave as esltest documents by their last three digits.
const cbScript = `{"rules":[
	{"prefix":"4915","outcome":"fail"},
	{"prefix":"4916","ring_ms":500,"outcome":"answer","talk_ms":0},
	{"prefix":"4914","ring_ms":500,"outcome":"answer","talk_ms":2000},
	{"prefix":"4913","ring_ms":600000,"outcome":"no_answer"},
	{"prefix":"4912","ring_ms":500,"outcome":"answer","talk_ms":30000},
	{"prefix":"4911","ring_ms":500,"outcome":"answer","talk_ms":0},
	{"prefix":"4910","early_media_ms":1000,"outcome":"answer","talk_ms":60000}
]}`

const cbSpeed = 20

// cbLease is the engines' Lease unless a test sets its own.
const cbLease = 3 * time.Second

// cbNodeGrace is the engines' NodeGrace: long, since the tests that need
// it to pass move the clock on.
const cbNodeGrace = time.Minute

// cbEnv is a controller with the callback routes and engine on a real
// database, driving a simulated FreeSWITCH node over TCP.
type cbEnv struct {
	t        *testing.T
	db       *postgres.DB
	store    *postgres.CallbackService
	webhooks *postgres.WebhookService
	fs       *esltest.Server
	pool     *esl.Pool
	engine   *callback.Engine
	api      *httptest.Server
	key      string
	account  string
	stop     context.CancelFunc
	done     chan struct{}
	// clock is the engines' time: tests move it on rather than wait.
	clock *testClock

	mu       sync.Mutex
	statuses map[string]int // status changes OnStatus heard: "status" or "failed/reason"
}

type cbOpts struct {
	owner          string
	callAuthorizer func(time.Duration) callbridge.CallAuthorizer
	noEngine       bool
	// store, when set, wraps the engine's store (to delay or observe it).
	store func(callback.Store) callback.Store
	// refusedRetry and queueWait set the engine's (0: its defaults).
	refusedRetry, queueWait time.Duration
	// gateways are the simulated node's sofia gateways; routes and
	// tracker the engine's carrier routing (nil: every leg through
	// "carrier").
	gateways []esltest.Gateway
	routes   callback.Router
	tracker  callback.GatewayTracker
	// onStatus, when set, hears every status the engine saves, before
	// the engine goes on.
	onStatus func(callbridge.CallbackStatus)
	// speed is the simulator's (0: cbSpeed).
	speed float64
}

func newCBEnv(t *testing.T, o cbOpts) *cbEnv {
	t.Helper()
	env := &cbEnv{t: t, db: pgtest.New(t), clock: newTestClock()}
	env.store = postgres.NewCallbackService(env.db)
	env.webhooks = postgres.NewWebhookService(env.db)
	ctx := context.Background()
	accounts := postgres.NewAccountService(env.db)
	acct := &callbridge.Account{Name: "crm", ServiceNumber: "4930100100"}
	key, err := accounts.CreateAccount(ctx, acct)
	if err != nil {
		t.Fatal(err)
	}
	env.key, env.account = key, acct.ID

	env.fs = esltest.NewUnstartedServer()
	script, err := esltest.ParseScript([]byte(cbScript))
	if err != nil {
		t.Fatal(err)
	}
	env.fs.Script, env.fs.Speed = script, cbSpeed
	if o.speed != 0 {
		env.fs.Speed = o.speed
	}
	env.fs.Gateways = o.gateways
	env.fs.Start()
	t.Cleanup(env.fs.Close)

	if !o.noEngine {
		env.startEngine(o)
	}
	srv := &controller.Server{Accounts: accounts, Callbacks: env.store, Webhooks: env.webhooks}
	if env.engine != nil {
		srv.CallbackEngine = env.engine
	}
	env.api = httptest.NewServer(srv.Handler())
	t.Cleanup(env.api.Close)
	return env
}

// newNode returns a client of the simulator, running until the test ends.
func (env *cbEnv) newNode(ctx context.Context, name string) *esl.Client {
	c := esl.NewClient(esl.Config{Name: name, Addr: env.fs.Addr(), Password: "ClueCon",
		MaxCPS: 500, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
	go c.Run(ctx)
	wait.For(env.t, "node connected", func() bool { return c.State() == esl.StateConnected })
	return c
}

// startEngine runs an engine with its own node client; stopEngine ends it.
func (env *cbEnv) startEngine(o cbOpts) *callback.Engine {
	env.t.Helper()
	if o.owner == "" {
		o.owner = "ctl-1"
	}
	ctx, cancel := context.WithCancel(context.Background())
	env.pool = esl.NewPool(env.newNode(ctx, "node1"))
	var store callback.Store = env.store
	if o.store != nil {
		store = o.store(store)
	}
	e, err := callback.NewEngine(store, env.pool, callback.Config{
		Owner: o.owner, Gateway: "carrier", Lease: cbLease, PollInterval: 20 * time.Millisecond,
		NodeGrace:      cbNodeGrace,
		Clock:          env.clock,
		RefusedRetry:   o.refusedRetry,
		QueueWait:      o.queueWait,
		Prompts:        map[string]string{"ringback": "/sounds/ringback.wav", "welcome": "/sounds/welcome.wav"},
		FailurePrompts: map[callbridge.FailReason]string{"": "/sounds/call-failed.wav"},
		LegWait:        2 * time.Second,
		CallAuthorizer: o.callAuthorizer,
		Routes:         o.routes,
		Gateways:       o.tracker,
		OnStatus: func(status callbridge.CallbackStatus, reason callbridge.FailReason) {
			if o.onStatus != nil {
				o.onStatus(status)
			}
			env.mu.Lock()
			defer env.mu.Unlock()
			if env.statuses == nil {
				env.statuses = map[string]int{}
			}
			k := string(status)
			if reason != "" {
				k += "/" + string(reason)
			}
			env.statuses[k]++
		},
	})
	if err != nil {
		env.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	env.engine, env.stop, env.done = e, cancel, done
	env.t.Cleanup(env.stopEngine)
	return e
}

func (env *cbEnv) stopEngine() {
	if env.stop != nil {
		env.stop()
		<-env.done
		env.stop = nil
	}
}

// do calls the API with the account's key.
func (env *cbEnv) do(method, path string, body string, header ...string) (int, http.Header, []byte) {
	env.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, env.api.URL+path, r)
	req.Header.Set("Authorization", "Bearer "+env.key)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := env.api.Client().Do(req)
	if err != nil {
		env.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw
}

// create posts a callback and returns its id.
func (env *cbEnv) create(body string) string {
	env.t.Helper()
	code, h, raw := env.do("POST", "/v1/callbacks", body)
	if code != http.StatusAccepted {
		env.t.Fatalf("POST /v1/callbacks: %d %s", code, raw)
	}
	var cb callbridge.Callback
	if err := json.Unmarshal(raw, &cb); err != nil || cb.ID == "" || cb.Status != callbridge.CallbackQueued {
		env.t.Fatalf("POST answer %s: %v", raw, err)
	}
	if h.Get("Location") != "/v1/callbacks/"+cb.ID {
		env.t.Errorf("Location %q", h.Get("Location"))
	}
	return cb.ID
}

func (env *cbEnv) get(id string) *callbridge.Callback {
	env.t.Helper()
	cb, err := env.store.Callback(context.Background(), env.account, id)
	if err != nil {
		env.t.Fatal(err)
	}
	return cb
}

// waitStatus waits until the callback reaches one of the statuses.
func (env *cbEnv) waitStatus(id string, want ...callbridge.CallbackStatus) *callbridge.Callback {
	env.t.Helper()
	var cb *callbridge.Callback
	wait.For(env.t, "callback "+id+" to reach "+statusList(want), func() bool {
		cb = env.get(id)
		for _, s := range want {
			if cb.Status == s {
				return true
			}
		}
		return false
	})
	return cb
}

// hangUpWhenBridged waits until the callback is bridged (or has ended)
// and hangs A up on the node, as a party that has finished talking: the
// far ends of the tests that need a completed call hold until then, so
// the bridge never races a far end's hangup on a loaded machine.
func (env *cbEnv) hangUpWhenBridged(id string) {
	env.t.Helper()
	cb := env.waitStatus(id, callbridge.CallbackBridged, callbridge.CallbackCompleted, callbridge.CallbackFailed)
	if cb.Status != callbridge.CallbackBridged {
		return
	}
	if err := env.fs.Hangup(env.leg(cb, "a").UUID, "NORMAL_CLEARING"); err != nil {
		env.t.Fatal(err)
	}
}

// waitEnded waits until the callback ended and both legs reported hangup.
func (env *cbEnv) waitEnded(id string) *callbridge.Callback {
	env.t.Helper()
	var cb *callbridge.Callback
	wait.For(env.t, "callback "+id+" to end", func() bool {
		cb = env.get(id)
		if !cb.Status.Terminal() {
			return false
		}
		for _, l := range cb.Legs {
			if l.HangupAt == nil {
				return false
			}
		}
		return true
	})
	return cb
}

func statusList(ss []callbridge.CallbackStatus) string {
	var out []string
	for _, s := range ss {
		out = append(out, string(s))
	}
	return strings.Join(out, "|")
}

// history returns the status entries of a callback's history.
func history(cb *callbridge.Callback) []string {
	var out []string
	for _, e := range cb.Events {
		if e.Type == callbridge.EventStatus {
			out = append(out, string(e.Status))
		}
	}
	return out
}

func (env *cbEnv) leg(cb *callbridge.Callback, name string) *callbridge.CallbackLeg {
	for _, l := range cb.Legs {
		if l.Leg == name && l.Attempt == cb.Attempt {
			return l
		}
	}
	return nil
}

// originates counts the originate commands the simulator received for n.
func (env *cbEnv) originates(n callbridge.Number) int {
	return env.commandsWith("originate ", "/"+string(n)+" ")
}

// legOriginates counts the originates of one leg of one callback.
func (env *cbEnv) legOriginates(id, leg string) int {
	return env.commandsWith("originate ", "callbridge_callback_id="+id+",callbridge_leg="+leg+",")
}

func (env *cbEnv) commandsWith(parts ...string) int {
	c := 0
	for _, cmd := range env.fs.Commands() {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(cmd, p)
		}
		if all {
			c++
		}
	}
	return c
}

func TestCallbackOutcomes(t *testing.T) {
	t.Parallel()
	env := newCBEnv(t, cbOpts{})
	full := strings.Join([]string{"queued", "calling_a", "a_answered", "calling_b", "bridged", "completed"}, " ")
	tests := []struct {
		name     string
		a, b     string
		extra    string
		status   callbridge.CallbackStatus
		reason   callbridge.FailReason
		history  string
		bCalled  bool
		bCause   string
		aCause   string
		failTone bool
	}{
		{name: "completed", a: "4912011111", b: "4912022222", status: "completed", history: full, bCalled: true, aCause: "NORMAL_CLEARING"},
		{name: "early media on A is not an answer", a: "4910011111", b: "4912022223", status: "completed", history: full, bCalled: true},
		{name: "a busy", a: "4917011486", b: "4917022222", status: "failed", reason: callbridge.ReasonABusy, aCause: "USER_BUSY",
			history: "queued calling_a failed"},
		{name: "a no answer", a: "4917011480", b: "4917022222", status: "failed", reason: callbridge.ReasonANoAnswer, aCause: "NO_ANSWER",
			extra: `,"ring_timeout_a":5`, history: "queued calling_a failed"},
		{name: "a rejected", a: "4917011603", b: "4917022222", status: "failed", reason: callbridge.ReasonARejected, aCause: "CALL_REJECTED",
			history: "queued calling_a failed"},
		{name: "a unallocated", a: "4917011404", b: "4917022222", status: "failed", reason: callbridge.ReasonARejected, aCause: "UNALLOCATED_NUMBER",
			history: "queued calling_a failed"},
		{name: "a unreachable", a: "4915011111", b: "4917022222", status: "failed", reason: callbridge.ReasonNodeUnavailable,
			aCause: "NORMAL_TEMPORARY_FAILURE", history: "queued calling_a failed"},
		{name: "b busy", a: "4916011111", b: "4917022486", status: "failed", reason: callbridge.ReasonBBusy, bCalled: true, bCause: "USER_BUSY",
			failTone: true, history: "queued calling_a a_answered calling_b failed"},
		{name: "b no answer", a: "4916011112", b: "4917022480", extra: `,"ring_timeout_b":5`, status: "failed", reason: callbridge.ReasonBNoAnswer,
			bCalled: true, bCause: "NO_ANSWER", failTone: true, history: "queued calling_a a_answered calling_b failed"},
		{name: "b rejected", a: "4916011113", b: "4917022603", status: "failed", reason: callbridge.ReasonBRejected, bCalled: true,
			bCause: "CALL_REJECTED", failTone: true, history: "queued calling_a a_answered calling_b failed"},
		{name: "a hangs up while b rings", a: "4914011111", b: "4913022222", status: "failed", reason: callbridge.ReasonAHangup,
			bCalled: true, history: "queued calling_a a_answered calling_b failed"},
		{name: "max duration", a: "4916011114", b: "4916022222", extra: `,"max_duration":10`, status: "failed",
			reason: callbridge.ReasonMaxDuration, bCalled: true,
			history: "queued calling_a a_answered calling_b bridged failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := env.create(`{"a":"` + tt.a + `","b":"` + tt.b + `","prompt":"ringback"` + tt.extra + `}`)
			cb := env.waitEnded(id)
			if cb.Status != tt.status || cb.Reason != tt.reason {
				for _, e := range cb.Events {
					t.Logf("  %+v", *e)
				}
				if a := env.leg(cb, "a"); a != nil {
					for _, c := range env.fs.Commands() {
						if strings.Contains(c, a.UUID) {
							t.Logf("  command %s", c)
						}
					}
				}
				t.Fatalf("got %s/%s, want %s/%s", cb.Status, cb.Reason, tt.status, tt.reason)
			}
			if got := strings.Join(history(cb), " "); got != tt.history {
				t.Errorf("history %q, want %q", got, tt.history)
			}
			a, b := env.leg(cb, "a"), env.leg(cb, "b")
			if a == nil || a.Number != callbridge.Number(tt.a) || a.Node != "node1" || a.CallerID != "4930100100" {
				t.Fatalf("leg a: %+v", a)
			}
			if tt.aCause != "" && a.HangupCause != tt.aCause {
				t.Errorf("leg a cause %q, want %q", a.HangupCause, tt.aCause)
			}
			if (b != nil) != tt.bCalled || (env.legOriginates(id, "b") > 0) != tt.bCalled {
				t.Fatalf("b called: leg %+v, %d originates; want %v", b, env.legOriginates(id, "b"), tt.bCalled)
			}
			if b != nil {
				if b.CallerID != callbridge.Number(tt.a) {
					t.Errorf("b sees %q, want A's number", b.CallerID)
				}
				if tt.bCause != "" && b.HangupCause != tt.bCause {
					t.Errorf("leg b cause %q, want %q", b.HangupCause, tt.bCause)
				}
				if env.commandsWith("uuid_broadcast "+a.UUID, "/sounds/ringback.wav") != 1 {
					t.Errorf("ringback not played to A")
				}
			}
			if got := env.commandsWith("uuid_broadcast "+a.UUID, "/sounds/call-failed.wav") == 1; got != tt.failTone {
				t.Errorf("failure prompt played: %v, want %v", got, tt.failTone)
			}
			// The prompt itself ends A's call: FreeSWITCH hangs A up once
			// it has played (the simulator plays at once).
			if tt.failTone && (env.commandsWith("uuid_broadcast "+a.UUID+" playback!NORMAL_CLEARING::/sounds/call-failed.wav aleg") != 1 || a.HangupCause != "NORMAL_CLEARING") {
				t.Errorf("A not hung up by the failure prompt: cause %q", a.HangupCause)
			}
			if tt.reason == callbridge.ReasonMaxDuration && a.HangupCause != "ALLOTTED_TIMEOUT" && b.HangupCause != "ALLOTTED_TIMEOUT" {
				t.Errorf("no leg ended by sched_hangup: %q, %q", a.HangupCause, b.HangupCause)
			}
			if tt.status == callbridge.CallbackCompleted {
				if a.AnsweredAt == nil || b.AnsweredAt == nil || a.RingingAt == nil {
					t.Fatalf("legs not answered: %+v %+v", a, b)
				}
				if a.AnsweredAt.Sub(*a.RingingAt) < 500*time.Millisecond {
					t.Errorf("A counted answered %v after ringing (early media is not an answer)", a.AnsweredAt.Sub(*a.RingingAt))
				}
				if env.commandsWith("uuid_bridge "+a.UUID+" "+b.UUID) != 1 {
					t.Errorf("no uuid_bridge")
				}
				if env.commandsWith("sched_hangup +3600 "+a.UUID+" ALLOTTED_TIMEOUT") != 1 || env.commandsWith("sched_hangup +3600 "+b.UUID+" ALLOTTED_TIMEOUT") != 1 {
					t.Errorf("max duration not scheduled on both legs")
				}
				for _, cmd := range env.fs.Commands() {
					if strings.Contains(cmd, "origination_uuid="+a.UUID) &&
						!strings.Contains(cmd, "callbridge_callback_id="+id+",callbridge_leg=a,callbridge_account="+env.account) {
						t.Errorf("A leg lacks callback variables: %s", cmd)
					}
				}
			}
		})
	}

	// OnStatus (the metrics hook) heard every status change of the
	// histories but the first, queued, which the API made.
	want := map[string]int{}
	for _, tt := range tests {
		for _, st := range strings.Fields(tt.history)[1:] {
			if st == "failed" {
				st += "/" + string(tt.reason)
			}
			want[st]++
		}
	}
	env.mu.Lock()
	defer env.mu.Unlock()
	if !maps.Equal(env.statuses, want) {
		t.Errorf("OnStatus heard %v, want %v", env.statuses, want)
	}
}

// TestCallbackCallAuthorizer: each leg is authorised on its own channel
// before A is called; a prepaid leg's grant travels with its originate as
// FreeSWITCH's cap, and the reservation of a leg never answered is
// released.
func TestCallbackCallAuthorizer(t *testing.T) {
	t.Parallel()
	az := &callAuthorizer{calls: map[callbridge.Number][]string{}}
	env := newCBEnv(t, cbOpts{callAuthorizer: func(limit time.Duration) callbridge.CallAuthorizer {
		return &callAuthorizer{limit: limit, shared: az}
	}})

	poor := env.create(`{"a":"4917099999","b":"4917022222"}`)
	if cb := env.waitEnded(poor); cb.Reason != callbridge.ReasonInsufficientFunds || env.originates("4917099999") != 0 {
		t.Errorf("poor: got %s/%s, %d originates; want insufficient_funds, none", cb.Status, cb.Reason, env.originates("4917099999"))
	}

	capped := env.create(`{"a":"4916011111","b":"4916022222"}`)
	cb := env.waitEnded(capped)
	if cb.Reason != callbridge.ReasonMaxDuration {
		t.Errorf("capped: got %s/%s, want max_duration at B's 10 s grant", cb.Status, cb.Reason)
	}
	b := env.leg(cb, "b")
	if b == nil || b.HangupCause != "ALLOTTED_TIMEOUT" || env.commandsWith("origination_uuid="+b.UUID, "execute_on_answer='sched_hangup +10 ALLOTTED_TIMEOUT'") != 1 {
		t.Errorf("B not capped at 10 s by its originate: %+v", b)
	}
	if slices.Contains(az.releasedIDs(), b.UUID) {
		t.Errorf("B's reservation released though B was answered")
	}

	busy := env.create(`{"a":"4916011112","b":"4917022486"}`)
	cb = env.waitStatus(busy, callbridge.CallbackFailed)
	if cb.Reason != callbridge.ReasonBBusy {
		t.Fatalf("busy: got %s/%s", cb.Status, cb.Reason)
	}
	b = env.leg(cb, "b")
	wait.For(t, "B's reservation released", func() bool { return slices.Contains(az.releasedIDs(), b.UUID) })
	if ids := az.callIDs("4917022486"); len(ids) != 1 || ids[0] != b.UUID {
		t.Errorf("B authorised as %v, placed as %s: want its channel's uuid", ids, b.UUID)
	}
}

// callAuthorizer grants A what it asks and B at most 10 s, both prepaid,
// and refuses 4917099999; it records the calls authorised and released.
type callAuthorizer struct {
	limit  time.Duration
	shared *callAuthorizer

	mu       sync.Mutex
	calls    map[callbridge.Number][]string
	released []string
}

var _ callbridge.CallAuthorizer = (*callAuthorizer)(nil)

func (a *callAuthorizer) AuthorizeCall(_ context.Context, _, callID string, number callbridge.Number) (*callbridge.Grant, error) {
	if number == "4917099999" {
		return nil, callbridge.Errorf(callbridge.ENOFUNDS, "balance too low")
	}
	a.shared.mu.Lock()
	a.shared.calls[number] = append(a.shared.calls[number], callID)
	a.shared.mu.Unlock()
	grant := a.limit
	if strings.HasPrefix(string(number), "491602") || strings.HasPrefix(string(number), "491702") {
		grant = min(grant, 10*time.Second)
	}
	return &callbridge.Grant{Prepaid: true, MaxMS: grant.Milliseconds(), Reserved: grant.Milliseconds()}, nil
}

func (a *callAuthorizer) AuthorizeBridge(context.Context, string, string, callbridge.Number, callbridge.Number) (*callbridge.Grant, error) {
	return nil, callbridge.Errorf(callbridge.EINTERNAL, "not used by callbacks")
}

func (a *callAuthorizer) ReleaseCall(_ context.Context, callID string) error {
	a.shared.mu.Lock()
	defer a.shared.mu.Unlock()
	a.shared.released = append(a.shared.released, callID)
	return nil
}

func (a *callAuthorizer) releasedIDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.released)
}

func (a *callAuthorizer) callIDs(n callbridge.Number) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls[n])
}

func TestCallbackRetryPolicy(t *testing.T) {
	t.Parallel()
	env := newCBEnv(t, cbOpts{})
	if _, err := env.db.Exec(`UPDATE accounts SET callback_retry_attempts = 2, callback_retry_delay_ms = 0 WHERE id = $1`, env.account); err != nil {
		t.Fatal(err)
	}
	id := env.create(`{"a":"4917011486","b":"4917022222"}`)
	cb := env.waitEnded(id)
	if cb.Reason != callbridge.ReasonABusy || cb.Attempt != 3 || env.originates("4917011486") != 3 {
		t.Fatalf("got %s attempt %d, %d originates", cb.Reason, cb.Attempt, env.originates("4917011486"))
	}
	retries := 0
	for _, e := range cb.Events {
		if e.Type == callbridge.EventRetry {
			retries++
		}
	}
	if retries != 2 || len(cb.Legs) != 3 {
		t.Errorf("retries %d, legs %d; want 2 and 3", retries, len(cb.Legs))
	}
}

func TestCallbackCancel(t *testing.T) {
	t.Parallel()
	env := newCBEnv(t, cbOpts{})
	tests := []struct {
		name  string
		body  string
		stage callbridge.CallbackStatus
	}{
		{"calling a", `{"a":"4913011111","b":"4917022222","ring_timeout_a":120}`, callbridge.CallbackCallingA},
		{"calling b", `{"a":"4916011111","b":"4913022222","ring_timeout_b":120}`, callbridge.CallbackCallingB},
		{"bridged", `{"a":"4916011112","b":"4916022222"}`, callbridge.CallbackBridged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := env.create(tt.body)
			env.waitStatus(id, tt.stage)
			if tt.stage == callbridge.CallbackCallingA {
				wait.For(t, "A ringing", func() bool { l := env.leg(env.get(id), "a"); return l != nil && l.RingingAt != nil })
			}
			code, _, raw := env.do("DELETE", "/v1/callbacks/"+id, "")
			if code != http.StatusOK {
				t.Fatalf("DELETE: %d %s", code, raw)
			}
			cb := env.waitEnded(id)
			if cb.Status != callbridge.CallbackFailed || cb.Reason != callbridge.ReasonCancelled {
				t.Fatalf("got %s/%s", cb.Status, cb.Reason)
			}
			for _, ch := range env.fs.Channels() {
				if ch.Variables[callbridge.VarCallbackID] == id {
					t.Errorf("leg %s still up", ch.UUID)
				}
			}
			if code, _, _ := env.do("DELETE", "/v1/callbacks/"+id, ""); code != http.StatusOK {
				t.Errorf("second DELETE: %d", code)
			}
		})
	}
}

func TestCallbackCancelQueued(t *testing.T) {
	t.Parallel()
	env := newCBEnv(t, cbOpts{noEngine: true})
	id := env.create(`{"a":"4917011111","b":"4917022222"}`)
	code, _, raw := env.do("DELETE", "/v1/callbacks/"+id, "")
	var cb callbridge.Callback
	json.Unmarshal(raw, &cb)
	if code != http.StatusOK || cb.Status != callbridge.CallbackFailed || cb.Reason != callbridge.ReasonCancelled {
		t.Fatalf("DELETE: %d %s", code, raw)
	}
	passes := &claimCounter{}
	env.startEngine(cbOpts{store: func(s callback.Store) callback.Store { passes.Store = s; return passes }})
	// A callback is dialled only once a claim pass took it.
	wait.For(t, "two claim passes", func() bool { return passes.n.Load() >= 2 })
	if n := env.originates("4917011111"); n != 0 {
		t.Errorf("cancelled callback dialled %d times", n)
	}
}

// claimCounter counts the claim passes that ended.
type claimCounter struct {
	callback.Store
	n atomic.Int64
}

func (c *claimCounter) ClaimCallbacks(ctx context.Context, owner, node string, lease time.Duration, n int) ([]*callbridge.Callback, error) {
	defer c.n.Add(1)
	return c.Store.ClaimCallbacks(ctx, owner, node, lease, n)
}

func TestCallbackRestartMidCall(t *testing.T) {
	t.Parallel()
	env := newCBEnv(t, cbOpts{owner: "ctl-1"})
	live := env.create(`{"a":"4916011111","b":"4916022222"}`)
	vanished := env.create(`{"a":"4916011112","b":"4916022223"}`)
	env.waitStatus(live, callbridge.CallbackBridged)
	env.waitStatus(vanished, callbridge.CallbackBridged)
	env.stopEngine()

	// While no controller watches, one call ends on the node.
	a := env.leg(env.get(vanished), "a")
	if err := env.fs.Hangup(a.UUID, "NORMAL_CLEARING"); err != nil {
		t.Fatal(err)
	}
	// ctl-1's leases run out: the database's clock is theirs, so this
	// moves it on for them rather than waiting.
	if _, err := env.db.Exec(`UPDATE callbacks SET lease_until = now() - interval '1 second' WHERE owner = 'ctl-1' AND lease_until IS NOT NULL`); err != nil {
		t.Fatal(err)
	}
	env.startEngine(cbOpts{owner: "ctl-2"})

	cb := env.waitEnded(vanished)
	if cb.Status != callbridge.CallbackCompleted {
		t.Errorf("vanished: got %s/%s", cb.Status, cb.Reason)
	}
	wait.For(t, "adoption of the live call", func() bool {
		for _, e := range env.get(live).Events {
			if e.Type == callbridge.EventReconciled {
				return true
			}
		}
		return false
	})
	if got := env.get(live).Status; got != callbridge.CallbackBridged {
		t.Fatalf("live call after restart: %s", got)
	}
	b := env.leg(env.get(live), "b")
	if err := env.fs.Hangup(b.UUID, "NORMAL_CLEARING"); err != nil {
		t.Fatal(err)
	}
	cb = env.waitEnded(live)
	if cb.Status != callbridge.CallbackCompleted {
		t.Errorf("live: got %s/%s", cb.Status, cb.Reason)
	}
}

func TestCallbackNodeDrops(t *testing.T) {
	t.Parallel()
	t.Run("reconnects", func(t *testing.T) {
		env := newCBEnv(t, cbOpts{})
		id := env.create(`{"a":"4916011111","b":"4916022222"}`)
		env.waitStatus(id, callbridge.CallbackBridged)
		env.fs.DropConnections()
		wait.For(t, "reconciliation", func() bool {
			for _, e := range env.get(id).Events {
				if e.Type == callbridge.EventReconciled {
					return true
				}
			}
			return false
		})
		a := env.leg(env.get(id), "a")
		if err := env.fs.Hangup(a.UUID, "NORMAL_CLEARING"); err != nil {
			t.Fatal(err)
		}
		if cb := env.waitEnded(id); cb.Status != callbridge.CallbackCompleted {
			t.Errorf("got %s/%s", cb.Status, cb.Reason)
		}
	})
	t.Run("gone", func(t *testing.T) {
		env := newCBEnv(t, cbOpts{})
		id := env.create(`{"a":"4916011111","b":"4913022222","ring_timeout_b":120}`)
		env.waitStatus(id, callbridge.CallbackCallingB)
		env.fs.Close()
		wait.For(t, "node_lost in the history", func() bool {
			return slices.ContainsFunc(env.get(id).Events, func(e *callbridge.CallbackEvent) bool { return e.Type == callbridge.EventNodeLost })
		})
		// The callback waits out NodeGrace for its node: still calling B.
		if cb := env.get(id); cb.Status != callbridge.CallbackCallingB {
			t.Fatalf("got %s/%s before NodeGrace passed, want calling_b", cb.Status, cb.Reason)
		}
		env.clock.Advance(cbNodeGrace)
		cb := env.waitStatus(id, callbridge.CallbackFailed)
		if cb.Reason != callbridge.ReasonNodeUnavailable {
			t.Errorf("got %s", cb.Reason)
		}
	})
}

func TestCallbackTwoControllers(t *testing.T) {
	t.Parallel()
	env := newCBEnv(t, cbOpts{owner: "ctl-1"})
	// A second controller: its own engine and node connection, one queue.
	ctx, cancel := context.WithCancel(context.Background())
	pool2 := esl.NewPool(env.newNode(ctx, "node1"))
	e2, err := callback.NewEngine(env.store, pool2, callback.Config{Owner: "ctl-2", Gateway: "carrier", PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { e2.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	const n = 30
	var ids []string
	for i := 0; i < n; i++ {
		a := callbridge.Number("49110100" + string(rune('1'+i/10)) + string(rune('0'+i%10)))
		ids = append(ids, env.create(`{"a":"`+string(a)+`","b":"4916022222"}`))
	}
	owners := map[string]int{}
	for _, id := range ids {
		env.hangUpWhenBridged(id)
		cb := env.waitEnded(id)
		if cb.Status != callbridge.CallbackCompleted {
			t.Errorf("%s: %s/%s", id, cb.Status, cb.Reason)
			for _, e := range cb.Events {
				t.Logf("  %+v", *e)
			}
		}
		for _, e := range cb.Events {
			if e.Status == callbridge.CallbackCallingA {
				owners[e.Detail]++
			}
		}
		if got := env.originates(cb.A); got != 1 {
			t.Errorf("A of %s originated %d times", id, got)
		}
	}
	if got := env.commandsWith("originate ", "callbridge_leg=b,"); got != n {
		t.Errorf("B originated %d times, want %d", got, n)
	}
	t.Logf("claims per controller: %v", owners)
}

// TestWebhookDeliveryRetry delivers the webhooks of a callback the engine
// drives, one per status it saves, in order and signed, through a
// receiver that fails twice. It lives with the engine rather than in
// webhook/ because the statuses and the failure reason it checks are the
// engine's (webhook/ tests the deliverer on entries of its own).
func TestWebhookDeliveryRetry(t *testing.T) {
	t.Parallel()
	env := newCBEnv(t, cbOpts{})
	secret := []byte("s3cret")
	var mu sync.Mutex
	var got []map[string]any
	fails := 2
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !callbridge.VerifyWebhook(secret, body, r.Header.Get(callbridge.SignatureHeader)) {
			t.Errorf("bad signature %q", r.Header.Get(callbridge.SignatureHeader))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var p map[string]any
		json.Unmarshal(body, &p)
		got = append(got, p)
	}))
	defer recv.Close()
	outcomes := map[string]int{}
	d := webhook.NewDeliverer(env.webhooks, webhook.Config{Secret: secret, PollInterval: 10 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, AllowPrivate: true,
		OnOutcome: func(o string) { mu.Lock(); defer mu.Unlock(); outcomes[o]++ }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	id := env.create(`{"a":"4916011111","b":"4917022486","webhook_url":"` + recv.URL + `/hook","metadata":{"ticket":7}}`)
	env.waitEnded(id)
	want := []string{"queued", "calling_a", "a_answered", "calling_b", "failed"}
	wait.For(t, "all webhooks", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == len(want) })
	mu.Lock()
	for i, p := range got {
		if p["status"] != want[i] || p["callback_id"] != id {
			t.Errorf("webhook %d: %v, want status %s", i, p, want[i])
		}
	}
	if got[len(got)-1]["reason"] != "b_busy" || got[0]["metadata"].(map[string]any)["ticket"] != float64(7) {
		t.Errorf("last webhook %v, first %v", got[len(got)-1], got[0])
	}
	if outcomes[webhook.Retry] != 2 || outcomes[webhook.Delivered] != len(want) || outcomes[webhook.Dead] != 0 {
		t.Errorf("OnOutcome heard %v, want 2 retries and %d deliveries", outcomes, len(want))
	}
	mu.Unlock()
	code, _, raw := env.do("GET", "/v1/webhooks?callback_id="+id, "")
	var list struct{ Webhooks []*callbridge.Webhook }
	json.Unmarshal(raw, &list)
	if code != 200 || len(list.Webhooks) != len(want) || list.Webhooks[len(want)-1].Attempts != 3 {
		t.Errorf("GET /v1/webhooks: %d %s", code, raw)
	}
}

// BenchmarkCallbacksEndToEnd measures completed callbacks per second with
// the database in the loop: stored, claimed, both legs placed on the
// simulator (running 200× real time, so a call talks 300 ms), bridged,
// ended by B's far end, every
// transition persisted. The pool allows 50 calls per second, so the rate
// should sit at that pacing, not below it.
func BenchmarkCallbacksEndToEnd(b *testing.B) {
	db := pgtest.New(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	accounts := postgres.NewAccountService(db)
	acct := &callbridge.Account{Name: "bench", ServiceNumber: "4930100100"}
	if _, err := accounts.CreateAccount(ctx, acct); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE accounts SET callback_queue_limit = 1000000 WHERE id = $1`, acct.ID); err != nil {
		b.Fatal(err)
	}
	fs := esltest.NewUnstartedServer()
	fs.Script, _ = esltest.ParseScript([]byte(`{"rules":[{"prefix":"4917","ring_ms":1000,"outcome":"answer","talk_ms":0},
		{"prefix":"4918","ring_ms":1000,"outcome":"answer","talk_ms":60000}]}`))
	fs.Speed = 200
	fs.Start()
	defer fs.Close()
	const cps = 50
	c := esl.NewClient(esl.Config{Name: "node1", Addr: fs.Addr(), Password: "ClueCon", MaxCPS: cps, MaxCalls: 1000})
	go c.Run(ctx)
	wait.For(b, "node connected", func() bool { return c.State() == esl.StateConnected })
	store := postgres.NewCallbackService(db)
	e, err := callback.NewEngine(store, esl.NewPool(c), callback.Config{Owner: "bench", Gateway: "carrier", PollInterval: 10 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	n := max(b.N, 2*cps)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < n; i++ {
		r := &callbridge.CallbackRequest{AccountID: acct.ID, A: callbridge.Number(fmt.Sprintf("4917%07d", i)), B: "4918999999",
			RingTimeoutA: 30, RingTimeoutB: 30, MaxDuration: 3600, Prompt: "none"}
		if _, _, err := store.CreateCallback(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	e.Wake()
	// Callbacks that stop ending fail the run instead of hanging it; a
	// slow machine only makes it longer.
	watched, advanced := wait.Progress(b, "callbacks ending")
	for last := 0; ; {
		var ended, failed int
		if err := db.QueryRow(`SELECT count(*) FILTER (WHERE status IN ('completed', 'failed')), count(*) FILTER (WHERE status = 'failed')
			FROM callbacks`).Scan(&ended, &failed); err != nil {
			b.Fatal(err)
		}
		if failed > 0 {
			var reasons []string
			pgtest.Select(context.Background(), db, &reasons, `SELECT DISTINCT e.type || ': ' || e.detail FROM callbacks c
				JOIN callback_events e ON e.callback_id = c.id
				WHERE c.status = 'failed' AND e.type IN ('status', 'command_error', 'leg_hangup')`)
			b.Fatalf("%d callbacks failed: %v", failed, reasons)
		}
		if ended == n {
			break
		}
		if ended > last {
			last = ended
			advanced()
		}
		select {
		case <-watched.Done():
			b.Fatalf("%d of %d callbacks ended", ended, n)
		case <-time.After(10 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "completed/s")
	b.ReportMetric(cps, "cps-limit")
}

// A callback claimed by a controller that stopped before dialling (no
// node, no legs) is placed by the controller that adopts it: A was never
// called.
func TestCallbackAdoptedNeverDialled(t *testing.T) {
	t.Parallel()
	env := newCBEnv(t, cbOpts{noEngine: true})
	id := env.create(`{"a":"4916011111","b":"4916022222"}`)
	cbs, err := env.store.ClaimCallbacks(context.Background(), "ctl-1", "", 50*time.Millisecond, 1)
	if err != nil || len(cbs) != 1 || cbs[0].ID != id {
		t.Fatalf("claim: %v %v", cbs, err)
	}
	env.startEngine(cbOpts{owner: "ctl-2"})
	env.hangUpWhenBridged(id)
	got := env.waitEnded(id)
	if got.Status != callbridge.CallbackCompleted {
		t.Errorf("got %s/%s, want completed", got.Status, got.Reason)
	}
	if n := env.legOriginates(id, "a"); n != 1 {
		t.Errorf("A originated %d times, want once", n)
	}
}

// slowClaimStore holds each claim, after its transaction, until an
// adoption pass that started after it has ended: the window in which the
// claim is in the database but not yet a run of the engine, which a busy
// database widens. It records what the adoption passes returned. (The
// passes run one after another.) It moves the engine's clock on to the
// next pass rather than waiting for it.
type slowClaimStore struct {
	callback.Store
	mu      sync.Mutex
	clock   *testClock
	started int
	passes  int
	passed  chan struct{} // closed and replaced at the end of every pass
	windows int           // claims held while a whole pass ran
	adopted []string
}

func (s *slowClaimStore) ClaimCallbacks(ctx context.Context, owner, node string, lease time.Duration, n int) ([]*callbridge.Callback, error) {
	cbs, err := s.Store.ClaimCallbacks(ctx, owner, node, lease, n)
	if len(cbs) == 0 || err != nil {
		return cbs, err
	}
	s.mu.Lock()
	until, clock := s.started+1, s.clock
	s.mu.Unlock()
	clock.Advance(cbLease / 3) // the leases loop's wait: renewal, then an adoption pass
	// The passes go on every cbLease/3 of real time too, so the one
	// waited for comes unless the engine stops; the bound only ends a
	// test that is failing (windows stays 0).
	limit := time.NewTimer(wait.Limit)
	defer limit.Stop()
	for {
		s.mu.Lock()
		if s.passes >= until {
			s.windows++
			s.mu.Unlock()
			return cbs, nil
		}
		passed := s.pass()
		s.mu.Unlock()
		select {
		case <-passed:
		case <-ctx.Done():
			return cbs, nil
		case <-limit.C:
			return cbs, nil
		}
	}
}

// pass returns the channel closed at the end of the next pass; s.mu is
// held.
func (s *slowClaimStore) pass() chan struct{} {
	if s.passed == nil {
		s.passed = make(chan struct{})
	}
	return s.passed
}

func (s *slowClaimStore) AdoptCallbacks(ctx context.Context, owner string, lease time.Duration, n int, own bool, held []string) ([]*callbridge.Callback, error) {
	s.mu.Lock()
	s.started++
	s.mu.Unlock()
	cbs, err := s.Store.AdoptCallbacks(ctx, owner, lease, n, own, held)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.passes++
	close(s.pass())
	s.passed = nil
	for _, cb := range cbs {
		s.adopted = append(s.adopted, cb.ID)
	}
	return cbs, err
}

// TestCallbackNoSelfAdoption: the periodic adoption pass runs while a
// claim of this very controller is committed but not yet started (and
// then while its calls are live); it takes none of them, so no callback
// is reconciled or dialled twice. Before the fix every pass took this
// owner's claims, and this window dialled A a second time.
func TestCallbackNoSelfAdoption(t *testing.T) {
	t.Parallel()
	slow := &slowClaimStore{}
	env := newCBEnv(t, cbOpts{store: func(s callback.Store) callback.Store {
		slow.Store = s
		return slow
	}})
	slow.mu.Lock()
	slow.clock = env.clock
	slow.mu.Unlock()
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, env.create(fmt.Sprintf(`{"a":"491601111%d","b":"491202222%d"}`, i, i)))
	}
	for _, id := range ids {
		cb := env.waitEnded(id)
		if cb.Status != callbridge.CallbackCompleted {
			t.Errorf("%s: %s/%s, want completed", id, cb.Status, cb.Reason)
		}
		for _, e := range cb.Events {
			if e.Type == callbridge.EventReconciled {
				t.Errorf("%s: history has %q (%s) though its controller never stopped", id, e.Type, e.Detail)
			}
		}
		if n := env.legOriginates(id, "a"); n != 1 {
			t.Errorf("%s: A originated %d times, want once", id, n)
		}
	}
	slow.mu.Lock()
	defer slow.mu.Unlock()
	if slow.windows < 1 {
		t.Errorf("no adoption pass ran while a claim was held (%d passes)", slow.passes)
	}
	if len(slow.adopted) > 0 {
		t.Errorf("the controller adopted its own callbacks %v", slow.adopted)
	}
}
