package accounting

import (
	"encoding/csv"
	"net/http"
	"strconv"
	"strings"
	"time"

	"callbridge"
	"callbridge/controller/internal/handler"

	"github.com/gin-gonic/gin"
)

// cdrCSVColumns are the columns of the operator's CSV export, in order;
// an account's export leaves out cdrOperatorColumns.
var cdrCSVColumns = []string{
	"uuid", "other_uuid", "leg", "attempt", "callback_id", "binding_id", "direction", "caller", "callee", "presented",
	"gateway", "node", "start_at", "answer_at", "end_at", "duration_ms", "bill_ms", "hangup_cause", "q850",
	"disposition", "sell", "sell_currency", "sell_deck_id", "sell_deck_version", "buy", "buy_currency", "flags",
}

// cdrOperatorColumns are the CSV columns only the operator sees: which
// carrier gateway carried a leg and what the carrier charged.
var cdrOperatorColumns = map[string]bool{"gateway": true, "buy": true, "buy_currency": true}

// cdrBuyFlags are the flags about the carrier's price, which only the
// operator sees.
const cdrBuyFlags = callbridge.CDRBuyUnratedDefault | callbridge.CDRBuyUnrated

// accountCDR is a CDR as its account sees it: what the account was
// charged, never which carrier gateway carried the leg or what the
// carrier charged (the operator's business). Its nil fields shadow the
// CDR's fields of the same JSON names, so those are left out.
type accountCDR struct {
	*callbridge.CDR
	Gateway        *string             `json:"gateway,omitempty"`
	Buy            *int64              `json:"buy_micros,omitempty"`
	BuyCurrency    *string             `json:"buy_currency,omitempty"`
	BuyDeckID      *string             `json:"buy_deck_id,omitempty"`
	BuyDeckVersion *int64              `json:"buy_deck_version,omitempty"`
	BuyPrefix      *string             `json:"buy_prefix,omitempty"`
	Flags          callbridge.CDRFlags `json:"flags"`
}

func newAccountCDR(c *callbridge.CDR) accountCDR {
	return accountCDR{CDR: c, Flags: c.Flags &^ cdrBuyFlags}
}

// subjectAccount returns the account a listing or report is about: the
// caller's own, or for the operator (admin routes: accounts is set) the
// one in the path, which must exist (ENOTFOUND, not an empty list).
func subjectAccount(c *gin.Context, accounts callbridge.AccountService) (string, error) {
	if accounts == nil {
		return handler.Account(c).ID, nil
	}
	id := c.Param("id")
	if !callbridge.IsUUID(id) {
		return "", callbridge.Errorf(callbridge.ENOTFOUND, "account not found")
	}
	if _, err := accounts.Account(c.Request.Context(), id); err != nil {
		return "", err
	}
	return id, nil
}

