package callbridge

import (
	"context"
	"fmt"
	"time"
)

// Outcomes of a job run (JobRun.Outcome).
const (
	RunRunning = "running" // started, not finished (or the process died)
	RunOK      = "ok"      // finished without error
	RunFailed  = "failed"  // finished with an error
)

// JobRun records one run of a scheduled job: which slot of its schedule
// it ran for, when, how it ended and how many rows it touched.
type JobRun struct {
	ID  int64  `json:"id" db:"id"`
	Job string `json:"job" db:"job"`
	// Slot is the scheduled time the run is for; a catch-up run carries
	// the slot it missed, a manual run the time it was asked for.
	Slot       time.Time  `json:"slot" db:"slot"`
	StartedAt  time.Time  `json:"started_at" db:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty" db:"finished_at"`
	Outcome    string     `json:"outcome" db:"outcome"`
	Rows       int64      `json:"rows" db:"rows"`
	Error      string     `json:"error,omitempty" db:"error"`
	// Node names the process that ran it (host and pid).
	Node string `json:"node" db:"node"`
}

// Usage groupings of a usage report (UsageFilter.GroupBy).
const (
	GroupByDay         = "day"
	GroupByDestination = "destination"
	GroupByCarrier     = "carrier"
	GroupByBinding     = "binding"
)

// UsageFilter selects an account's usage for a report: CDRs that started
// in [From, To), grouped by GroupBy.
type UsageFilter struct {
	From, To time.Time
	GroupBy  string
}

// Validate checks the filter: From before To, at most 366 days apart, a
// known grouping. It returns an EINVALID *Error naming the field.
func (f *UsageFilter) Validate() error {
	switch f.GroupBy {
	case GroupByDay, GroupByDestination, GroupByCarrier, GroupByBinding:
	case "":
		f.GroupBy = GroupByDay
	default:
		return FieldError("group_by", "must be day, destination, carrier or binding")
	}
	switch {
	case f.From.IsZero():
		return FieldError("from", "is required")
	case f.To.IsZero():
		return FieldError("to", "is required")
	case !f.From.Before(f.To):
		return FieldError("to", "must be after from")
	case f.To.Sub(f.From) > 366*24*time.Hour:
		return FieldError("to", "a report covers at most 366 days")
	}
	return nil
}

// UsageRow is one group of a usage report. Key is the day (YYYY-MM-DD in
// the billing zone), the destination prefix, the carrier gateway or the
// binding id, by the report's grouping; Description names a destination.
type UsageRow struct {
	Key         string `json:"key" db:"key"`
	Description string `json:"description,omitempty" db:"description"`
	Calls       int64  `json:"calls" db:"calls"`
	Answered    int64  `json:"answered" db:"answered"`
	BilledMS    int64  `json:"billed_ms" db:"billed_ms"`
	// Sell is what the account was charged, Buy what carriers cost and
	// Margin their difference, in micro-units of Currency.
	Sell   int64 `json:"sell_micros" db:"sell"`
	Buy    int64 `json:"buy_micros" db:"buy"`
	Margin int64 `json:"margin_micros" db:"margin"`
	// Attempts and ASR are set when the report groups by carrier, on the
	// rows of gateways and the total: Attempts counts the legs dialled
	// through the gateway (a call that failed over has a leg, and a CDR,
	// for each gateway it tried), ASR is the answer-seizure ratio,
	// Answered / Attempts, from 0 to 1 rounded to 4 decimals. The row of
	// legs without a carrier (inbound legs) has neither.
	Attempts int64    `json:"attempts,omitempty" db:"-"`
	ASR      *float64 `json:"asr,omitempty" db:"-"`
}

// SetASR sets r's Attempts to its Calls and its ASR from them.
func (r *UsageRow) SetASR() {
	r.Attempts = r.Calls
	asr := 0.0
	if r.Calls > 0 {
		asr = float64(r.Answered*10000/r.Calls) / 10000
	}
	r.ASR = &asr
}

// UsageReport is an account's usage over a period.
type UsageReport struct {
	AccountID string     `json:"account_id"`
	Currency  string     `json:"currency"`
	From      time.Time  `json:"from"`
	To        time.Time  `json:"to"`
	GroupBy   string     `json:"group_by"`
	Rows      []UsageRow `json:"rows"`
	Total     UsageRow   `json:"total"`
}

