package controller_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/controller/accounting"
	"callbridge/postgres"

	"github.com/google/uuid"
)

func TestCDRAPI(t *testing.T) {
	env := newFullEnv(t, nil)
	db := env.db
	ctx := context.Background()
	accounts := postgres.NewAccountService(db)
	store := postgres.NewCDRStore(db)
	newAcc := func() (string, string) {
		a := &callbridge.Account{Name: "cdr api", Currency: "EUR"}
		key, err := accounts.CreateAccount(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		return a.ID, key
	}
	acc, key := newAcc()
	other, _ := newAcc()
	start := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	binding := uuid.NewString()
	var cdrs []*callbridge.CDR
	for i := range 7 {
		c := &callbridge.CDR{UUID: uuid.NewString(), Leg: callbridge.LegOutbound, AccountID: acc, Direction: "outbound",
			Caller: "4930111", Callee: "4930222", Presented: "4930999", Node: "fs1",
			StartAt: start.Add(time.Duration(i) * time.Minute), AnswerAt: start.Add(time.Duration(i)*time.Minute + time.Second),
			EndAt: start.Add(time.Duration(i)*time.Minute + 10*time.Second), DurationMS: 10000, BillMS: 9000,
			HangupCause: "NORMAL_CLEARING", Disposition: "answered", Sell: 1234567, SellCurrency: "EUR",
			Gateway: "carrier-x", Buy: 500000, BuyCurrency: "EUR", Flags: callbridge.CDRMinimum | callbridge.CDRBuyUnratedDefault}
		if i < 3 {
			c.BindingID = binding
		}
		if i == 6 {
			c.Caller = "=cmd|' /C calc'!A0"
		}
		cdrs = append(cdrs, c)
	}
	theirs := *cdrs[0]
	theirs.UUID, theirs.AccountID = uuid.NewString(), other
	if _, err := store.WriteBatch(ctx, append(cdrs, &theirs), nil); err != nil {
		t.Fatal(err)
	}
	h := env.srv.Handler()
	path := "/v1/cdrs"
	get := func(query, accept, key string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path+"?"+query, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	type page struct {
		CDRs []*callbridge.CDR `json:"cdrs"`
		Next string            `json:"next_cursor"`
	}
	tests := []struct {
		name, query string
		status      int
		want        int
	}{
		{"all", "", 200, 7},
		{"range", url.Values{"from": {start.Add(time.Minute).Format(time.RFC3339)}, "to": {start.Add(3 * time.Minute).Format(time.RFC3339)}}.Encode(), 200, 2},
		{"binding", "binding_id=" + binding, 200, 3},
		{"number", "number=%2B49%20309%2099", 200, 7},
		{"unknown callback", "callback_id=" + uuid.NewString(), 200, 0},
		{"bad from", "from=yesterday", 400, 0},
		{"reversed range", "from=2026-02-03T00:00:00Z&to=2026-02-02T00:00:00Z", 400, 0},
		{"bad number", "number=abc", 400, 0},
		{"bad cursor", "cursor=%21%21", 400, 0},
		{"bad limit", "limit=0", 400, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := 0
			q := tt.query + "&limit=2"
			for range 10 {
				w := get(q, "", key)
				if w.Code != tt.status {
					t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
				}
				if w.Code != 200 {
					return
				}
				var p page
				if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
					t.Fatal(err)
				}
				for _, c := range p.CDRs {
					if c.AccountID != acc {
						t.Fatalf("another account's CDR listed")
					}
				}
				seen += len(p.CDRs)
				if p.Next == "" {
					break
				}
				q = tt.query + "&limit=2&cursor=" + url.QueryEscape(p.Next)
			}
			if seen != tt.want {
				t.Errorf("%d CDRs, want %d", seen, tt.want)
			}
		})
	}

	if w := get("", "", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("without a key: status %d, want 401", w.Code)
	}

	w := get("", "text/csv", key)
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/csv") {
		t.Fatalf("CSV export: status %d, type %q", w.Code, w.Header().Get("Content-Type"))
	}
	rows, err := csv.NewReader(strings.NewReader(w.Body.String())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 8 || strings.Join(rows[0], ",") != strings.Join(accounting.CDRCSVHeader(false), ",") {
		t.Fatalf("CSV has %d rows, header %v", len(rows), rows[0])
	}
	if body := w.Body.String(); strings.Contains(body, "carrier-x") || strings.Contains(body, "0.500000") || strings.Contains(body, "buy") {
		t.Errorf("the account's CSV shows the carrier or its cost:\n%s", body)
	}
	col := map[string]int{}
	for i, c := range rows[0] {
		col[c] = i
	}
	if got := rows[1][col["sell"]]; got != "1.234567" {
		t.Errorf("sell %q, want 1.234567", got)
	}
	if got := rows[1][col["flags"]]; got != "minimum" {
		t.Errorf("flags %q, want minimum", got)
	}
	if got := rows[7][col["caller"]]; !strings.HasPrefix(got, "'=") {
		t.Errorf("formula not defused: %q", got)
	}
	if w := get("", "application/json, text/csv;q=0.5", key); !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		t.Errorf("JSON preferred, got %q", w.Header().Get("Content-Type"))
	}

	// The account never sees which carrier carried a leg or what it cost;
	// the operator sees both, for any account.
	if body := get("", "", key).Body.String(); strings.Contains(body, "carrier-x") || strings.Contains(body, "buy") || !strings.Contains(body, `"flags":["minimum"]`) {
		t.Errorf("the account's CDRs show the carrier or its cost: %s", body)
	}
	path = "/v1/admin/accounts/" + acc + "/cdrs"
	if w := get("", "", key); w.Code != http.StatusUnauthorized {
		t.Errorf("operator view with an API key: %d, want 401", w.Code)
	}
	w = get("limit=1", "", fullAdminToken)
	var op page
	if err := json.Unmarshal(w.Body.Bytes(), &op); w.Code != 200 || err != nil || len(op.CDRs) != 1 {
		t.Fatalf("operator view: %d %s", w.Code, w.Body)
	}
	if c := op.CDRs[0]; c.Gateway != "carrier-x" || c.Buy != 500000 || c.BuyCurrency != "EUR" || !c.Flags.Has(callbridge.CDRBuyUnratedDefault) {
		t.Errorf("operator view: %+v, want the gateway, buy price and buy flags", c)
	}
	w = get("", "text/csv", fullAdminToken)
	rows, err = csv.NewReader(strings.NewReader(w.Body.String())).ReadAll()
	if err != nil || len(rows) != 8 || strings.Join(rows[0], ",") != strings.Join(accounting.CDRCSVHeader(true), ",") {
		t.Fatalf("operator CSV: %v %d rows, header %v", err, len(rows), rows[0])
	}
	if got := rows[1][len(rows[1])-3:]; strings.Join(got, " ") != "0.500000 EUR buy_unrated_default,minimum" {
		t.Errorf("operator CSV buy, currency, flags: %v", got)
	}
	path = "/v1/admin/accounts/not-an-id/cdrs"
	if w := get("", "", fullAdminToken); w.Code != http.StatusNotFound {
		t.Errorf("operator view of a malformed account id: %d, want 404", w.Code)
	}
}
