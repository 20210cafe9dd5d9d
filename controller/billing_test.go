package controller_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/postgres"
)

// billingEnv is the fully wired API on a real database with a prepaid
// account with usage and an issued October invoice, and a second account.
// Its clock is 2026-12-06 (newEnv), so November is closed for invoicing
// (the store has no grace) and December is not.
type billingEnv struct {
	*fullEnv
	acc, other    string
	key, otherKey string
	invoice       string
}

func newBillingEnv(t *testing.T) *billingEnv {
	t.Helper()
	env := &billingEnv{fullEnv: newFullEnv(t, nil)}
	db := env.db
	ctx := context.Background()
	accounts := postgres.NewAccountService(db)
	store := postgres.NewBillingStore(db, time.UTC, "test")
	for _, p := range []struct {
		id, key *string
		prepaid bool
	}{{&env.acc, &env.key, true}, {&env.other, &env.otherKey, false}} {
		a := &callbridge.Account{Name: "billing api", Prepaid: p.prepaid, Currency: "EUR"}
		key, err := accounts.CreateAccount(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		*p.id, *p.key = a.ID, key
	}
	if _, err := postgres.NewCDRStore(db).EnsurePartitions(ctx, time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), 1); err != nil {
		t.Fatal(err)
	}
	_, err := db.ExecContext(ctx, `
		WITH g AS (SELECT gen_random_uuid() AS uuid, '2026-10-01T08:00:00Z'::timestamptz + i * interval '1 day' AS start_at, i
		           FROM generate_series(0, 9) i),
		k AS (INSERT INTO cdr_keys SELECT uuid, start_at FROM g RETURNING uuid)
		INSERT INTO cdrs (uuid, start_at, leg, account_id, binding_id, direction, caller, callee, presented, gateway, node,
		                  answer_at, end_at, duration_ms, bill_ms, hangup_cause, disposition, sell_micros, sell_prefix, buy_micros)
		SELECT uuid, start_at, 'a', $1, NULL, 'outbound', '1', '4930123', '1', 'carrier' || (i % 2), 'n',
		       start_at, start_at + interval '1 minute', 60000, 60000, 'NORMAL_CLEARING', 'answered', 100000, '4930', 40000
		FROM g`, env.acc)
	if err != nil {
		t.Fatal(err)
	}
	invs, err := store.IssueInvoices(ctx, 2026, time.October, "", time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC))
	if err != nil || len(invs) != 1 {
		t.Fatalf("invoices %v, %v", invs, err)
	}
	env.invoice = invs[0].ID
	return env
}

// do sends a request with a bearer token (and a JSON body, when given)
// and returns the status, the body and the headers.
func (e *billingEnv) do(t *testing.T, method, path, token, body string, header ...string) (int, string, http.Header) {
	t.Helper()
	r := request{method: method, path: path, header: map[string]string{}}
	if token != "" {
		r.auth = "Bearer " + token
	}
	if body != "" {
		r.body, r.contentType = strings.NewReader(body), "application/json"
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.header[header[i]] = header[i+1]
	}
	a := e.send(r)
	return a.status, string(a.body), a.header
}