// Kinds of invoice line (InvoiceLine.Kind).
const (
	// LineUsage bills the invoice's own period.
	LineUsage = "usage"
	// LineDebit bills usage of an earlier, already invoiced period that
	// appeared after its invoice was issued (late CDRs, re-rating up).
	LineDebit = "debit"
	// LineCredit returns money billed for an earlier period whose usage
	// went down after its invoice was issued (re-rating down).
	LineCredit = "credit"
)

// InvoiceLine is one line of an invoice or credit note: the usage of one
// destination group in one period, or its correction.
type InvoiceLine struct {
	Kind string `json:"kind" db:"kind"`
	// Period is the month the usage belongs to, "YYYY-MM".
	Period string `json:"period" db:"period"`
	// Destination is the destination group (the rate's description, or
	// its prefix when it has none).
	Destination string `json:"destination" db:"destination"`
	Calls       int64  `json:"calls" db:"calls"`
	Answered    int64  `json:"answered" db:"answered"`
	BilledMS    int64  `json:"billed_ms" db:"billed_ms"`
	// Amount is the exact sum of the rated CDRs, in micro-units.
	Amount int64 `json:"amount_micros" db:"amount"`
	// AmountMinor is Amount rounded to the currency's minor unit
	// (RoundToMinor): what the line charges.
	AmountMinor int64 `json:"amount_minor" db:"amount_minor"`
}

// DayUsage is an account's usage on one day, for an invoice's chart.
type DayUsage struct {
	Day    string `json:"day" db:"day"` // YYYY-MM-DD
	Calls  int64  `json:"calls" db:"calls"`
	Amount int64  `json:"amount_micros" db:"amount"`
}

// Kinds of billing document (Invoice.Kind).
const (
	// DocInvoice bills a closed month: its usage, and the corrections of
	// earlier months that net to a charge.
	DocInvoice = "invoice"
	// DocCreditNote returns money: the corrections of one earlier month
	// that net to a credit. It references the invoice it corrects and is
	// numbered in its own sequence; an invoice is never negative.
	DocCreditNote = "credit_note"
)

// Invoice is a billing document: an account's invoice for one closed
// month, or a credit note (Kind). Once issued it never changes;
// corrections appear on later documents.
//
// Amounts due are whole minor units of the currency (ISO 4217: cents for
// EUR and USD, yen for JPY, fils for KWD; Exponent says which). Rounding
// happens in one place, the lines: each line's exact amount (micro-units,
// the sum of its rated CDRs, which keep their micro-units) is rounded
// half away from zero to minor units; the subtotal is the sum of the
// rounded lines; the tax is subtotal × TaxBPS / 10000 rounded half away
// from zero to minor units; the total is subtotal plus tax. Rounding is
// what the rounded lines differ from the exact ones, in micro-units.
//
// A credit note's lines and amounts are negative, so the sum of an
// account's documents is what it owes.
type Invoice struct {
	ID        string `json:"id,omitempty" db:"id"`
	AccountID string `json:"account_id" db:"account_id"`
	// Kind is DocInvoice or DocCreditNote.
	Kind string `json:"kind" db:"kind"`
	// Issuer is the entity issuing the document; Seq counts its
	// documents of this Kind without gaps and Number is the printed form,
	// such as "CB-000042" for an invoice or "CB-CN-000007" for a credit
	// note.
	Issuer string `json:"issuer" db:"issuer"`
	Seq    int64  `json:"seq" db:"seq"`
	Number string `json:"number" db:"number"`
	// CorrectsID and CorrectsNumber name the invoice a credit note
	// corrects: the one that billed Period (empty on an invoice). A
	// credit note has that invoice's Issuer, TaxBPS and TaxLabel.
	CorrectsID     string `json:"corrects_id,omitempty" db:"corrects_id"`
	CorrectsNumber string `json:"corrects_number,omitempty" db:"corrects_number"`
	// Period is the month billed (YYYY-MM); for a credit note, the month
	// whose charges it corrects.
	Period   string `json:"period" db:"period"`
	Currency string `json:"currency" db:"currency"`
	// Exponent is the currency's minor unit: amounts in minor units have
	// that many decimals (2: cents).
	Exponent int `json:"exponent" db:"exponent"`
	// PeriodStart and PeriodEnd bound the month in the billing zone,
	// [start, end), as UTC instants.
	PeriodStart time.Time `json:"period_start" db:"period_start"`
	PeriodEnd   time.Time `json:"period_end" db:"period_end"`
	IssuedAt    time.Time `json:"issued_at" db:"issued_at"`
	DueAt       time.Time `json:"due_at" db:"due_at"`
	// Exact is the sum of the lines' exact amounts, in micro-units.
	Exact int64 `json:"exact_micros" db:"exact"`
	// Subtotal is the sum of the lines' AmountMinor; Tax is Subtotal ×
	// TaxBPS / 10000 rounded half away from zero; Total is their sum.
	// All three are minor units.
	Subtotal int64  `json:"subtotal_minor" db:"subtotal"`
	TaxBPS   int64  `json:"tax_bps" db:"tax_bps"`
	TaxLabel string `json:"tax_label" db:"tax_label"`
	Tax      int64  `json:"tax_minor" db:"tax"`
	Total    int64  `json:"total_minor" db:"total"`
	// Rounding is Subtotal in micro-units minus Exact: what rounding the
	// lines to minor units added (negative: took away).
	Rounding int64         `json:"rounding_micros" db:"rounding"`
	Lines    []InvoiceLine `json:"lines,omitempty" db:"-"`
	// Days is the usage of the period by day as it stood at issue (an
	// invoice's chart; a credit note has none).
	Days []DayUsage `json:"days,omitempty" db:"-"`
	// CustomerName, CustomerAddress and CustomerTaxNumber are the
	// account's billing profile when the document was issued; empty on
	// documents issued before profiles had them. PaymentDays is the
	// payment term then (DueAt is PeriodEnd plus that many days).
	CustomerName      string `json:"customer_name,omitempty" db:"customer_name"`
	CustomerAddress   string `json:"customer_address,omitempty" db:"customer_address"`
	CustomerTaxNumber string `json:"customer_tax_number,omitempty" db:"customer_tax_number"`
	PaymentDays       int64  `json:"payment_days" db:"payment_days"`
	// Draft marks a document computed for an open period or a preview:
	// it was not issued, has no number and binds nobody.
	Draft bool `json:"draft,omitempty" db:"-"`
}

