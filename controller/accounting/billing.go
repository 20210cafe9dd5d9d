// Package accounting is the HTTP API of what was used and what is owed:
// CDR listings and CSV exports, usage reports, invoices, balances, the
// ledger, top-ups, billing profiles and the billing job runs. Its handlers
// are registered in controller's routes.go; an account sees only its own
// records and charges, the operator also the carriers' side. It does not
// rate, bill or store anything itself (billing and the stores do).
package accounting

import (
	"bytes"
	"net/http"
	"strings"
	"time"

	"callbridge"
	"callbridge/billing"
	"callbridge/controller/internal/handler"

	"github.com/gin-gonic/gin"
)

// wantFormat picks the response format from ?format= or the Accept
// header: "json" (default), "csv" or, where allowed, "html".
func wantFormat(c *gin.Context, html bool) (string, error) {
	if f := c.Query("format"); f != "" {
		switch {
		case f == "json" || f == "csv" || (f == "html" && html):
			return f, nil
		case html:
			return "", callbridge.FieldError("format", "must be json, csv or html")
		}
		return "", callbridge.FieldError("format", "must be json or csv")
	}
	acc := c.GetHeader("Accept")
	switch {
	case strings.Contains(acc, "text/csv"):
		return "csv", nil
	case html && strings.Contains(acc, "text/html"):
		return "html", nil
	}
	return "json", nil
}

func billingLimit(c *gin.Context, def int) (int, error) {
	n, err := handler.QueryLimit(c, 1000)
	if n == 0 {
		n = def
	}
	return n, err
}

func ListJobRuns(svc callbridge.BillingService) gin.HandlerFunc {
	return func(c *gin.Context) {
		limit, err := billingLimit(c, 100)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		runs, err := svc.JobRuns(c.Request.Context(), c.Query("job"), limit)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{"runs": runs})
	}
}

// parseReportTime reads a report bound: an RFC 3339 time, or a date
// YYYY-MM-DD meaning midnight UTC.
func parseReportTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, callbridge.FieldError(field, "is required (RFC 3339 time or YYYY-MM-DD)")
	}
	return parseTimeOrDate(field, s)
}

// parseTimeOrDate reads a time bound of a query: an RFC 3339 time, or a
// date YYYY-MM-DD meaning midnight UTC, in UTC.
func parseTimeOrDate(field, s string) (time.Time, error) {
	layout := time.RFC3339Nano
	if len(s) == len(time.DateOnly) {
		layout = time.DateOnly
	}
	t, err := time.Parse(layout, s)
	if err != nil || t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}, callbridge.FieldError(field, "must be an RFC 3339 time or a YYYY-MM-DD date")
	}
	return t.UTC(), nil
}

// accountUsageRow is a usage row as its account sees it: what it was
// charged, without the carriers' cost and the margin (the operator's
// business; see accountCDR).
type accountUsageRow struct {
	callbridge.UsageRow
	Buy    *int64 `json:"buy_micros,omitempty"`
	Margin *int64 `json:"margin_micros,omitempty"`
}

// accountUsageReport is a usage report as its account sees it.
type accountUsageReport struct {
	*callbridge.UsageReport
	Rows  []accountUsageRow `json:"rows"`
	Total accountUsageRow   `json:"total"`
}

func newAccountUsageReport(r *callbridge.UsageReport) accountUsageReport {
	v := accountUsageReport{UsageReport: r, Rows: make([]accountUsageRow, len(r.Rows)), Total: accountUsageRow{UsageRow: r.Total}}
	for i, row := range r.Rows {
		v.Rows[i] = accountUsageRow{UsageRow: row}
	}
	return v
}

