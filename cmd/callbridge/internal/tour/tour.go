// Package tour is the scripted walk-through `make demo` runs (callbridge
// tour) against a controller and a simulated FreeSWITCH node: it creates
// an account and rate decks, places callbacks, binds privacy numbers,
// drives inbound calls through the dialplan endpoint with the simulator's
// sim_inbound command, shows the rated CDRs and a usage report, and fails
// a callback over from one carrier to the next. It talks to the system
// only through its public interfaces (HTTP and ESL), as a user would, and
// imports nothing of callbridge's.
package tour

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// Config is where the tour finds the system it walks through.
type Config struct {
	// API is the controller's base URL.
	API string
	// AdminToken is the controller's admin bearer token.
	AdminToken string
	// ESLAddr is the simulator's event socket, where inbound calls start.
	ESLAddr string
	// ESLPassword is the simulator's event-socket password.
	ESLPassword string
}

// Run walks through the tour against the system cfg names, printing each
// step to out. It stops at the first step that fails.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	t := &tour{api: strings.TrimRight(cfg.API, "/"), admin: cfg.AdminToken, eslAddr: cfg.ESLAddr, eslPass: cfg.ESLPassword, out: out,
		http: &http.Client{Timeout: 30 * time.Second}}
	return t.run(ctx)
}

type tour struct {
	api, admin, key   string
	eslAddr, eslPass  string
	out               io.Writer
	http              *http.Client
	accountID         string
	today, monthStart string
}

func (t *tour) say(format string, args ...any) { fmt.Fprintf(t.out, format+"\n", args...) }

func (t *tour) step(title string) { fmt.Fprintf(t.out, "\n== %s\n", title) }

// call sends a request with the account key (or the admin token when
// admin is true) and decodes a JSON answer into v.
func (t *tour) call(ctx context.Context, method, path string, admin bool, body any, want int, v any) error {
	var rd io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case string: // CSV
		rd, ctype = strings.NewReader(b), "text/csv"
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.api+path, rd)
	if err != nil {
		return err
	}
	if rd != nil {
		req.Header.Set("Content-Type", ctype)
	}
	tok := t.key
	if admin {
		tok = t.admin
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := t.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(raw))
	}
	if v != nil {
		return json.Unmarshal(raw, v)
	}
	return nil
}