// TaxOf returns subtotal × bps / 10000 rounded half away from zero: the
// tax of a subtotal in minor units, in minor units.
func TaxOf(subtotal, bps int64) int64 {
	// subtotal × bps could overflow int64 for absurd subtotals; split
	// the subtotal so no product does.
	q, r := subtotal/10000, subtotal%10000
	tax := q * bps
	p := r * bps // |r| < 10000, bps <= 10000: fits
	tq, tr := p/10000, p%10000
	tax += tq
	if tr < 0 {
		tr = -tr
	}
	if 2*tr >= 10000 {
		if p < 0 {
			tax--
		} else {
			tax++
		}
	}
	return tax
}

// InvoiceMonthBounds returns the UTC instants bounding month y-m read in
// loc: [start, end).
func InvoiceMonthBounds(y int, m time.Month, loc *time.Location) (start, end time.Time) {
	return time.Date(y, m, 1, 0, 0, 0, 0, loc).UTC(), time.Date(y, m+1, 1, 0, 0, 0, 0, loc).UTC()
}

// MaxInvoiceGrace bounds the grace for late CDRs: a month must close
// before the next one ends.
const MaxInvoiceGrace = 27 * 24 * time.Hour

// CheckPeriodClosed returns nil when month y-m, read in loc, is closed at
// now: it ended at least grace (the time given to late CDRs) before now.
// Otherwise it returns an ECONFLICT *Error on field "month" saying when
// the month closes. It is the only decision on whether a month may be
// invoiced; the caller supplies the clock.
func CheckPeriodClosed(y int, m time.Month, loc *time.Location, grace time.Duration, now time.Time) error {
	_, end := InvoiceMonthBounds(y, m, loc)
	closes := end.Add(grace)
	if now.Before(closes) {
		state := "has not ended"
		if !now.Before(end) {
			state = "ended " + end.Format(time.RFC3339) + " but is in its grace for late CDRs"
		}
		return &Error{Code: ECONFLICT, Field: "month", Message: fmt.Sprintf(
			"%04d-%02d (%s) %s: it can be invoiced from %s (the month's end plus a grace of %s)",
			y, int(m), loc, state, closes.UTC().Format(time.RFC3339), grace)}
	}
	return nil
}