func TestBillingAPI(t *testing.T) {
	e := newBillingEnv(t)
	tests := []struct {
		name         string
		method, path string
		token, body  string
		header       []string
		status       int
		contains     []string
	}{
		{"usage by day", "GET", "/v1/reports/usage?from=2026-10-01&to=2026-11-01&group_by=day", e.key, "", nil, 200,
			[]string{`"key":"2026-10-01"`, `"sell_micros":1000000`, `"calls":10`}},
		{"usage without costs", "GET", "/v1/reports/usage?from=2026-10-01&to=2026-11-01", e.key, "", nil, 200,
			[]string{`"total":{"key":"total","calls":10,"answered":10,"billed_ms":600000,"sell_micros":1000000}}`}},
		{"usage by carrier is the operator's", "GET", "/v1/reports/usage?from=2026-10-01&to=2026-11-01&group_by=carrier", e.key, "", nil, 400,
			[]string{`"field":"group_by"`}},
		{"usage as csv without costs", "GET", "/v1/reports/usage?from=2026-10-01&to=2026-11-01&group_by=day", e.key, "", []string{"Accept", "text/csv"}, 200,
			[]string{"key,description,calls,answered,billed_ms,sell,currency\n", "total,,10,10,600000,1.00,EUR"}},
		{"operator usage by carrier as csv", "GET", "/v1/admin/accounts/" + e.acc + "/reports/usage?from=2026-10-01&to=2026-11-01&group_by=carrier", fullAdminToken, "", []string{"Accept", "text/csv"}, 200,
			[]string{"key,description,calls,answered,billed_ms,sell,buy,margin,currency,attempts,asr\n", "carrier0,,5,5,300000,0.50,0.20,0.30,EUR,5,1.0000\n", "total,,10,10,600000,1.00,0.40,0.60,EUR,10,1.0000\n"}},
		{"operator usage as json", "GET", "/v1/admin/accounts/" + e.acc + "/reports/usage?from=2026-10-01&to=2026-11-01", fullAdminToken, "", nil, 200,
			[]string{`"buy_micros":400000`, `"margin_micros":600000`}},
		{"operator usage needs admin", "GET", "/v1/admin/accounts/" + e.acc + "/reports/usage?from=2026-10-01&to=2026-11-01", e.key, "", nil, 401, nil},
		{"operator usage of an unknown account", "GET", "/v1/admin/accounts/00000000-0000-4000-8000-000000000000/reports/usage?from=2026-10-01&to=2026-11-01", fullAdminToken, "", nil, 404, nil},
		{"usage by binding", "GET", "/v1/reports/usage?from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:00Z&group_by=binding", e.key, "", nil, 200,
			[]string{`"calls":10`}},
		{"usage bad grouping", "GET", "/v1/reports/usage?from=2026-10-01&to=2026-11-01&group_by=moon", e.key, "", nil, 400, []string{`"field":"group_by"`}},
		{"usage missing from", "GET", "/v1/reports/usage?to=2026-11-01", e.key, "", nil, 400, []string{`"field":"from"`}},
		{"usage reversed", "GET", "/v1/reports/usage?from=2026-11-01&to=2026-10-01", e.key, "", nil, 400, []string{`"field":"to"`}},
		{"other account sees none of it", "GET", "/v1/reports/usage?from=2026-10-01&to=2026-11-01", e.otherKey, "", nil, 200, []string{`"rows":[]`}},
		{"invoices", "GET", "/v1/invoices", e.key, "", nil, 200, []string{`"number":"CB-000001"`, `"kind":"invoice"`, `"exponent":2`, `"total_minor":100`, `"exact_micros":1000000`}},
		{"invoice json", "GET", "/v1/invoices/" + e.invoice, e.key, "", nil, 200, []string{`"lines":[`, `"days":[`}},
		{"invoice csv", "GET", "/v1/invoices/" + e.invoice + "?format=csv", e.key, "", nil, 200, []string{"CB-000001,invoice,,usage,2026-10,4930,10,10,10.00,1.00,1.00,EUR", "CB-000001,invoice,,total,2026-10,,,,,,1.00,EUR"}},
		{"invoice html", "GET", "/v1/invoices/" + e.invoice, e.key, "", []string{"Accept", "text/html"}, 200, []string{"<svg", "Invoice CB-000001"}},
		{"invoice bad format", "GET", "/v1/invoices/" + e.invoice + "?format=pdf", e.key, "", nil, 400, []string{`"field":"format"`}},
		{"another account's invoice", "GET", "/v1/invoices/" + e.invoice, e.otherKey, "", nil, 404, nil},
		{"malformed invoice id", "GET", "/v1/invoices/x", e.key, "", nil, 404, nil},
		{"top-up needs admin", "POST", "/v1/accounts/" + e.acc + "/topups", e.key, `{"amount_micros":1000000}`, nil, 401, nil},
		{"top-up", "POST", "/v1/accounts/" + e.acc + "/topups", fullAdminToken, `{"amount_micros":5000000,"reference":"p1"}`, nil, 201,
			[]string{`"kind":"topup"`, `"balance_micros":4000000`}},
		{"top-up again is idempotent", "POST", "/v1/accounts/" + e.acc + "/topups", fullAdminToken, `{"amount_micros":5000000,"reference":"p1"}`, nil, 201,
			[]string{`"balance_micros":4000000`}},
		{"top-up negative", "POST", "/v1/accounts/" + e.acc + "/topups", fullAdminToken, `{"amount_micros":-1}`, nil, 400, []string{`"field":"amount_micros"`}},
		{"top-up postpaid", "POST", "/v1/accounts/" + e.other + "/topups", fullAdminToken, `{"amount_micros":1}`, nil, 409, nil},
		{"top-up unknown field", "POST", "/v1/accounts/" + e.acc + "/topups", fullAdminToken, `{"amount":1}`, nil, 400, nil},
		{"balance", "GET", "/v1/balance", e.key, "", nil, 200, []string{`"balance_micros":4000000`, `"prepaid":true`}},
		{"ledger", "GET", "/v1/ledger", e.key, "", nil, 200, []string{`"kind":"call"`, `"kind":"topup"`}},
		{"issue the running month", "POST", "/v1/admin/invoices", fullAdminToken, `{"month":"2026-12"}`, nil, 409,
			[]string{`"code":"conflict"`, `"field":"month"`, `2026-12 (UTC) has not ended: it can be invoiced from 2027-01-01T00:00:00Z`}},
		{"issue a future month", "POST", "/v1/admin/invoices", fullAdminToken, `{"month":"2027-01","account_id":"` + e.acc + `"}`, nil, 409,
			[]string{`"code":"conflict"`, `"field":"month"`}},
		{"issue needs admin", "POST", "/v1/admin/invoices", e.key, `{"month":"2026-11"}`, nil, 401, nil},
		{"issue a bad month", "POST", "/v1/admin/invoices", fullAdminToken, `{"month":"2026-13"}`, nil, 400, []string{`"field":"month"`}},
		{"issue an unknown account", "POST", "/v1/admin/invoices", fullAdminToken, `{"month":"2026-11","account_id":"x"}`, nil, 404, nil},
		{"draft the running month", "POST", "/v1/admin/invoices", fullAdminToken, `{"month":"2026-12","draft":true}`, nil, 200, []string{`{"invoices":[]}`}},
		{"issue an issued month again", "POST", "/v1/admin/invoices", fullAdminToken, `{"month":"2026-10"}`, nil, 201, []string{`{"invoices":[]}`}},
		{"jobs need admin", "GET", "/v1/admin/jobs", e.key, "", nil, 401, nil},
		{"jobs", "GET", "/v1/admin/jobs", fullAdminToken, "", nil, 200, []string{`"runs":[]`}},
		{"profile", "PUT", "/v1/admin/accounts/" + e.acc + "/billing", fullAdminToken, `{"tax_bps":1900,"tax_label":"VAT 19%","low_balance_micros":100}`, nil, 200,
			[]string{`"tax_bps":1900`, `"issuer":"default"`}},
		{"profile bad tax", "PUT", "/v1/admin/accounts/" + e.acc + "/billing", fullAdminToken, `{"tax_bps":10001}`, nil, 400, []string{`"field":"tax_bps"`}},
		{"profile unknown account", "GET", "/v1/admin/accounts/00000000-0000-0000-0000-000000000000/billing", fullAdminToken, "", nil, 404, nil},
		{"profile customer and policy", "PUT", "/v1/admin/accounts/" + e.other + "/billing", fullAdminToken,
			`{"customer_name":"Müller & Söhne GmbH","customer_address":"Hauptstraße 1\n10115 Berlin\nGermany","customer_tax_number":"DE123456789","missing_hangup":"max_duration"}`, nil, 200,
			[]string{`"missing_hangup":"max_duration"`, `"customer_name":"Müller \u0026 Söhne GmbH"`, `"customer_address":"Hauptstraße 1\n10115 Berlin\nGermany"`}},
		{"profile reads back", "GET", "/v1/admin/accounts/" + e.other + "/billing", fullAdminToken, "", nil, 200,
			[]string{`"missing_hangup":"max_duration"`, `"customer_tax_number":"DE123456789"`}},
		{"profile policy defaults to estimate", "GET", "/v1/admin/accounts/" + e.acc + "/billing", fullAdminToken, "", nil, 200,
			[]string{`"missing_hangup":"estimate"`, `"customer_name":""`}},
		{"profile bad policy", "PUT", "/v1/admin/accounts/" + e.acc + "/billing", fullAdminToken, `{"missing_hangup":"max"}`, nil, 400, []string{`"field":"missing_hangup"`}},
		{"profile name on two lines", "PUT", "/v1/admin/accounts/" + e.acc + "/billing", fullAdminToken, `{"customer_name":"a\nb"}`, nil, 400, []string{`"field":"customer_name"`}},
		{"profile needs admin", "PUT", "/v1/admin/accounts/" + e.acc + "/billing", e.key, `{"customer_name":"me"}`, nil, 401, nil},
		{"unrated calls", "GET", "/v1/admin/reports/unrated?month=2026-10", fullAdminToken, "", nil, 200, []string{`{"calls":[]}`}},
		{"unrated calls csv", "GET", "/v1/admin/reports/unrated?month=2026-10&account_id=" + e.acc, fullAdminToken, "", []string{"Accept", "text/csv"}, 200,
			[]string{"uuid,account_id,start_at,leg,callee,gateway,sell_deck_id,flag,billed_ms,sell,currency\n"}},
		{"unrated calls bad month", "GET", "/v1/admin/reports/unrated?month=2026", fullAdminToken, "", nil, 400, []string{`"field":"month"`}},
		{"unrated calls need admin", "GET", "/v1/admin/reports/unrated?month=2026-10", e.key, "", nil, 401, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, _ := e.do(t, tt.method, tt.path, tt.token, tt.body, tt.header...)
			if status != tt.status {
				t.Fatalf("got %d, want %d: %s", status, tt.status, body)
			}
			for _, want := range tt.contains {
				if !strings.Contains(body, want) {
					t.Errorf("body lacks %q: %s", want, body)
				}
			}
		})
	}
	_, page, hdr := e.do(t, "GET", "/v1/invoices/"+e.invoice+"?format=html", e.key, "")
	if !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") || !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'none'") ||
		!strings.Contains(page, "<svg") {
		t.Errorf("html headers %v", hdr)
	}
	var inv callbridge.Invoice
	_, body, _ := e.do(t, "GET", "/v1/invoices/"+e.invoice, e.key, "")
	if err := json.Unmarshal([]byte(body), &inv); err != nil || len(inv.Days) != 10 || inv.Subtotal != 100 || inv.Exact != 1000000 {
		t.Errorf("invoice %+v, %v", inv, err)
	}
}