// cdrFilter reads the query of GET /v1/cdrs: from and to (RFC 3339 or
// YYYY-MM-DD for midnight UTC, as the usage report takes them; on the
// start time, to exclusive), number (caller, callee or presented),
// binding_id, callback_id, cursor and limit.
func cdrFilter(c *gin.Context, rules callbridge.NumberRules) (callbridge.CDRFilter, error) {
	f := callbridge.CDRFilter{BindingID: c.Query("binding_id"), CallbackID: c.Query("callback_id"), Cursor: c.Query("cursor")}
	for _, q := range []struct {
		name string
		dst  *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if s := c.Query(q.name); s != "" {
			t, err := parseTimeOrDate(q.name, s)
			if err != nil {
				return f, err
			}
			*q.dst = t
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return f, callbridge.FieldError("to", "must be after from")
	}
	if s := c.Query("number"); s != "" {
		n, err := rules.Parse(s)
		if err != nil {
			return f, callbridge.FieldError("number", "%s", callbridge.ErrorMessage(err))
		}
		f.Number = string(n)
	}
	var err error
	f.Limit, err = handler.QueryLimit(c, 1000)
	return f, err
}

// ListCDRs answers GET /v1/cdrs with the account's CDRs, oldest first: a
// page of JSON with the next page's cursor, or, when the client accepts
// text/csv and not JSON, every CDR the filter selects as one CSV stream
// (from the cursor on, if one is given). The account sees its own charge
// (accountCDR); the operator (GET /v1/admin/accounts/{id}/cdrs) sees
// every field, carrier gateway and cost included; operator is set on that
// route only.
func ListCDRs(cdrs callbridge.CDRService, rules callbridge.NumberRules, operator callbridge.AccountService) gin.HandlerFunc {
	return func(c *gin.Context) {
		acc, err := subjectAccount(c, operator)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		f, err := cdrFilter(c, rules)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		if cdrWantsCSV(c.GetHeader("Accept")) {
			exportCDRs(c, cdrs, acc, f, operator != nil)
			return
		}
		list, next, err := cdrs.CDRs(c.Request.Context(), acc, f)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		if operator != nil {
			if list == nil {
				list = []*callbridge.CDR{}
			}
			c.JSON(http.StatusOK, gin.H{"cdrs": list, "next_cursor": next})
			return
		}
		view := make([]accountCDR, len(list))
		for i, r := range list {
			view[i] = newAccountCDR(r)
		}
		c.JSON(http.StatusOK, gin.H{"cdrs": view, "next_cursor": next})
	}
}

// cdrWantsCSV reports whether an Accept header asks for text/csv rather than
// JSON.
func cdrWantsCSV(accept string) bool {
	csvQ, jsonQ := -1.0, -1.0
	for _, part := range strings.Split(accept, ",") {
		typ, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		switch strings.ToLower(strings.TrimSpace(typ)) {
		case "text/csv":
			csvQ = max(csvQ, q)
		case "application/json", "*/*", "application/*":
			jsonQ = max(jsonQ, q)
		}
	}
	return csvQ > 0 && csvQ >= jsonQ
}

// exportCDRs streams every selected CDR as CSV, page by page. Once the
// first row is written an error can only end the stream early; it is
// logged by the caller's request log as an aborted response.
func exportCDRs(c *gin.Context, cdrs callbridge.CDRService, acc string, f callbridge.CDRFilter, operator bool) {
	f.Limit = 1000
	list, next, err := cdrs.CDRs(c.Request.Context(), acc, f)
	if err != nil {
		handler.WriteError(c, err)
		return
	}
	c.Header("Content-Type", "text/csv; charset=utf-8")
	c.Header("Content-Disposition", `attachment; filename="cdrs.csv"`)
	c.Status(http.StatusOK)
	w := csv.NewWriter(c.Writer)
	w.Write(cdrCSVView(cdrCSVColumns, operator))
	for {
		for _, r := range list {
			w.Write(cdrCSVView(cdrCSVRow(r, operator), operator))
		}
		w.Flush()
		if next == "" || w.Error() != nil {
			return
		}
		f.Cursor = next
		if list, next, err = cdrs.CDRs(c.Request.Context(), acc, f); err != nil {
			c.Error(err)
			return
		}
	}
}

// CDRCSVHeader is the header of the CDR CSV export a customer
// (operator: false) or the operator (every column) sees.
func CDRCSVHeader(operator bool) []string { return cdrCSVView(cdrCSVColumns, operator) }

// cdrCSVView returns row (or the header) as the reader may see it: whole
// for the operator, without cdrOperatorColumns for an account.
func cdrCSVView(row []string, operator bool) []string {
	if operator {
		return row
	}
	out := make([]string, 0, len(row))
	for i, v := range row {
		if !cdrOperatorColumns[cdrCSVColumns[i]] {
			out = append(out, v)
		}
	}
	return out
}

// cdrCSVRow is r's row of cdrCSVColumns; for an account, its flags leave
// out the carrier's.
func cdrCSVRow(r *callbridge.CDR, operator bool) []string {
	flags := r.Flags
	if !operator {
		flags &^= cdrBuyFlags
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
	}
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	return []string{
		r.UUID, r.OtherUUID, r.Leg, attempt(r.Attempt), r.CallbackID, r.BindingID, r.Direction, cdrCSVSafe(r.Caller), cdrCSVSafe(r.Callee),
		cdrCSVSafe(r.Presented), cdrCSVSafe(r.Gateway), cdrCSVSafe(r.Node), ts(r.StartAt), ts(r.AnswerAt), ts(r.EndAt),
		i(r.DurationMS), i(r.BillMS), r.HangupCause, strconv.Itoa(r.Q850), r.Disposition,
		cdrMoney(r.Sell), r.SellCurrency, r.SellDeckID, i(r.SellDeckVersion), cdrMoney(r.Buy), r.BuyCurrency, flags.String(),
	}
}

// attempt writes a CDR's attempt number, empty for a leg no route plan
// routed.
func attempt(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// cdrMoney writes micro-units as a decimal amount with six decimals.
func cdrMoney(m int64) string {
	neg := m < 0
	if neg {
		m = -m
	}
	s := strconv.FormatInt(m/1_000_000, 10) + "." + cdrLeftPad(strconv.FormatInt(m%1_000_000, 10), 6)
	if neg {
		return "-" + s
	}
	return s
}

func cdrLeftPad(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return strings.Repeat("0", n-len(s)) + s
}

// cdrCSVSafe defuses values a spreadsheet would run as a formula.
func cdrCSVSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
