package controller

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"callbridge"
	"callbridge/billing"
	"callbridge/callback"
	"callbridge/cdr"
	"callbridge/dialplan"
	"callbridge/esl"
	"callbridge/esl/esltest"
	"callbridge/internal/wait"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
	"callbridge/privacy"
	"callbridge/rating"

	"github.com/gin-gonic/gin"
)

// ppScript keeps every mobile far end (49 17...) up once answered, so only
// FreeSWITCH's scheduled hangups (max_duration, prepaid caps) end calls.
const ppScript = `{"rules":[{"prefix":"4917","ring_ms":500,"outcome":"answer","talk_ms":0}]}`

// ppIncrement is the price of one billing increment of ppDeck: 6 s at
// 0.60 a minute.
const ppIncrement = 60_000

// ppEnv is a prepaid account on a real database, a simulated FreeSWITCH
// node and the CDR pipeline that settles reservations and debits the
// balance.
type ppEnv struct {
	t        *testing.T
	db       *postgres.DB
	accounts *postgres.AccountService
	billing  *postgres.BillingStore
	auth     *billing.Authorizer
	fs       *esltest.Server
	account  string
	key      string
	node     *esl.Client
}

// ppDeck prices mobile numbers (4917) at 0.60 a minute in 6 s increments
// and charges every answered second; other numbers are unrated.
func ppDeck(t testing.TB, account string) *rating.Deck {
	t.Helper()
	d, err := rating.NewDeck(rating.DeckInfo{ID: "sell-prepaid", AccountID: account, Name: "prepaid", Currency: "EUR", TimeZone: "UTC",
		Precision: 6, Version: 1, ShortMS: 1},
		time.UTC, []rating.Rate{{Prefix: "4917", PerMinute: 600_000, FirstIncrement: 6, NextIncrement: 6, Days: rating.AllDays, Until: rating.Midnight}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// ppDecks is a registry holding ppDeck, for the pricer and the
// authorizer.
func ppDecks(d *rating.Deck) *rating.Registry {
	reg := &rating.Registry{}
	reg.Replace([]*rating.Deck{d}, reg.Mark())
	return reg
}

func newPPEnv(t *testing.T, dialplanURL string) *ppEnv {
	t.Helper()
	env := &ppEnv{t: t, db: pgtest.New(t)}
	ctx := context.Background()
	env.accounts = postgres.NewAccountService(env.db)
	acct := &callbridge.Account{Name: "prepaid", ServiceNumber: "4930100100", Prepaid: true, Currency: "EUR"}
	key, err := env.accounts.CreateAccount(ctx, acct)
	if err != nil {
		t.Fatal(err)
	}
	env.account, env.key = acct.ID, key
	env.billing = postgres.NewBillingStore(env.db, time.UTC, "test")
	decks := ppDecks(ppDeck(t, acct.ID))
	env.auth = &billing.Authorizer{Store: env.billing, Decks: billing.RegistryDecks(decks)}

	env.fs = esltest.NewUnstartedServer()
	script, err := esltest.ParseScript([]byte(ppScript))
	if err != nil {
		t.Fatal(err)
	}
	env.fs.Script, env.fs.Speed = script, 20
	env.fs.DialplanURL, env.fs.DialplanUser, env.fs.DialplanPassword = dialplanURL, dpUser, dpPass
	env.fs.Start()
	t.Cleanup(env.fs.Close)

	cdrStore := postgres.NewCDRStore(env.db)
	if _, err := cdrStore.EnsurePartitions(ctx, time.Now(), 1); err != nil {
		t.Fatal(err)
	}
	p, err := cdr.NewPipeline(cdr.Config{Store: cdrStore, Pricer: cdr.NewPricer(decks, nil), SpoolDir: t.TempDir(),
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	env.node = esl.NewClient(esl.Config{Name: "node1", Addr: env.fs.Addr(), Password: "ClueCon",
		MaxCPS: 500, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); env.node.Run(runCtx) }()
	go func() { defer wg.Done(); p.Run(runCtx, env.node) }()
	t.Cleanup(func() { stop(); wg.Wait() })
	wait.For(t, "node connected and subscribed", func() bool {
		s := env.node.Stats()
		return s.State == esl.StateConnected && len(s.QueueDepths) > 0
	})
	return env
}

func (env *ppEnv) topup(amount int64) {
	env.t.Helper()
	if _, err := env.billing.Topup(context.Background(), env.account, amount, ""); err != nil {
		env.t.Fatal(err)
	}
}

func (env *ppEnv) balance() *callbridge.Balance {
	env.t.Helper()
	b, err := env.billing.Balance(context.Background(), env.account)
	if err != nil {
		env.t.Fatal(err)
	}
	return b
}

// settled waits until no reservation of the account is left: every
// answered leg's CDR is stored and every other leg released its own.
func (env *ppEnv) settled() {
	env.t.Helper()
	wait.For(env.t, "reservations settled", func() bool {
		var n int
		if err := env.db.QueryRowContext(context.Background(), `SELECT count(*) FROM reservations WHERE account_id = $1`, env.account).Scan(&n); err != nil {
			env.t.Fatal(err)
		}
		return n == 0
	})
}

// answeredLegs counts the account's answered CDRs.
func (env *ppEnv) answeredLegs() int64 {
	env.t.Helper()
	var n int64
	if err := env.db.QueryRowContext(context.Background(), `SELECT count(*) FROM cdrs WHERE account_id = $1 AND answer_at IS NOT NULL`, env.account).Scan(&n); err != nil {
		env.t.Fatal(err)
	}
	return n
}

func TestPrepaidCallbacksStopWhenTheBalanceRunsOut(t *testing.T) {
	t.Parallel()
	env := newPPEnv(t, "")
	env.topup(2_000_000) // 2.00: 200 s of leg time at 0.60 a minute

	store := postgres.NewCallbackService(env.db)
	ctx, cancel := context.WithCancel(context.Background())
	engine, err := callback.NewEngine(store, esl.NewPool(env.node), callback.Config{
		Owner: "ctl-prepaid", Gateway: "carrier", Lease: 3 * time.Second, PollInterval: 20 * time.Millisecond,
		NodeGrace: time.Second, LegWait: 5 * time.Second,
		CallAuthorizer: func(limit time.Duration) callbridge.CallAuthorizer {
			a := *env.auth
			a.MaxCall = limit
			return &a
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { engine.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	api := httptest.NewServer((&Server{Accounts: env.accounts, Callbacks: store, Webhooks: postgres.NewWebhookService(env.db), CallbackEngine: engine}).Handler())
	t.Cleanup(api.Close)

	create := func() string {
		body := `{"a":"4917011111","b":"4917022222","max_duration":20,"ring_timeout_b":10}`
		req, _ := http.NewRequest("POST", api.URL+"/v1/callbacks", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+env.key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var cb callbridge.Callback
		if err := json.NewDecoder(resp.Body).Decode(&cb); err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST /v1/callbacks: %d %v", resp.StatusCode, err)
		}
		return cb.ID
	}
	ended := func(id string) *callbridge.Callback {
		var cb *callbridge.Callback
		wait.For(t, "callback "+id+" to end", func() bool {
			var err error
			if cb, err = store.Callback(context.Background(), env.account, id); err != nil {
				t.Fatal(err)
			}
			return cb.Status == callbridge.CallbackCompleted || cb.Status == callbridge.CallbackFailed
		})
		return cb
	}

	// Rounds of concurrent callbacks until a whole round is refused.
	var completed, refused, capped int
	for round := 0; round < 10; round++ {
		ids := make([]string, 4)
		for i := range ids {
			ids[i] = create()
		}
		roundRefused := 0
		for _, id := range ids {
			cb := ended(id)
			switch {
			case cb.Reason == callbridge.ReasonInsufficientFunds:
				roundRefused++
				for _, l := range cb.Legs {
					t.Errorf("callback %s refused for insufficient funds, yet leg %s was placed", id, l.Leg)
				}
			case cb.Reason == callbridge.ReasonMaxDuration:
				completed++
			default:
				t.Errorf("callback %s: %s/%s, want max_duration or insufficient_funds", id, cb.Status, cb.Reason)
				for _, e := range cb.Events {
					t.Logf("  %s %s %s %s", e.At.Format("15:04:05.000"), e.Type, e.Leg, e.Detail)
				}
			}
			for _, e := range cb.Events {
				if e.Type == callbridge.EventMaxDuration && strings.HasPrefix(e.Detail, "prepaid cap") {
					capped++
				}
			}
		}
		refused += roundRefused
		env.settled()
		if roundRefused == len(ids) {
			break
		}
	}
	// Concurrent callbacks compete for the last of the balance and may all
	// lose; one on its own must be refused too once the balance is spent.
	for {
		cb := ended(create())
		env.settled()
		if cb.Reason == callbridge.ReasonInsufficientFunds {
			refused++
			break
		}
		if cb.Reason != callbridge.ReasonMaxDuration {
			t.Fatalf("last callback: %s/%s", cb.Status, cb.Reason)
		}
		completed++
	}
	b := env.balance()
	legs := env.answeredLegs()
	t.Logf("%d callbacks completed, %d refused, %d prepaid caps, %d answered legs, final balance %d", completed, refused, capped, legs, b.Balance)
	if completed == 0 || refused == 0 {
		t.Fatalf("completed %d, refused %d: want callbacks placed until the balance ran out", completed, refused)
	}
	if capped == 0 {
		t.Errorf("no leg was capped at its grant")
	}
	if b.Reserved != 0 {
		t.Errorf("%d still reserved after every callback ended", b.Reserved)
	}
	if floor := -ppIncrement * legs; b.Balance < floor {
		t.Errorf("final balance %d below %d (one increment per answered leg)", b.Balance, floor)
	}
	// Refused: the balance could not pay A for the shortest max_duration
	// the engine asks for (10 s) plus B's ring time (10 s), and B for its
	// first increment.
	if limit := int64(20*10_000 + ppIncrement); b.Balance >= limit {
		t.Errorf("final balance %d pays A for 20 s and B for 6 s, yet the last round was refused", b.Balance)
	}
	var sum int64
	if err := env.db.QueryRowContext(context.Background(), `SELECT coalesce(sum(amount), 0) FROM ledger_entries WHERE account_id = $1`, env.account).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	if sum != b.Balance {
		t.Errorf("ledger sum %d, balance %d", sum, b.Balance)
	}
	for _, c := range env.fs.Commands() {
		if strings.HasPrefix(c, "api originate") && strings.Contains(c, "callbridge_max_ms=0") {
			t.Errorf("leg originated without a granted duration: %s", c)
		}
	}
}

// ppLines are the account's XB bindings: X 4930100100 (a number ppDeck
// does not price, so inbound calls to it are free) and X 4917900900 (a
// mobile number, so inbound calls to it cost as much as the leg to B),
// both to B 4917022222.
type ppLines map[callbridge.Number]*dialplan.Line

func (l ppLines) Line(_ context.Context, x callbridge.Number) (*dialplan.Line, error) {
	return l[x], nil
}

func TestPrepaidBindingCalls(t *testing.T) {
	t.Parallel()
	gin.SetMode(gin.ReleaseMode)
	var cfg DialplanConfig
	lines := ppLines{}
	e := gin.New()
	e.POST("/fs/dialplan", func(c *gin.Context) { fsDialplan(&cfg, lines, time.Now, slog.New(slog.DiscardHandler))(c) })
	dp := httptest.NewServer(e)
	t.Cleanup(dp.Close)

	env := newPPEnv(t, dp.URL+"/fs/dialplan")
	cfg = DialplanConfig{User: dpUser, Password: dpPass, Routing: privacy.Routing{Authorizer: env.auth, Prepaid: privacy.NewPrepaidAccounts(env.accounts, 0)}}
	for _, x := range []callbridge.Number{"4930100100", "4917900900"} {
		lines[x] = &dialplan.Line{X: x, AccountID: env.account, Gateway: "carrier", Enabled: true,
			Bindings: []*callbridge.Binding{{ID: "0f1e2d3c-4b5a-4697-8877-6655443322" + string(x[len(x)-2:]), AccountID: env.account, Mode: callbridge.ModeXB,
				X: x, B: "4917022222", Status: callbridge.StatusActive, ExpiresAt: time.Now().Add(time.Hour)}}}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sub := env.node.Subscribe(0)
	defer sub.Close()
	// call places an inbound call to X and returns the inbound leg's
	// CHANNEL_HANGUP_COMPLETE and the execute_on_answer it carried; the
	// simulator runs that application on answer, as FreeSWITCH does.
	call := func(x callbridge.Number) (esl.Event, string) {
		id, err := env.fs.Inbound(ctx, "4917033333", string(x))
		if err != nil {
			t.Fatal(err)
		}
		var onAnswer string
		for {
			ev, err := sub.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ev.UUID != id {
				continue
			}
			switch ev.Name {
			case esl.ChannelAnswer:
				onAnswer = ev.Var("execute_on_answer")
			case esl.ChannelHangupComplete:
				return ev, onAnswer
			}
		}
	}

	ev, _ := call("4930100100")
	if got := ev.Get("Hangup-Cause"); got != "OUTGOING_CALL_BARRED" {
		t.Errorf("no balance: hangup cause %q, want OUTGOING_CALL_BARRED", got)
	}
	if got := ev.Var(callbridge.VarRefusal); got != string(dialplan.ReasonInsufficientFunds) {
		t.Errorf("no balance: %s=%q, want insufficient_funds", callbridge.VarRefusal, got)
	}
	if ev.Var("bridge_uuid") != "" || ev.Var("answer_epoch") != "" && ev.Var("answer_epoch") != "0" {
		t.Errorf("no balance: the call was bridged or answered")
	}
	env.settled()

	env.topup(300_000) // 0.30: 30 s to a mobile
	ev, onAnswer := call("4930100100")
	if onAnswer != "sched_hangup +30 ALLOTTED_TIMEOUT" {
		t.Errorf("execute_on_answer %q, want the 30 s grant", onAnswer)
	}
	if got := ev.Get("Hangup-Cause"); got != "ALLOTTED_TIMEOUT" {
		t.Errorf("with balance: hangup cause %q, want ALLOTTED_TIMEOUT", got)
	}
	// The simulator runs env.fs.Speed times real time: its sched_hangup
	// timer firing 150 ms late on a loaded machine (as under -race with
	// other packages) is Speed × 150 ms late in its clock. Never early.
	late := int64(env.fs.Speed * 150)
	if ms, _ := ev.Int64("variable_billmsec"); ms < 29_000 || ms > 30_000+late {
		t.Errorf("with balance: billed %d ms, want the 30 s grant (at most %d ms late)", ms, late)
	}
	env.settled()
	b := env.balance()
	if b.Balance < -ppIncrement || b.Balance > ppIncrement {
		t.Errorf("balance %d, want the 0.30 spent to within one increment", b.Balance)
	}

	// A call to a mobile X costs on both legs: the same 0.30 pays for two
	// 6 s increments of each (0.24; three would be 0.36), and both are
	// charged.
	env.topup(300_000 - b.Balance)
	ev, onAnswer = call("4917900900")
	if onAnswer != "sched_hangup +12 ALLOTTED_TIMEOUT" {
		t.Errorf("execute_on_answer %q, want the 12 s grant for two priced legs", onAnswer)
	}
	if ms, _ := ev.Int64("variable_billmsec"); ms < 11_000 || ms > 13_000 {
		t.Errorf("both legs priced: billed %d ms, want about the 12 s grant", ms)
	}
	env.settled()
	if b := env.balance(); b.Balance < -2*ppIncrement || b.Balance > 2*ppIncrement {
		t.Errorf("final balance %d, want the 0.30 spent on both legs to within an increment each", b.Balance)
	}
}