// LatestClosedMonth returns the latest month, read in loc, that is closed
// at now (CheckPeriodClosed).
func LatestClosedMonth(loc *time.Location, grace time.Duration, now time.Time) (int, time.Month) {
	t := now.Add(-grace).In(loc)
	m := time.Date(t.Year(), t.Month()-1, 1, 0, 0, 0, 0, time.UTC)
	return m.Year(), m.Month()
}

// BillingProfile is how an account is billed.
type BillingProfile struct {
	AccountID string `json:"account_id" db:"account_id"`
	// Issuer names the invoice number sequence; "default" unless set.
	Issuer string `json:"issuer" db:"issuer"`
	// TaxBPS is the tax rate in basis points (1900 = 19 %), TaxLabel its
	// printed name ("VAT 19%").
	TaxBPS   int64  `json:"tax_bps" db:"tax_bps"`
	TaxLabel string `json:"tax_label" db:"tax_label"`
	// PaymentDays is how long after the period an invoice is due.
	PaymentDays int64 `json:"payment_days" db:"payment_days"`
	// LowBalance, when set, is the prepaid balance under which a
	// low-balance webhook is sent (once per crossing) to LowBalanceURL.
	LowBalance    *int64 `json:"low_balance_micros,omitempty" db:"low_balance"`
	LowBalanceURL string `json:"low_balance_url,omitempty" db:"low_balance_url"`
	// MissingHangup is how a call leg whose hangup never arrives is
	// charged (HangupEstimate or HangupMaxDuration); HangupEstimate
	// unless set.
	MissingHangup string `json:"missing_hangup" db:"missing_hangup"`
	// CustomerName, CustomerAddress (lines separated by "\n") and
	// CustomerTaxNumber are the customer printed on the account's
	// documents, as they are when a document is issued.
	CustomerName      string `json:"customer_name" db:"customer_name"`
	CustomerAddress   string `json:"customer_address" db:"customer_address"`
	CustomerTaxNumber string `json:"customer_tax_number" db:"customer_tax_number"`
}

// Missing-hangup policies (BillingProfile.MissingHangup): how a call leg
// whose hangup never arrives is closed and charged, by the CDR sweep
// (cdr/sweep.go). Such a CDR is flagged estimated; under
// HangupMaxDuration also max_duration.
const (
	// HangupEstimate charges the leg until the moment it was found gone
	// from its node (reconciliation after a lost event connection), or
	// its maximum duration when it is found past it (the sweep): the
	// closest estimate of the real call.
	HangupEstimate = "estimate"
	// HangupMaxDuration charges the leg its maximum duration (the
	// account's grant, else the default maximum) from its answer, at the
	// rate in force, however it was found: a call whose end never
	// arrives is charged as the longest call it could have been.
	HangupMaxDuration = "max_duration"
)

// Validate checks the profile. It returns an EINVALID *Error naming the
// field.
func (p *BillingProfile) Validate() error {
	if p.Issuer == "" {
		p.Issuer = "default"
	}
	if len(p.Issuer) > 64 {
		return FieldError("issuer", "must have at most 64 characters")
	}
	for i := 0; i < len(p.Issuer); i++ {
		c := p.Issuer[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return FieldError("issuer", "may contain only letters, digits, '-' and '_'")
		}
	}
	if p.TaxBPS < 0 || p.TaxBPS > 10000 {
		return FieldError("tax_bps", "must be 0 to 10000 basis points")
	}
	if len(p.TaxLabel) > 64 {
		return FieldError("tax_label", "must have at most 64 characters")
	}
	if err := CheckText("tax_label", p.TaxLabel); err != nil {
		return err
	}
	if p.PaymentDays < 0 || p.PaymentDays > 365 {
		return FieldError("payment_days", "must be 0 to 365")
	}
	switch p.MissingHangup {
	case "":
		p.MissingHangup = HangupEstimate
	case HangupEstimate, HangupMaxDuration:
	default:
		return FieldError("missing_hangup", "must be %s or %s", HangupEstimate, HangupMaxDuration)
	}
	for _, f := range []struct {
		name, value string
		max         int
		multiline   bool
	}{
		{"customer_name", p.CustomerName, 200, false},
		{"customer_address", p.CustomerAddress, 1000, true},
		{"customer_tax_number", p.CustomerTaxNumber, 64, false},
	} {
		if len(f.value) > f.max {
			return FieldError(f.name, "must have at most %d bytes", f.max)
		}
		if pr := TextProblem(f.value, f.multiline); pr != "" {
			return FieldError(f.name, "%s", pr)
		}
	}
	if p.LowBalance != nil && *p.LowBalance < 0 {
		return FieldError("low_balance_micros", "must not be negative")
	}
	return ValidateWebhookURL(p.LowBalanceURL)
}

