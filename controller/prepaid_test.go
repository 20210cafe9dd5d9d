package controller_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/dialplan"
	"callbridge/esl/esltest"
	"callbridge/esl/freeswitch"
	"callbridge/internal/wait"
	"callbridge/postgres"
)

// ppScript keeps every mobile far end (49 17...) up once answered, so only
// FreeSWITCH's scheduled hangups (max_duration, prepaid caps) end calls.
const ppScript = `{"rules":[{"prefix":"4917","ring_ms":500,"outcome":"answer","talk_ms":0}]}`

// ppIncrement is the price of one billing increment of ppDeck: 6 s at
// 0.60 a minute.
const ppIncrement = 60_000

// ppEnv is the fully wired controller on a real database with a prepaid
// account whose sell deck is ppDeck, and a simulated FreeSWITCH node (20
// times real time) whose CDRs settle reservations and debit the balance.
type ppEnv struct {
	*fullEnv
	billing *postgres.BillingStore
	account string
	key     string
}

// ppDeck prices mobile numbers (4917) at 0.60 a minute in 6 s increments
// and charges every answered second (short_ms 1); other numbers are
// unrated.
const ppDeck = "prefix,per_minute,first_increment,next_increment\n4917,0.60,6,6\n"

func newPPEnv(t *testing.T) *ppEnv {
	t.Helper()
	fs := esltest.NewUnstartedServer()
	script, err := esltest.ParseScript([]byte(ppScript))
	if err != nil {
		t.Fatal(err)
	}
	fs.Script, fs.Speed = script, 20
	env := &ppEnv{fullEnv: newEnv(t, envOptions{fs: fs})}
	acct := &callbridge.Account{Name: "prepaid", ServiceNumber: "4930100100", Prepaid: true, Currency: "EUR"}
	if env.key, err = postgres.NewAccountService(env.db).CreateAccount(context.Background(), acct); err != nil {
		t.Fatal(err)
	}
	env.account = acct.ID
	env.billing = postgres.NewBillingStore(env.db, time.UTC, "test")

	deck := env.mustCall(http.StatusCreated, "POST", "/v1/rate-decks", env.key,
		map[string]any{"name": "prepaid", "currency": "EUR", "time_zone": "UTC", "precision": 6, "short_ms": 1}).json(t)
	id, _ := deck["id"].(string)
	if a := env.send(request{method: "POST", path: "/v1/rate-decks/" + id + "/rates?mode=replace", auth: "Bearer " + env.key,
		contentType: "text/csv", body: strings.NewReader(ppDeck)}); a.status != http.StatusOK {
		t.Fatalf("import ppDeck: %d %s", a.status, a.body)
	}
	wait.For(t, "ppDeck in force", func() bool {
		d := env.srv.Decks.AccountDeck(env.account, time.Now())
		return d != nil && d.Len() == 1
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
	env := newPPEnv(t)
	env.topup(2_000_000) // 2.00: 200 s of leg time at 0.60 a minute

	store := postgres.NewCallbackService(env.db)
	create := func() string {
		var cb callbridge.Callback
		a := env.mustCall(http.StatusAccepted, "POST", "/v1/callbacks", env.key, `{"a":"4917011111","b":"4917022222","max_duration":20,"ring_timeout_b":10}`)
		if err := json.Unmarshal(a.body, &cb); err != nil || cb.ID == "" {
			t.Fatalf("POST /v1/callbacks: %s %v", a.body, err)
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
	// first increment. ppDeck bills whole 6 s increments: A's 20 s are
	// four of them (0.24), B's first one more (0.06).
	if limit := int64(4*ppIncrement + ppIncrement); b.Balance >= limit {
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

func TestPrepaidBindingCalls(t *testing.T) {
	t.Parallel()
	env := newPPEnv(t)
	// The account's XB bindings: X 4930100100 (a number ppDeck does not
	// price, so inbound calls to it are free) and X 4917900900 (a mobile
	// number, so inbound calls to it cost as much as the leg to B), both
	// to B 4917022222.
	for _, x := range []string{"4930100100", "4917900900"} {
		env.mustCall(http.StatusCreated, "POST", "/v1/numbers", env.key, map[string]any{"number": x, "gateway": "carrier"})
		env.mustCall(http.StatusCreated, "POST", "/v1/bindings", env.key, map[string]any{"mode": "XB", "x": x, "b": "4917022222", "ttl": 3600})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sub := env.app.Nodes[0].Subscribe(0)
	defer sub.Close()
	// call places an inbound call to X and returns the inbound leg's
	// CHANNEL_HANGUP_COMPLETE and the execute_on_answer it carried; the
	// simulator runs that application on answer, as FreeSWITCH does.
	call := func(x callbridge.Number) (freeswitch.Event, string) {
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
			case freeswitch.ChannelAnswer:
				onAnswer = ev.Var("execute_on_answer")
			case freeswitch.ChannelHangupComplete:
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
	if got := ev.Get("Hangup-Cause"); got != "ALLOTTED_TIMEOUT" {
		t.Errorf("both legs priced: hangup cause %q, want ALLOTTED_TIMEOUT", got)
	}
	if ms, _ := ev.Int64("variable_billmsec"); ms < 11_000 || ms > 12_000+late {
		t.Errorf("both legs priced: billed %d ms, want the 12 s grant (at most %d ms late)", ms, late)
	}
	env.settled()
	if b := env.balance(); b.Balance < -2*ppIncrement || b.Balance > 2*ppIncrement {
		t.Errorf("final balance %d, want the 0.30 spent on both legs to within an increment each", b.Balance)
	}
}
