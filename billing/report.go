package billing

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"

	"callbridge"
	"callbridge/rating"
)

// Money formats micro-units as a decimal amount with at least two
// decimals: 1234500 → "1.2345", 1000000 → "1.00".
func Money(m int64) string {
	s := rating.FormatMoney(m)
	dot := -1
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			dot = i
		}
	}
	switch {
	case dot < 0:
		return s + ".00"
	case len(s)-dot == 2:
		return s + "0"
	}
	return s
}

// WriteUsageJSON writes a usage report as JSON.
func WriteUsageJSON(w io.Writer, r *callbridge.UsageReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// usageCSVHeader is the header row of a usage report in CSV with costs;
// without them it lacks "buy" and "margin".
func usageCSVHeader(withCosts bool) []string {
	if !withCosts {
		return []string{"key", "description", "calls", "answered", "billed_ms", "sell", "currency"}
	}
	return []string{"key", "description", "calls", "answered", "billed_ms", "sell", "buy", "margin", "currency"}
}

// WriteUsageCSV writes a usage report as CSV: one row per group, then a
// total row. Amounts are decimal currency units. withCosts adds the
// carriers' cost and the margin (the operator's view; an account's own
// report leaves them out). A report by carrier ends each row with the
// gateway's attempts and answer-seizure ratio (4 decimals).
func WriteUsageCSV(w io.Writer, r *callbridge.UsageReport, withCosts bool) error {
	cw := csv.NewWriter(w)
	carrier := r.GroupBy == callbridge.GroupByCarrier
	header := usageCSVHeader(withCosts)
	if carrier {
		header = append(header, "attempts", "asr")
	}
	cw.Write(header)
	row := func(u callbridge.UsageRow) {
		rec := []string{csvSafe(u.Key), csvSafe(u.Description), itoa(u.Calls), itoa(u.Answered), itoa(u.BilledMS), Money(u.Sell)}
		if withCosts {
			rec = append(rec, Money(u.Buy), Money(u.Margin))
		}
		rec = append(rec, r.Currency)
		if carrier {
			// The row of legs without a carrier has no ratio.
			attempts, asr := "", ""
			if u.ASR != nil {
				attempts, asr = itoa(u.Attempts), strconv.FormatFloat(*u.ASR, 'f', 4, 64)
			}
			rec = append(rec, attempts, asr)
		}
		cw.Write(rec)
	}
	for _, u := range r.Rows {
		row(u)
	}
	row(r.Total)
	cw.Flush()
	return cw.Error()
}

// WriteInvoiceJSON writes an invoice as JSON.
func WriteInvoiceJSON(w io.Writer, inv *callbridge.Invoice) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(inv)
}

// invoiceCSVHeader is the header row of an invoice or credit note in
// CSV.
func invoiceCSVHeader() []string {
	return []string{"document", "document_kind", "corrects", "kind", "period", "destination", "calls", "answered",
		"billed_minutes", "exact_amount", "amount", "currency"}
}

// WriteInvoiceCSV writes an invoice's or credit note's lines as CSV, then
// its rounding, subtotal, tax and total rows. amount is in the
// currency's minor unit (what is due), exact_amount the lines' exact sum
// of rated CDRs (micro-units, as decimals); the rounding row is what
// rounding the lines changed.
func WriteInvoiceCSV(w io.Writer, inv *callbridge.Invoice) error {
	cw := csv.NewWriter(w)
	cw.Write(invoiceCSVHeader())
	due := func(minor int64) string { return callbridge.FormatMinor(minor, inv.Exponent) }
	row := func(kind, period, dest, calls, answered, mins, exact, amount string) {
		cw.Write([]string{inv.Number, inv.Kind, inv.CorrectsNumber, kind, period, csvSafe(dest), calls, answered, mins, exact, amount, inv.Currency})
	}
	for _, l := range inv.Lines {
		row(l.Kind, l.Period, l.Destination, itoa(l.Calls), itoa(l.Answered), minutes(l.BilledMS), Money(l.Amount), due(l.AmountMinor))
	}
	row("rounding", inv.Period, "", "", "", "", Money(inv.Rounding), "")
	row("subtotal", inv.Period, "", "", "", "", Money(inv.Exact), due(inv.Subtotal))
	row("tax", inv.Period, taxLabel(inv), "", "", "", "", due(inv.Tax))
	row("total", inv.Period, "", "", "", "", "", due(inv.Total))
	cw.Flush()
	return cw.Error()
}