// Kinds of ledger entry (LedgerEntry.Kind).
const (
	LedgerTopup  = "topup"  // money added by the operator
	LedgerCall   = "call"   // a rated CDR of a prepaid account (negative)
	LedgerRerate = "rerate" // the difference when a CDR is re-rated
)

// LedgerEntry changes a prepaid balance. The balance is the sum of an
// account's entries.
type LedgerEntry struct {
	ID        int64  `json:"id" db:"id"`
	AccountID string `json:"account_id" db:"account_id"`
	Kind      string `json:"kind" db:"kind"`
	// Amount is positive for money in, negative for money out.
	Amount int64 `json:"amount_micros" db:"amount"`
	// Reference is the top-up's reference or the CDR's id.
	Reference string    `json:"reference" db:"reference"`
	CreatedAt time.Time `json:"created_at" db:"created_at"`
}

// Balance is a prepaid account's money: the ledger's sum, what live calls
// have reserved, and what is left to place new calls with.
type Balance struct {
	AccountID string `json:"account_id" db:"account_id"`
	Currency  string `json:"currency" db:"currency"`
	Prepaid   bool   `json:"prepaid" db:"prepaid"`
	Balance   int64  `json:"balance_micros" db:"balance"`
	Reserved  int64  `json:"reserved_micros" db:"reserved"`
	Available int64  `json:"available_micros" db:"available"`
}

// LowBalanceEvent says a prepaid balance went below its threshold.
type LowBalanceEvent struct {
	ID        int64     `json:"id" db:"id"`
	AccountID string    `json:"account_id" db:"account_id"`
	Balance   int64     `json:"balance_micros" db:"balance"`
	Threshold int64     `json:"threshold_micros" db:"threshold"`
	URL       string    `json:"-" db:"url"`
	CreatedAt time.Time `json:"created_at" db:"created_at"`
}

// Reservation is money a prepaid account's live call holds, so that
// concurrent calls cannot spend the same balance. It ends when the call's
// CDR is stored (which debits the real price), when it is released, or at
// ExpiresAt.
type Reservation struct {
	ID        string    `json:"id" db:"id"`
	AccountID string    `json:"account_id" db:"account_id"`
	CallID    string    `json:"call_id" db:"call_id"`
	Amount    int64     `json:"amount_micros" db:"amount"`
	MaxMS     int64     `json:"max_ms" db:"max_ms"`
	ExpiresAt time.Time `json:"expires_at" db:"expires_at"`
}

// Grant is the answer to a call authorisation: how long the call may
// last. For a prepaid account it holds a reservation; a postpaid account's
// calls are granted the maximum call duration and reserve nothing.
type Grant struct {
	Prepaid bool `json:"prepaid"`
	// MaxMS is the longest the call may last; the caller caps the call
	// with sched_hangup at this duration (VarMaxMS).
	MaxMS int64 `json:"max_ms"`
	// Reserved is the money held for the call (prepaid only).
	Reserved int64 `json:"reserved_micros"`
	// ReservationID is the held reservation (prepaid only).
	ReservationID string `json:"reservation_id,omitempty"`
}

// CallAuthorizer decides, before a callback leg or an inbound binding call
// is placed, whether the account can pay for it and for how long.
type CallAuthorizer interface {
	// AuthorizeCall prices a call of accountID to number, placed now as
	// the channel callID (the origination_uuid callbridge chooses), and
	// returns the longest affordable duration. For a prepaid account it
	// reserves the price of that duration until the channel's CDR is
	// stored. ENOFUNDS ("insufficient_funds") when the balance cannot pay
	// for the first billed increment; EINVALID for a malformed callID;
	// ECONFLICT when callID already holds a reservation.
	AuthorizeCall(ctx context.Context, accountID, callID string, number Number) (*Grant, error)
	// AuthorizeBridge is AuthorizeCall for an inbound call callID (to
	// inbound, such as a virtual number) bridged to target: both legs last
	// as long and one reservation, held for callID, pays for both. The
	// inbound leg counts only when the account's deck prices it.
	AuthorizeBridge(ctx context.Context, accountID, callID string, inbound, target Number) (*Grant, error)
	// ReleaseCall drops the reservation of a call that will produce no
	// CDR (it could not be placed). Releasing an unknown call is not an
	// error.
	ReleaseCall(ctx context.Context, callID string) error
}