func (t *tour) run(ctx context.Context) error {
	now := time.Now().UTC()
	t.today = now.Format("2006-01-02")
	t.monthStart = now.Format("2006-01") + "-01"

	t.step("Health: the controller, its database and the FreeSWITCH node")
	var ready struct {
		Ready bool `json:"ready"`
		Nodes []struct {
			Name, State string
		} `json:"nodes"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := t.call(ctx, "GET", "/readyz", false, nil, 200, &ready)
		if err == nil && ready.Ready {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("controller not ready: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, n := range ready.Nodes {
		t.say("node %s: %s", n.Name, n.State)
	}

	t.step("An account and its API key (admin API; the key is shown once)")
	var acc struct {
		Account struct{ ID, Name string } `json:"account"`
		Key     string                    `json:"api_key"`
	}
	if err := t.call(ctx, "POST", "/v1/admin/accounts", true, map[string]any{
		"name": "Demo Shop", "service_number": "+1 555 000 0001", "currency": "USD"}, 201, &acc); err != nil {
		return err
	}
	t.key, t.accountID = acc.Key, acc.Account.ID
	t.say("account %s (%s), key %s…", acc.Account.ID, acc.Account.Name, acc.Key[:12])

	if err := t.rateDecks(ctx); err != nil {
		return err
	}
	if err := t.callbacks(ctx); err != nil {
		return err
	}
	if err := t.privacyNumbers(ctx); err != nil {
		return err
	}
	if err := t.cdrs(ctx); err != nil {
		return err
	}
	if err := t.report(ctx); err != nil {
		return err
	}
	return t.carrierFailover(ctx)
}

func (t *tour) rateDecks(ctx context.Context) error {
	t.step("Rate decks: what the account pays (sell) and what the carrier charges (buy)")
	var sell, buy struct{ ID string }
	if err := t.call(ctx, "POST", "/v1/rate-decks", false, map[string]any{
		"name": "Demo retail", "currency": "USD", "time_zone": "America/New_York"}, 201, &sell); err != nil {
		return err
	}
	sellCSV := "prefix,description,band,per_minute,connect_fee,first_increment,next_increment,days,from,until,priority\n" +
		"1555,US test numbers,peak,0.020,0.010,60,60,mon-fri,08:00,20:00,1\n" +
		"1555,US test numbers,off-peak,0.010,0.010,60,60,all,00:00,24:00,2\n" +
		"1,US,,0.015,0,30,6,all,,,0\n"
	var imp struct{ Imported int }
	if err := t.call(ctx, "POST", "/v1/rate-decks/"+sell.ID+"/rates?mode=replace", false, sellCSV, 200, &imp); err != nil {
		return err
	}
	t.say("sell deck %s: %d rates (peak and off-peak bands for 1555 in New York time)", sell.ID, imp.Imported)
	if err := t.call(ctx, "POST", "/v1/rate-decks", true, map[string]any{
		"gateway": "carrier", "name": "Carrier A", "currency": "USD", "time_zone": "UTC"}, 201, &buy); err != nil {
		return err
	}
	if err := t.call(ctx, "POST", "/v1/rate-decks/"+buy.ID+"/rates?mode=replace", true,
		"prefix,description,per_minute,first_increment,next_increment\n1,US termination,0.006,6,6\n", 200, &imp); err != nil {
		return err
	}
	t.say("buy deck %s for gateway carrier: %d rate", buy.ID, imp.Imported)

	var q struct {
		Amount string `json:"amount"`
		Result struct {
			Prefix      string `json:"prefix"`
			Band        string `json:"band"`
			Description string `json:"description"`
		} `json:"result"`
	}
	if err := t.call(ctx, "GET", "/v1/rates/quote?number=15551230002&duration=95&deck="+sell.ID, false, nil, 200, &q); err != nil {
		return err
	}
	t.say("quote: a 95 s call to +15551230002 now costs %s USD (prefix %s, band %q)", q.Amount, q.Result.Prefix, q.Result.Band)
	return nil
}

type callbackView struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Reason string `json:"reason"`
	Legs   []struct {
		Leg, UUID, Number, Cause string
		HangupCause              string `json:"hangup_cause"`
	} `json:"legs"`
	Events []struct {
		Seq                       int64
		Type, Status, Reason, Leg string
		Detail                    string
		At                        time.Time
	} `json:"events"`
	CDRIDs []string `json:"cdr_ids"`
}

func (t *tour) callbacks(ctx context.Context) error {
	for _, c := range []struct{ title, a, b string }{
		{"Callback: A answers, B answers, they talk, then A hangs up", "15551230001", "15551230002"},
		{"Callback: A answers, B is busy (…486): A is told and hung up", "15551230003", "15551230486"},
	} {
		t.step(c.title)
		var cb callbackView
		if err := t.call(ctx, "POST", "/v1/callbacks", false, map[string]any{"a": c.a, "b": c.b, "prompt": "ringback"}, 202, &cb); err != nil {
			return err
		}
		t.say("POST /v1/callbacks → 202 %s (%s)", cb.ID, cb.Status)
		deadline := time.Now().Add(60 * time.Second)
		for cb.Status != "completed" && cb.Status != "failed" {
			if time.Now().After(deadline) {
				return fmt.Errorf("callback %s still %s after 60s", cb.ID, cb.Status)
			}
			time.Sleep(300 * time.Millisecond)
			if err := t.call(ctx, "GET", "/v1/callbacks/"+cb.ID, false, nil, 200, &cb); err != nil {
				return err
			}
		}
		var start time.Time
		for _, e := range cb.Events {
			if start.IsZero() {
				start = e.At
			}
			what := e.Type
			if e.Status != "" {
				what += " → " + e.Status
			}
			if e.Leg != "" {
				what += " (leg " + e.Leg + ")"
			}
			if e.Reason != "" {
				what += " reason=" + e.Reason
			}
			if e.Detail != "" {
				what += " " + e.Detail
			}
			t.say("  +%6.2fs  %s", e.At.Sub(start).Seconds(), what)
		}
		t.say("final: %s %s", cb.Status, cb.Reason)
	}
	return nil
}

func (t *tour) privacyNumbers(ctx context.Context) error {
	t.step("Privacy numbers: a pool of virtual numbers X")
	if err := t.call(ctx, "POST", "/v1/numbers", false, map[string]any{"numbers": []map[string]any{
		{"number": "15559990001", "gateway": "carrier", "area": "SF"},
		{"number": "15559990002", "gateway": "carrier", "area": "SF"},
		{"number": "15559990003", "gateway": "carrier", "area": "NY"},
	}}, 201, nil); err != nil {
		return err
	}
	t.say("3 numbers: +15559990001, +15559990002 (SF), +15559990003 (NY)")

	var axb, xb struct{ ID, X, Status string }
	if err := t.call(ctx, "POST", "/v1/bindings", false, map[string]any{
		"mode": "AXB", "a": "15551110001", "b": "15552220002", "ttl": 3600, "area": "SF", "external_id": "order-1001"}, 201, &axb); err != nil {
		return err
	}
	t.say("AXB binding %s: customer +15551110001 ⇄ courier +15552220002 through X=+%s", axb.ID, axb.X)
	if err := t.call(ctx, "POST", "/v1/bindings", false, map[string]any{
		"mode": "XB", "b": "15553330003", "ttl": 3600, "area": "NY"}, 201, &xb); err != nil {
		return err
	}
	t.say("XB binding %s: anyone calling X=+%s reaches the shop +15553330003", xb.ID, xb.X)

	t.step("Inbound calls through FreeSWITCH's mod_xml_curl request to /fs/dialplan (simulated)")
	calls := []struct{ who, from, to string }{
		{"customer calls X", "15551110001", axb.X},
		{"courier calls X", "15552220002", axb.X},
		{"a stranger calls X", "15557770007", axb.X},
		{"anyone calls the XB number", "15558880008", xb.X},
	}
	for _, c := range calls {
		uuid, err := t.simInbound(ctx, c.from, c.to)
		if err != nil {
			return err
		}
		t.say("%-28s +%s → +%s  (call %s)", c.who, c.from, c.to, uuid)
	}
	t.say("waiting for the calls to end (each talks 3 s)…")
	time.Sleep(6 * time.Second)
	const stranger = "15557770007"
	var strangerLegs, strangerAnswered int
	for _, b := range []struct{ name, id string }{{"AXB", axb.ID}, {"XB", xb.ID}} {
		var res struct {
			CDRs []struct {
				Leg, Caller, Callee, Presented string
				HangupCause                    string `json:"hangup_cause"`
				AnswerAt                       string `json:"answer_at"`
			} `json:"cdrs"`
		}
		if err := t.waitCDRs(ctx, "/v1/cdrs?binding_id="+b.id, false, &res, func() int { return len(res.CDRs) }); err != nil {
			return err
		}
		for _, c := range res.CDRs {
			// An inbound leg is the caller reaching X; the outbound leg
			// is the forward, whose phone displays X (Presented), never
			// the caller's own number.
			if c.Leg == "inbound" {
				t.say("  %s inbound   +%s called the privacy number %s (%s)", b.name, c.Caller, plus(c.Callee), c.HangupCause)
			} else {
				t.say("  %s %-9s forwarded to %s, whose phone showed %s, the privacy number (%s)", b.name, c.Leg, plus(c.Callee), plus(c.Presented), c.HangupCause)
			}
			if c.Caller == stranger {
				strangerLegs++
				if c.AnswerAt != "" && c.Leg != "inbound" {
					strangerAnswered++
				}
			}
		}
	}
	if strangerAnswered > 0 {
		return fmt.Errorf("tour: the stranger's call reached a party of the AXB binding")
	}
	t.say("the stranger was refused (not a party of the AXB binding): %d leg(s) of its call are recorded on the binding, none to A or B", strangerLegs)
	return nil
}

func plus(n string) string {
	if n == "" {
		return "-"
	}
	return "+" + n
}

// waitCDRs polls a CDR listing until it holds something and stops
// growing (the pipeline writes within a fraction of a second).
func (t *tour) waitCDRs(ctx context.Context, path string, admin bool, v any, n func() int) error {
	last, stable := -1, 0
	for i := 0; i < 50; i++ {
		if err := t.call(ctx, "GET", path, admin, nil, 200, v); err != nil {
			return err
		}
		if c := n(); c > 0 && c == last {
			stable++
			if stable >= 2 {
				return nil
			}
		} else {
			last, stable = c, 0
		}
		time.Sleep(300 * time.Millisecond)
	}
	return nil
}

func (t *tour) cdrs(ctx context.Context) error {
	t.step("Rated CDRs: one per call leg, priced from billmsec by the decks")
	t.say("the operator's view (GET /v1/admin/accounts/{id}/cdrs); the account's own (GET /v1/cdrs) shows no carrier or buy price")
	var res struct {
		CDRs []struct {
			Leg, Caller, Callee string
			HangupCause         string `json:"hangup_cause"`
			BillMS              int64  `json:"bill_ms"`
			Sell                int64  `json:"sell_micros"`
			Buy                 int64  `json:"buy_micros"`
			SellPrefix          string `json:"sell_prefix"`
			Flags               any    `json:"flags"`
		} `json:"cdrs"`
	}
	if err := t.waitCDRs(ctx, "/v1/admin/accounts/"+t.accountID+"/cdrs?limit=50", true, &res, func() int { return len(res.CDRs) }); err != nil {
		return err
	}
	t.say("%-9s %-12s %-12s %-20s %8s %10s %10s  %s", "LEG", "CALLER", "CALLEE", "CAUSE", "BILL_S", "SELL_USD", "BUY_USD", "FLAGS")
	for _, c := range res.CDRs {
		flags, _ := json.Marshal(c.Flags)
		t.say("%-9s %-12s %-12s %-20s %8.3f %10s %10s  %s", c.Leg, c.Caller, c.Callee, c.HangupCause,
			float64(c.BillMS)/1000, micros(c.Sell), micros(c.Buy), flags)
	}
	return nil
}

func micros(m int64) string {
	neg := m < 0
	if neg {
		m = -m
	}
	s := fmt.Sprintf("%d.%06d", m/1_000_000, m%1_000_000)
	if neg {
		s = "-" + s
	}
	return s
}

func (t *tour) report(ctx context.Context) error {
	tomorrow := time.Now().UTC().AddDate(0, 0, 1).Format("2006-01-02")
	period := "?from=" + t.today + "&to=" + tomorrow
	t.step("Usage report for today, by destination, as the account sees it (GET /v1/reports/usage)")
	if err := t.csv(ctx, "/v1/reports/usage"+period+"&group_by=destination", t.key); err != nil {
		return err
	}
	t.step("The operator's report of the account, by carrier, with cost and margin (GET /v1/admin/accounts/{id}/reports/usage)")
	return t.csv(ctx, "/v1/admin/accounts/"+t.accountID+"/reports/usage"+period+"&group_by=carrier", t.admin)
}

// csv prints the CSV answer of a GET with the given bearer token.
func (t *tour) csv(ctx context.Context, path, token string) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", t.api+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/csv")
	resp, err := t.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	fmt.Fprint(t.out, string(body))
	return nil
}

// simInbound starts an inbound call on the simulator with its ESL command
// "api sim_inbound <caller> <destination>", speaking the event-socket
// protocol directly.
func (t *tour) simInbound(ctx context.Context, from, to string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.eslAddr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	read := func() (textproto.MIMEHeader, string, error) {
		h, err := textproto.NewReader(r).ReadMIMEHeader()
		if err != nil {
			return nil, "", err
		}
		var body []byte
		if n, _ := strconv.Atoi(h.Get("Content-Length")); n > 0 {
			body = make([]byte, n)
			if _, err := io.ReadFull(r, body); err != nil {
				return nil, "", err
			}
		}
		return h, string(body), nil
	}
	if _, _, err := read(); err != nil { // auth/request
		return "", err
	}
	fmt.Fprintf(conn, "auth %s\n\n", t.eslPass)
	if h, _, err := read(); err != nil || !strings.HasPrefix(h.Get("Reply-Text"), "+OK") {
		return "", fmt.Errorf("esl auth: %v %v", h, err)
	}
	fmt.Fprintf(conn, "api sim_inbound %s %s\n\n", from, to)
	_, body, err := read()
	if err != nil {
		return "", err
	}
	uuid, ok := strings.CutPrefix(strings.TrimSpace(body), "+OK ")
	if !ok {
		return "", errors.New("sim_inbound: " + strings.TrimSpace(body))
	}
	return uuid, nil
}