// TestCreditNoteAPI re-rates an invoiced month down: November's run over
// the API drafts, then issues, a credit note for October referencing its
// invoice, which reads back as JSON, CSV and HTML; no negative invoice.
func TestCreditNoteAPI(t *testing.T) {
	e := newBillingEnv(t)
	if _, err := e.db.ExecContext(context.Background(), `UPDATE cdrs SET sell_micros = 49999 WHERE account_id = $1`, e.acc); err != nil {
		t.Fatal(err)
	}
	issue := func(body string, status int) []callbridge.Invoice {
		t.Helper()
		got, text, _ := e.do(t, "POST", "/v1/admin/invoices", fullAdminToken, body)
		if got != status {
			t.Fatalf("POST %s: got %d, want %d: %s", body, got, status, text)
		}
		var v struct{ Invoices []callbridge.Invoice }
		if err := json.Unmarshal([]byte(text), &v); err != nil {
			t.Fatal(err)
		}
		return v.Invoices
	}
	draft := issue(`{"month":"2026-11","draft":true}`, 200)
	if len(draft) != 1 || !draft[0].Draft || draft[0].Number != "DRAFT" || draft[0].ID != "" || draft[0].Kind != callbridge.DocCreditNote {
		t.Fatalf("draft = %+v", draft)
	}
	docs := issue(`{"month":"2026-11"}`, 201)
	if len(docs) != 1 {
		t.Fatalf("issued %+v, want one credit note", docs)
	}
	cn := docs[0]
	// 10 calls of 0.049999 EUR: 0.499990, billed 1.00 → -0.500010, -0.50.
	if cn.Kind != callbridge.DocCreditNote || cn.Number != "CB-CN-000001" || cn.CorrectsID != e.invoice || cn.CorrectsNumber != "CB-000001" ||
		cn.Period != "2026-10" || cn.Exact != -500010 || cn.Subtotal != -50 || cn.Total != -50 || cn.Rounding != 10 || cn.Draft {
		t.Errorf("credit note = %+v", cn)
	}
	if again := issue(`{"month":"2026-11"}`, 201); len(again) != 0 {
		t.Errorf("re-run issued %+v", again)
	}
	for _, tt := range []struct{ format, want string }{
		{"json", `"kind":"credit_note"`},
		{"csv", "CB-CN-000001,credit_note,CB-000001,credit,2026-10,4930,0,0,0.00,-0.50001,-0.50,EUR"},
		{"html", "Credit note CB-CN-000001"},
	} {
		status, body, _ := e.do(t, "GET", "/v1/invoices/"+cn.ID+"?format="+tt.format, e.key, "")
		if status != 200 || !strings.Contains(body, tt.want) {
			t.Errorf("%s: %d, lacks %q: %s", tt.format, status, tt.want, body)
		}
	}
	_, list, _ := e.do(t, "GET", "/v1/invoices", e.key, "")
	if !strings.Contains(list, `"number":"CB-CN-000001","corrects_id":"`+e.invoice) || !strings.Contains(list, `"number":"CB-000001"`) {
		t.Errorf("list = %s", list)
	}
}