// UnratedCall is a CDR that no rate of its account's deck priced: Flag
// "unrated" (nothing charged: the call awaits a rate and a re-rate) or
// "unrated_default" (charged by the deck's default rate). The operator
// adds rates for the callees listed, then re-rates the period.
type UnratedCall struct {
	UUID      string    `json:"uuid" db:"uuid"`
	AccountID string    `json:"account_id" db:"account_id"`
	StartAt   time.Time `json:"start_at" db:"start_at"`
	Leg       string    `json:"leg" db:"leg"`
	// Callee is the number rated: the one a rate's prefix must match.
	Callee  string `json:"callee" db:"callee"`
	Gateway string `json:"gateway,omitempty" db:"gateway"`
	// SellDeckID is the deck that priced the call; empty when the
	// account had no deck.
	SellDeckID string `json:"sell_deck_id,omitempty" db:"sell_deck_id"`
	Flag       string `json:"flag" db:"flag"`
	BillMS     int64  `json:"bill_ms" db:"bill_ms"`
	Sell       int64  `json:"sell_micros" db:"sell"`
	Currency   string `json:"currency" db:"currency"`
}

// MaxUnratedCalls bounds one listing of unrated calls.
const MaxUnratedCalls = 100_000

// BillingService is billing as the API sees it. Every method is scoped to
// one account except JobRuns, which is for the operator.
type BillingService interface {
	// JobRuns lists the latest runs of scheduled jobs, newest first; job
	// "" lists every job. EINVALID.
	JobRuns(ctx context.Context, job string, limit int) ([]JobRun, error)
	// Usage reports an account's usage. EINVALID.
	Usage(ctx context.Context, accountID string, f UsageFilter) (*UsageReport, error)
	// Invoices lists an account's invoices and credit notes, newest
	// first, without lines.
	Invoices(ctx context.Context, accountID string) ([]*Invoice, error)
	// Invoice returns one invoice or credit note of an account with its
	// lines and daily usage. ENOTFOUND.
	Invoice(ctx context.Context, accountID, id string) (*Invoice, error)
	// IssueInvoices issues the documents of month year-month for every
	// account, or for accountID only: an invoice per account with usage
	// in the month or corrections of earlier months netting to a charge,
	// and a credit note per earlier month whose corrections net to a
	// credit. A re-run issues nothing new. ECONFLICT when the month is
	// not closed at now (CheckPeriodClosed) or the account's rollups were
	// made in another zone; EINVALID, ENOTFOUND.
	IssueInvoices(ctx context.Context, year int, month time.Month, accountID string, now time.Time) ([]*Invoice, error)
	// DraftInvoices computes what IssueInvoices would issue at now, for
	// any month, closed or not, without issuing anything: the documents
	// are Draft and unnumbered. EINVALID, ENOTFOUND, ECONFLICT (zones).
	DraftInvoices(ctx context.Context, year int, month time.Month, accountID string, now time.Time) ([]*Invoice, error)
	// Topup credits a prepaid account. A repeated reference returns the
	// first entry and credits nothing. EINVALID, ENOTFOUND, ECONFLICT (the
	// account is postpaid, or the reference was used with another amount).
	Topup(ctx context.Context, accountID string, amount int64, reference string) (*LedgerEntry, error)
	// Balance returns an account's balance. ENOTFOUND.
	Balance(ctx context.Context, accountID string) (*Balance, error)
	// Ledger lists an account's newest ledger entries. ENOTFOUND.
	Ledger(ctx context.Context, accountID string, limit int) ([]LedgerEntry, error)
	// Profile returns how an account is billed. ENOTFOUND.
	Profile(ctx context.Context, accountID string) (*BillingProfile, error)
	// SetProfile stores how an account is billed. EINVALID, ENOTFOUND.
	SetProfile(ctx context.Context, p *BillingProfile) error
	// UnratedCalls lists the calls of month year-month (read in the
	// billing zone) that no rate priced, of accountID or of every account
	// (""), oldest first, at most MaxUnratedCalls. EINVALID, ENOTFOUND.
	UnratedCalls(ctx context.Context, year int, month time.Month, accountID string) ([]UnratedCall, error)
}