// UsageReport answers a usage report: to an account its own usage and
// charges (GET /v1/reports/usage), to the operator an account's with the
// carriers' cost, the margin and the grouping by carrier (GET
// /v1/admin/accounts/{id}/reports/usage).
func UsageReport(svc callbridge.BillingService, accounts callbridge.AccountService) gin.HandlerFunc {
	return func(c *gin.Context) {
		operator := accounts != nil
		acc, err := subjectAccount(c, accounts)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		format, err := wantFormat(c, false)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		var f callbridge.UsageFilter
		if f.From, err = parseReportTime("from", c.Query("from")); err != nil {
			handler.WriteError(c, err)
			return
		}
		if f.To, err = parseReportTime("to", c.Query("to")); err != nil {
			handler.WriteError(c, err)
			return
		}
		f.GroupBy = c.Query("group_by")
		if f.GroupBy == callbridge.GroupByCarrier && !operator {
			handler.WriteError(c, callbridge.FieldError("group_by", "must be day, destination or binding"))
			return
		}
		rep, err := svc.Usage(c.Request.Context(), acc, f)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		if format == "csv" {
			var buf bytes.Buffer
			if err := billing.WriteUsageCSV(&buf, rep, operator); err != nil {
				handler.WriteError(c, err)
				return
			}
			c.Header("Content-Disposition", `attachment; filename="usage.csv"`)
			c.Data(http.StatusOK, "text/csv; charset=utf-8", buf.Bytes())
			return
		}
		if operator {
			c.JSON(http.StatusOK, rep)
			return
		}
		c.JSON(http.StatusOK, newAccountUsageReport(rep))
	}
}

func ListInvoices(svc callbridge.BillingService) gin.HandlerFunc {
	return func(c *gin.Context) {
		invs, err := svc.Invoices(c.Request.Context(), handler.Account(c).ID)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{"invoices": invs})
	}
}

func GetInvoice(svc callbridge.BillingService, issuer billing.Issuer) gin.HandlerFunc {
	return func(c *gin.Context) {
		format, err := wantFormat(c, true)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		inv, err := svc.Invoice(c.Request.Context(), handler.Account(c).ID, c.Param("id"))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		var buf bytes.Buffer
		switch format {
		case "csv":
			err = billing.WriteInvoiceCSV(&buf, inv)
			c.Header("Content-Disposition", `attachment; filename="`+inv.Number+`.csv"`)
		case "html":
			err = billing.WriteInvoiceHTML(&buf, inv, issuer)
			// The page is self-contained: forbid anything it might load.
			c.Header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
		default:
			c.JSON(http.StatusOK, inv)
			return
		}
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		ct := map[string]string{"csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8"}[format]
		c.Data(http.StatusOK, ct, buf.Bytes())
	}
}

// issueInvoicesRequest is the body of POST /v1/admin/invoices.
type issueInvoicesRequest struct {
	// Month is the month to invoice, "YYYY-MM" in the billing zone.
	Month string `json:"month"`
	// AccountID limits the run to one account; empty runs every account.
	AccountID string `json:"account_id"`
	// Draft computes the documents without issuing them (any month).
	Draft bool `json:"draft"`
}

// IssueInvoices issues the invoices and credit notes of a closed month
// (201), or drafts them (200). A month that is not closed at the
// server's clock is 409 with the date it closes.
func IssueInvoices(svc callbridge.BillingService, now func() time.Time) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req issueInvoicesRequest
		if err := handler.DecodeJSON(c, &req); err != nil {
			handler.WriteError(c, err)
			return
		}
		m, err := time.Parse("2006-01", req.Month)
		if err != nil {
			handler.WriteError(c, callbridge.FieldError("month", "must be a month YYYY-MM"))
			return
		}
		issue, status := svc.IssueInvoices, http.StatusCreated
		if req.Draft {
			issue, status = svc.DraftInvoices, http.StatusOK
		}
		invs, err := issue(c.Request.Context(), m.Year(), m.Month(), req.AccountID, now())
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		if invs == nil {
			invs = []*callbridge.Invoice{}
		}
		c.JSON(status, gin.H{"invoices": invs})
	}
}

// topupRequest is the body of POST /v1/accounts/{id}/topups.
type topupRequest struct {
	// AmountMicros is the money added, in micro-units of the account's
	// currency.
	AmountMicros int64 `json:"amount_micros"`
	// Reference makes the top-up idempotent (a payment id).
	Reference string `json:"reference"`
}