// WriteUnratedJSON writes a list of unrated calls as JSON.
func WriteUnratedJSON(w io.Writer, calls []callbridge.UnratedCall) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Calls []callbridge.UnratedCall `json:"calls"`
	}{calls})
}

// WriteUnratedCSV writes a list of unrated calls as CSV, one row per
// call: what an operator needs to add the missing rates (the callee is the
// number a rate's prefix must match) and to find the calls again.
func WriteUnratedCSV(w io.Writer, calls []callbridge.UnratedCall) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"uuid", "account_id", "start_at", "leg", "callee", "gateway", "sell_deck_id", "flag", "billed_ms", "sell", "currency"})
	for _, c := range calls {
		cw.Write([]string{c.UUID, c.AccountID, c.StartAt.UTC().Format(time.RFC3339Nano), c.Leg, csvSafe(c.Callee),
			csvSafe(c.Gateway), c.SellDeckID, c.Flag, itoa(c.BillMS), Money(c.Sell), c.Currency})
	}
	cw.Flush()
	return cw.Error()
}

// csvSafe keeps a spreadsheet from reading a cell as a formula.
func csvSafe(s string) string {
	if s != "" && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' || s[0] == '\r') {
		return "'" + s
	}
	return s
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// minutes formats milliseconds as minutes with two decimals, truncated.
func minutes(ms int64) string {
	neg := ms < 0
	if neg {
		ms = -ms
	}
	cents := ms / 600
	s := fmt.Sprintf("%d.%02d", cents/100, cents%100)
	if neg {
		return "-" + s
	}
	return s
}

func taxLabel(inv *callbridge.Invoice) string {
	if inv.TaxLabel != "" {
		return inv.TaxLabel
	}
	return fmt.Sprintf("Tax %s%%", strconv.FormatFloat(float64(inv.TaxBPS)/100, 'f', -1, 64))
}

// Chart is a bar chart of usage by day drawn as inline SVG.
type Chart struct {
	Width, Height int
	Bars          []Bar
	// Ticks are the horizontal guide lines with their labels.
	Ticks []Tick
	Max   int64
}

// Bar is one day of a Chart.
type Bar struct {
	X, Y, W, H int
	Label      string // day of month
	Title      string // tooltip: date and amount
}

// Tick is a guide line of a Chart.
type Tick struct {
	Y     int
	Label string
}

// DayChart lays out one bar per day of [from, to) (dates) with the
// amounts of days; days without usage get an empty bar.
func DayChart(from, to time.Time, days []callbridge.DayUsage, currency string) Chart {
	const w, h, left, bottom, top = 720, 220, 70, 24, 10
	byDay := map[string]int64{}
	var maxAmt int64
	for _, d := range days {
		byDay[d.Day] += d.Amount
	}
	var all []time.Time
	for t := from; t.Before(to) && len(all) < 62; t = t.AddDate(0, 0, 1) {
		all = append(all, t)
		if a := byDay[t.Format(time.DateOnly)]; a > maxAmt {
			maxAmt = a
		}
	}
	c := Chart{Width: w, Height: h, Max: maxAmt}
	if len(all) == 0 {
		return c
	}
	plotH := h - bottom - top
	slot := (w - left - 10) / len(all)
	for i, t := range all {
		a := byDay[t.Format(time.DateOnly)]
		bh := 0
		if maxAmt > 0 && a > 0 {
			bh = int((a*int64(plotH) + maxAmt - 1) / maxAmt)
		}
		c.Bars = append(c.Bars, Bar{
			X: left + i*slot + 1, Y: top + plotH - bh, W: max(slot-2, 1), H: bh,
			Label: strconv.Itoa(t.Day()),
			Title: fmt.Sprintf("%s: %s %s", t.Format(time.DateOnly), Money(a), currency),
		})
	}
	for i := 0; i <= 4; i++ {
		c.Ticks = append(c.Ticks, Tick{Y: top + plotH - plotH*i/4, Label: Money(maxAmt * int64(i) / 4)})
	}
	return c
}