// TestCarrierReportLabelsInboundLegs: inbound legs have no carrier; the
// operator's report by carrier labels their row instead of leaving it
// blank.
func TestCarrierReportLabelsInboundLegs(t *testing.T) {
	e := newBillingEnv(t)
	_, err := e.db.ExecContext(context.Background(), `
		WITH g AS (SELECT gen_random_uuid() AS uuid, '2026-10-05T09:00:00Z'::timestamptz AS start_at),
		k AS (INSERT INTO cdr_keys SELECT uuid, start_at FROM g RETURNING uuid)
		INSERT INTO cdrs (uuid, start_at, leg, account_id, binding_id, direction, caller, callee, presented, gateway, node,
		                  answer_at, end_at, duration_ms, bill_ms, hangup_cause, disposition, sell_micros, sell_prefix, buy_micros)
		SELECT uuid, start_at, 'a', $1, NULL, 'inbound', '15551110001', '15559990001', '15551110001', '', 'n',
		       start_at, start_at + interval '1 minute', 60000, 60000, 'NORMAL_CLEARING', 'answered', 0, '', 0
		FROM g`, e.acc)
	if err != nil {
		t.Fatal(err)
	}
	status, body, _ := e.do(t, "GET", "/v1/admin/accounts/"+e.acc+"/reports/usage?from=2026-10-01&to=2026-11-01&group_by=carrier", fullAdminToken, "", "Accept", "text/csv")
	if status != 200 || !strings.Contains(body, "\n,inbound legs (no carrier),1,1,") || !strings.Contains(body, ",EUR,,\n") {
		t.Errorf("got %d:\n%s\nwant a row labelled inbound legs (no carrier), without attempts or ratio", status, body)
	}
}

