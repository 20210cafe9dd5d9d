package billing_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/billing"
)

// sampleIssuer and sampleDocuments are an invoice a customer receives and
// the credit note correcting it, as the store returns them.
var sampleIssuer = billing.Issuer{Name: "Callbridge Telecom GmbH", Address: "Friedrichstraße 68; 10117 Berlin; Germany", TaxNumber: "DE298765432"}

func sampleDocuments() (inv, cn *callbridge.Invoice) {
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(0, 1, 0)
	inv = &callbridge.Invoice{
		ID: "6f1c0d7e-2b1a-4c43-9a52-0d1e2f3a4b5c", AccountID: "0d9b3a52-7c1e-4f6a-8b2d-3e4f5a6b7c8d",
		Kind: callbridge.DocInvoice, Issuer: "default", Seq: 42, Number: "CB-000042", Period: "2026-10",
		Currency: "EUR", Exponent: 2, PeriodStart: start, PeriodEnd: end,
		IssuedAt: end.Add(26 * time.Hour), DueAt: end.AddDate(0, 0, 30), PaymentDays: 30,
		CustomerName: "Müller & Söhne Logistik GmbH", CustomerAddress: "Hauptstraße 1\nHinterhaus, 3. OG\n20095 Hamburg\nGermany",
		CustomerTaxNumber: "DE123456789",
		TaxBPS:            1900, TaxLabel: "VAT 19%",
	}
	inv.Lines = []callbridge.InvoiceLine{
		{Kind: "usage", Period: "2026-10", Destination: "Germany Berlin", Calls: 1204, Answered: 988, BilledMS: 3_541_200, Amount: 70_824_000},
		{Kind: "usage", Period: "2026-10", Destination: "Germany Mobile", Calls: 311, Answered: 276, BilledMS: 1_122_000, Amount: 56_100_333},
		{Kind: "usage", Period: "2026-10", Destination: "Default rate: no rate for the number", Calls: 14, Answered: 12, BilledMS: 615_740, Amount: 12_314_800},
		{Kind: "usage", Period: "2026-10", Destination: "Unrated calls: no rate, not charged (bill unrated lists them)", Calls: 3, Answered: 3, BilledMS: 95_000},
		{Kind: "usage", Period: "2026-10", Destination: "Germany Berlin (no hangup received: maximum duration, policy max_duration)", Calls: 1, Answered: 1, BilledMS: 14_400_000, Amount: 4_800_000},
		{Kind: "debit", Period: "2026-09", Destination: "Germany Mobile", Calls: 2, Answered: 2, BilledMS: 180_000, Amount: 9_000_004},
	}
	for d := 0; d < 31; d++ {
		day := start.AddDate(0, 0, d)
		if day.Weekday() != time.Sunday {
			inv.Days = append(inv.Days, callbridge.DayUsage{Day: day.Format(time.DateOnly), Calls: 50, Amount: int64(3_000_000 + d*97_000)})
		}
	}
	for i := range inv.Lines {
		l := &inv.Lines[i]
		l.AmountMinor = callbridge.RoundToMinor(l.Amount, inv.Exponent)
		inv.Exact += l.Amount
		inv.Subtotal += l.AmountMinor
	}
	inv.Tax = callbridge.TaxOf(inv.Subtotal, inv.TaxBPS)
	inv.Total = inv.Subtotal + inv.Tax
	inv.Rounding = inv.Subtotal*10_000 - inv.Exact

	cn = &callbridge.Invoice{
		ID: "7a2d1e8f-3c2b-4d54-8b63-1e2f3a4b5c6d", AccountID: inv.AccountID, Kind: callbridge.DocCreditNote,
		Issuer: "default", Seq: 7, Number: "CB-CN-000007", CorrectsID: inv.ID, CorrectsNumber: inv.Number,
		Period: "2026-10", Currency: "EUR", Exponent: 2, PeriodStart: start, PeriodEnd: end,
		IssuedAt: end.AddDate(0, 1, 1), DueAt: end.AddDate(0, 1, 1),
		CustomerName: inv.CustomerName, CustomerAddress: inv.CustomerAddress, CustomerTaxNumber: inv.CustomerTaxNumber,
		TaxBPS: 1900, TaxLabel: "VAT 19%",
		Lines: []callbridge.InvoiceLine{{Kind: "credit", Period: "2026-10", Destination: "Germany Berlin", Calls: 0, BilledMS: -120_000, Amount: -86_112_473}},
	}
	cn.Lines[0].AmountMinor = callbridge.RoundToMinor(cn.Lines[0].Amount, 2)
	cn.Exact, cn.Subtotal = cn.Lines[0].Amount, cn.Lines[0].AmountMinor
	cn.Tax = callbridge.TaxOf(cn.Subtotal, cn.TaxBPS)
	cn.Total = cn.Subtotal + cn.Tax
	cn.Rounding = cn.Subtotal*10_000 - cn.Exact
	return inv, cn
}