func CreateTopup(svc callbridge.BillingService) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req topupRequest
		if err := handler.DecodeJSON(c, &req); err != nil {
			handler.WriteError(c, err)
			return
		}
		e, err := svc.Topup(c.Request.Context(), c.Param("id"), req.AmountMicros, req.Reference)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		b, err := svc.Balance(c.Request.Context(), c.Param("id"))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusCreated, gin.H{"entry": e, "balance": b})
	}
}

func GetBalance(svc callbridge.BillingService) gin.HandlerFunc {
	return func(c *gin.Context) {
		b, err := svc.Balance(c.Request.Context(), handler.Account(c).ID)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, b)
	}
}

func GetLedger(svc callbridge.BillingService) gin.HandlerFunc {
	return func(c *gin.Context) {
		limit, err := billingLimit(c, 100)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		es, err := svc.Ledger(c.Request.Context(), handler.Account(c).ID, limit)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{"entries": es})
	}
}

func GetBillingProfile(svc callbridge.BillingService) gin.HandlerFunc {
	return func(c *gin.Context) {
		p, err := svc.Profile(c.Request.Context(), c.Param("id"))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, p)
	}
}

// profileRequest is the body of PUT /v1/admin/accounts/{id}/billing.
type profileRequest struct {
	Issuer        string `json:"issuer"`
	TaxBPS        int64  `json:"tax_bps"`
	TaxLabel      string `json:"tax_label"`
	PaymentDays   *int64 `json:"payment_days"`
	LowBalance    *int64 `json:"low_balance_micros"`
	LowBalanceURL string `json:"low_balance_url"`
	// MissingHangup is "estimate" (default) or "max_duration".
	MissingHangup     string `json:"missing_hangup"`
	CustomerName      string `json:"customer_name"`
	CustomerAddress   string `json:"customer_address"`
	CustomerTaxNumber string `json:"customer_tax_number"`
}

func PutBillingProfile(svc callbridge.BillingService) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req profileRequest
		if err := handler.DecodeJSON(c, &req); err != nil {
			handler.WriteError(c, err)
			return
		}
		p := &callbridge.BillingProfile{
			AccountID: c.Param("id"), Issuer: req.Issuer, TaxBPS: req.TaxBPS, TaxLabel: req.TaxLabel,
			PaymentDays: 30, LowBalance: req.LowBalance, LowBalanceURL: req.LowBalanceURL,
			MissingHangup: req.MissingHangup, CustomerName: req.CustomerName,
			CustomerAddress: req.CustomerAddress, CustomerTaxNumber: req.CustomerTaxNumber,
		}
		if req.PaymentDays != nil {
			p.PaymentDays = *req.PaymentDays
		}
		if err := svc.SetProfile(c.Request.Context(), p); err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, p)
	}
}

// UnratedCalls lists the calls of a month that no rate priced, of one
// account (?account_id=) or of every account, for the operator to add the
// missing rates (GET /v1/admin/reports/unrated).
func UnratedCalls(svc callbridge.BillingService) gin.HandlerFunc {
	return func(c *gin.Context) {
		format, err := wantFormat(c, false)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		m, err := time.Parse("2006-01", c.Query("month"))
		if err != nil {
			handler.WriteError(c, callbridge.FieldError("month", "must be a month YYYY-MM"))
			return
		}
		calls, err := svc.UnratedCalls(c.Request.Context(), m.Year(), m.Month(), c.Query("account_id"))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		if format == "json" {
			c.JSON(http.StatusOK, gin.H{"calls": calls})
			return
		}
		var buf bytes.Buffer
		if err := billing.WriteUnratedCSV(&buf, calls); err != nil {
			handler.WriteError(c, err)
			return
		}
		c.Header("Content-Disposition", `attachment; filename="unrated-`+m.Format("2006-01")+`.csv"`)
		c.Data(http.StatusOK, "text/csv; charset=utf-8", buf.Bytes())
	}
}