// TestCarrierReportAttempts: by carrier, the operator sees each gateway's
// attempts (a failed-over call counts one attempt on each gateway it
// tried), its answer-seizure ratio and its margin; failed attempts cost
// nothing.
func TestCarrierReportAttempts(t *testing.T) {
	e := newBillingEnv(t)
	// Two binding calls: the first fails over from cheap (503) to solid,
	// the second connects through cheap.
	_, err := e.db.ExecContext(context.Background(), `
		WITH g (n, gateway, attempt, answered, sell, buy) AS (VALUES
			(1, 'cheap', 1, false, 0, 0), (1, 'solid', 2, true, 100000, 90000),
			(2, 'cheap', 1, true, 100000, 30000)),
		c AS (SELECT gen_random_uuid() AS uuid, '2026-10-05T09:00:00Z'::timestamptz + n * interval '1 hour' AS start_at, * FROM g),
		k AS (INSERT INTO cdr_keys SELECT uuid, start_at FROM c RETURNING uuid)
		INSERT INTO cdrs (uuid, start_at, leg, account_id, direction, caller, callee, presented, gateway, node,
		                  answer_at, end_at, duration_ms, bill_ms, hangup_cause, disposition, sell_micros, sell_prefix, buy_micros, attempt)
		SELECT uuid, start_at, 'outbound', $1, 'outbound', '4930555000', '4917022222', '4930100100', gateway, 'n',
		       CASE WHEN answered THEN start_at END, start_at + interval '1 minute', 60000, CASE WHEN answered THEN 60000 ELSE 0 END,
		       CASE WHEN answered THEN 'NORMAL_CLEARING' ELSE 'NORMAL_TEMPORARY_FAILURE' END,
		       CASE WHEN answered THEN 'answered' ELSE 'failed' END, sell, '49', buy, attempt
		FROM c`, e.acc)
	if err != nil {
		t.Fatal(err)
	}
	status, body, _ := e.do(t, "GET", "/v1/admin/accounts/"+e.acc+"/reports/usage?from=2026-10-05&to=2026-10-06&group_by=carrier", fullAdminToken, "", "Accept", "text/csv")
	for _, want := range []string{
		"key,description,calls,answered,billed_ms,sell,buy,margin,currency,attempts,asr\n",
		"cheap,,2,1,60000,0.10,0.03,0.07,EUR,2,0.5000\n",
		"solid,,1,1,60000,0.10,0.09,0.01,EUR,1,1.0000\n",
		"total,,4,3,180000,0.30,0.16,0.14,EUR,4,0.7500\n", // with the env's own call of that day through carrier0
	} {
		if status != 200 || !strings.Contains(body, want) {
			t.Errorf("got %d:\n%s\nwant %q", status, body, want)
		}
	}
	status, body, _ = e.do(t, "GET", "/v1/admin/accounts/"+e.acc+"/reports/usage?from=2026-10-05&to=2026-10-06&group_by=carrier", fullAdminToken, "")
	if status != 200 || !strings.Contains(body, `{"key":"cheap","calls":2,"answered":1,"billed_ms":60000,"sell_micros":100000,"buy_micros":30000,"margin_micros":70000,"attempts":2,"asr":0.5}`) {
		t.Errorf("got %d: %s", status, body)
	}
}