func renderHTML(t testing.TB, inv *callbridge.Invoice, issuer billing.Issuer) string {
	t.Helper()
	var b bytes.Buffer
	if err := billing.WriteInvoiceHTML(&b, inv, issuer); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// A document a customer can receive names who issues it and to whom,
// with addresses and tax numbers, the payment terms and the due date, and
// carries print rules for paper.
func TestInvoiceHTMLNamesIssuerCustomerAndTerms(t *testing.T) {
	inv, cn := sampleDocuments()
	page := renderHTML(t, inv, sampleIssuer)
	for _, want := range []string{
		"Callbridge Telecom GmbH", "<div>Friedrichstraße 68</div>", "<div>10117 Berlin</div>", "Tax number: DE298765432",
		"Müller &amp; Söhne Logistik GmbH", "<div>Hinterhaus, 3. OG</div>", "<div>20095 Hamburg</div>", "Tax number: DE123456789",
		"Bill to", "<td>Payment terms</td><td>30 days after the period</td>", "<td>Due</td><td><strong>2026-12-01</strong></td>",
		"Please pay " + callbridge.FormatMinor(inv.Total, 2) + " EUR by 2026-12-01", "quoting CB-000042",
		"@page", "break-inside: avoid", "display: table-header-group",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("invoice HTML lacks %q", want)
		}
	}
	credit := renderHTML(t, cn, sampleIssuer)
	for _, want := range []string{"Credit note CB-CN-000007", "Corrects invoice", "Callbridge Telecom GmbH", "Credited to",
		"Müller &amp; Söhne Logistik GmbH", "Total credited EUR", "under invoice CB-000042"} {
		if !strings.Contains(credit, want) {
			t.Errorf("credit note HTML lacks %q", want)
		}
	}
	if strings.Contains(credit, "Payment terms") || strings.Contains(credit, "Please pay") {
		t.Error("a credit note asks for payment")
	}
	// Without a configured issuer the page says so instead of looking
	// complete.
	if p := renderHTML(t, inv, billing.Issuer{}); !strings.Contains(p, "Issuer not configured") {
		t.Error("a page without an issuer does not say it lacks one")
	}
}

func TestIssuerValidate(t *testing.T) {
	for _, tt := range []struct {
		in    billing.Issuer
		field string
	}{
		{billing.Issuer{}, ""},
		{sampleIssuer, ""},
		{billing.Issuer{Name: "A", Address: "line 1\nline 2"}, ""},
		{billing.Issuer{Address: "somewhere"}, "issuer_name"},
		{billing.Issuer{Name: "A\nB"}, "issuer_name"},
		{billing.Issuer{Name: "A", TaxNumber: strings.Repeat("9", 65)}, "issuer_tax_number"},
		{billing.Issuer{Name: "A", Address: "\x00"}, "issuer_address"},
	} {
		if got := callbridge.ErrorField(tt.in.Validate()); got != tt.field {
			t.Errorf("%+v: error on field %q, want %q", tt.in, got, tt.field)
		}
	}
}