var invoiceHTML = template.Must(template.New("invoice").Funcs(template.FuncMap{
	"money":   Money,
	"due":     callbridge.FormatMinor,
	"neg":     func(n int64) int64 { return -n },
	"minutes": minutes,
	"date":    func(t time.Time) string { return t.UTC().Format("2006-01-02") },
	"tax":     taxLabel,
	"lines":   addressLines,
	// span is the first and last day of a month "YYYY-MM", as dates of
	// the billing zone (PeriodStart and PeriodEnd are UTC instants).
	"span": func(period string) string {
		m, err := time.Parse("2006-01", period)
		if err != nil {
			return ""
		}
		return m.Format(time.DateOnly) + " to " + m.AddDate(0, 1, -1).Format(time.DateOnly)
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}} {{.Inv.Number}}</title>
<style>
/* The page fits the narrower of A4 and Letter (A4: 210 mm wide; Letter:
   279 mm high) with the margins below: the paper size is the printer's. */
@page { size: auto; margin: 12mm 15mm 14mm 15mm; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { font: 10pt/1.4 "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #222; margin: 2em auto; max-width: 180mm; padding: 0 4mm; }
h1 { font-size: 18pt; margin: 0 0 2mm; }
h2 { font-size: 11pt; margin: 6mm 0 2mm; }
.head { display: flex; justify-content: space-between; gap: 8mm; align-items: flex-start; }
.party { max-width: 95mm; overflow-wrap: break-word; }
.party .name { font-weight: bold; font-size: 11pt; }
.label { color: #666; font-size: 8pt; text-transform: uppercase; letter-spacing: 0.05em; margin-bottom: 1mm; }
.doc { text-align: right; }
.parties { display: flex; justify-content: space-between; gap: 8mm; margin-top: 6mm; }
table { border-collapse: collapse; width: 100%; margin: 2mm 0; }
th, td { padding: 1.2mm 2mm; border-bottom: 0.3mm solid #ddd; text-align: left; vertical-align: top; }
th { font-size: 8.5pt; color: #444; border-bottom: 0.5mm solid #222; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.dest { overflow-wrap: break-word; }
td.k { white-space: nowrap; }
tr.sum td { border-bottom: none; }
tr.total td { font-weight: bold; border-top: 0.5mm solid #222; border-bottom: none; font-size: 11pt; }
table.meta { width: auto; margin-left: auto; }
table.meta td { border: none; padding: 0.3mm 0 0.3mm 4mm; text-align: left; }
table.meta td:first-child { white-space: nowrap; }
table.meta td:first-child { color: #666; }
.chart svg { width: 100%; height: 42mm; display: block; }
svg text { font-size: 10px; fill: #555; }
.terms { margin-top: 6mm; padding-top: 2mm; border-top: 0.3mm solid #ddd; font-size: 9pt; }
.draft { color: #b00; font-weight: bold; }
@media print {
  body { margin: 0; padding: 0; max-width: none; font-size: 9pt; }
  .chart svg { height: 36mm; }
  thead { display: table-header-group; }
  tfoot { display: table-row-group; }
  tr, .head, .parties, .terms, .chart { break-inside: avoid; page-break-inside: avoid; }
  h2 { break-after: avoid; page-break-after: avoid; }
}
</style>
</head>
<body>
<div class="head">
<div class="party issuer">
<div class="label">From</div>
{{- if .Issuer.Name}}
<div class="name">{{.Issuer.Name}}</div>
{{- range lines .Issuer.Address}}
<div>{{.}}</div>
{{- end}}
{{- if .Issuer.TaxNumber}}
<div>Tax number: {{.Issuer.TaxNumber}}</div>
{{- end}}
{{- else}}
<div class="draft">Issuer not configured (CALLBRIDGE_ISSUER_NAME)</div>
{{- end}}
</div>
<div class="doc">
<h1>{{.Title}} {{.Inv.Number}}</h1>
{{- if .Inv.Draft}}
<div class="draft">Not issued: this draft binds nobody</div>
{{- end}}
<table class="meta">
{{- if .Inv.CorrectsNumber}}
<tr><td>Corrects invoice</td><td>{{.Inv.CorrectsNumber}}</td></tr>
{{- end}}
<tr><td>Issued</td><td>{{date .Inv.IssuedAt}}</td></tr>
<tr><td>Period</td><td>{{.Inv.Period}}: {{span .Inv.Period}}</td></tr>
{{- if not .Credit}}
<tr><td>Payment terms</td><td>{{.Inv.PaymentDays}} days after the period</td></tr>
<tr><td>Due</td><td><strong>{{date .Inv.DueAt}}</strong></td></tr>
{{- end}}
<tr><td>Currency</td><td>{{.Inv.Currency}}</td></tr>
</table>
</div>
</div>
<div class="parties">
<div class="party customer">
<div class="label">{{if .Credit}}Credited to{{else}}Bill to{{end}}</div>
{{- if .Inv.CustomerName}}
<div class="name">{{.Inv.CustomerName}}</div>
{{- range lines .Inv.CustomerAddress}}
<div>{{.}}</div>
{{- end}}
{{- if .Inv.CustomerTaxNumber}}
<div>Tax number: {{.Inv.CustomerTaxNumber}}</div>
{{- end}}
{{- end}}
<div>Account {{.Inv.AccountID}}</div>
</div>
</div>
{{- if not .Credit}}
<div class="chart">
<h2>Usage by day</h2>
<svg viewBox="0 0 {{.Chart.Width}} {{.Chart.Height}}" preserveAspectRatio="xMinYMid meet" role="img" aria-label="Charges by day">
{{- range .Chart.Ticks}}
<line x1="70" x2="{{$.Chart.Width}}" y1="{{.Y}}" y2="{{.Y}}" stroke="#e4e4e4"/>
<text x="64" y="{{.Y}}" text-anchor="end" dominant-baseline="middle">{{.Label}}</text>
{{- end}}
{{- range .Chart.Bars}}
<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}" fill="#3b6ea5"><title>{{.Title}}</title></rect>
<text x="{{.X}}" y="{{$.Chart.Height}}" dy="-8">{{.Label}}</text>
{{- end}}
</svg>
</div>
{{- end}}
<h2>Lines</h2>
<table class="lines">
<thead>
<tr><th>Kind</th><th>Period</th><th>Destination</th><th class="n">Calls</th><th class="n">Answered</th><th class="n">Minutes</th><th class="n">Exact</th><th class="n">Amount</th></tr>
</thead>
<tbody>
{{- range .Inv.Lines}}
<tr><td class="k">{{.Kind}}</td><td class="k">{{.Period}}</td><td class="dest">{{.Destination}}</td><td class="n">{{.Calls}}</td><td class="n">{{.Answered}}</td><td class="n">{{minutes .BilledMS}}</td><td class="n">{{money .Amount}}</td><td class="n">{{due .AmountMinor $.Inv.Exponent}}</td></tr>
{{- end}}
</tbody>
<tfoot>
<tr class="sum"><td colspan="6">Subtotal (lines rounded to the minor unit; rounding {{money .Inv.Rounding}})</td><td class="n">{{money .Inv.Exact}}</td><td class="n">{{due .Inv.Subtotal .Inv.Exponent}}</td></tr>
<tr class="sum"><td colspan="7">{{tax .Inv}}</td><td class="n">{{due .Inv.Tax .Inv.Exponent}}</td></tr>
{{- if .Credit}}
<tr class="total"><td colspan="7">Total credited {{.Inv.Currency}}</td><td class="n">{{due (neg .Inv.Total) .Inv.Exponent}}</td></tr>
{{- else}}
<tr class="total"><td colspan="7">Total due {{.Inv.Currency}}</td><td class="n">{{due .Inv.Total .Inv.Exponent}}</td></tr>
{{- end}}
</tfoot>
</table>
<div class="terms">
{{- if .Credit}}
This credit note reduces what is owed for {{.Inv.Period}}{{if .Inv.CorrectsNumber}} under invoice {{.Inv.CorrectsNumber}}{{end}} by {{due (neg .Inv.Total) .Inv.Exponent}} {{.Inv.Currency}}.
{{- else}}
Please pay {{due .Inv.Total .Inv.Exponent}} {{.Inv.Currency}} by {{date .Inv.DueAt}}{{if .Inv.PaymentDays}} ({{.Inv.PaymentDays}} days after the end of the period){{end}}, quoting {{.Inv.Number}}.
{{- end}}
Amounts are in {{.Inv.Currency}}; minutes are billed minutes, truncated to two decimals.
</div>
</body>
</html>
`))

// Issuer is who issues the documents: the operator's legal name, postal
// address and tax number (CALLBRIDGE_ISSUER_NAME, _ADDRESS,
// _TAX_NUMBER), printed on every invoice and credit note as they are
// when the page is rendered.
type Issuer struct {
	Name string
	// Address holds the postal address's lines separated by "\n" or ";".
	Address   string
	TaxNumber string
}

// Validate checks the issuer: single-line text of bounded length (the
// address may span lines), and a name whenever an address or tax number
// is given. It returns an EINVALID *callbridge.Error naming the field.
func (i Issuer) Validate() error {
	for _, f := range []struct {
		name, value string
		max         int
		multiline   bool
	}{{"issuer_name", i.Name, 200, false}, {"issuer_address", i.Address, 1000, true}, {"issuer_tax_number", i.TaxNumber, 64, false}} {
		if len(f.value) > f.max {
			return callbridge.FieldError(f.name, "must have at most %d bytes", f.max)
		}
		if p := callbridge.TextProblem(f.value, f.multiline); p != "" {
			return callbridge.FieldError(f.name, "%s", p)
		}
	}
	if i.Name == "" && (i.Address != "" || i.TaxNumber != "") {
		return callbridge.FieldError("issuer_name", "is required with an issuer address or tax number")
	}
	return nil
}

// addressLines splits an address into its lines: at line breaks and at
// ";", trimmed, empty lines dropped.
func addressLines(s string) []string {
	var out []string
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' || r == ';' }) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// WriteInvoiceHTML writes a printable HTML page of an invoice (issuer,
// customer, terms and due date, a bar chart of charges by day as inline
// SVG, its lines) or of a credit note (the invoice it corrects, its lines,
// the amount credited), issued by issuer. The page loads nothing from
// elsewhere and prints on A4 and Letter alike: the lines' header repeats
// on every page and no row is cut.
func WriteInvoiceHTML(w io.Writer, inv *callbridge.Invoice, issuer Issuer) error {
	from, _ := time.Parse("2006-01", inv.Period)
	chart := DayChart(from, from.AddDate(0, 1, 0), inv.Days, inv.Currency)
	credit := inv.Kind == callbridge.DocCreditNote
	title := "Invoice"
	if credit {
		title = "Credit note"
	}
	if inv.Draft {
		title = "Draft " + strings.ToLower(title)
	}
	return invoiceHTML.Execute(w, struct {
		Inv    *callbridge.Invoice
		Issuer Issuer
		Chart  Chart
		Title  string
		Credit bool
	}{inv, issuer, chart, title, credit})
}
