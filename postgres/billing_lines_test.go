package postgres_test

import (
	"context"
	"testing"
	"time"

	"callbridge"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"
)

// An invoice line holds one kind of charge: calls rated by the deck,
// calls priced by its default rate, calls no rate priced, and calls
// closed without a hangup (by the policy that priced them) are never
// summed under one label.
func TestInvoiceLinesSeparateDefaultUnratedAndEstimated(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewBillingStore(db, time.UTC, "test")
	acc := billingAccount(t, db, false)
	other := billingAccount(t, db, false)
	deck := rateDeck(t, db, acc, at("2026-10-01T00:00:00Z"), [2]string{"4930", "Berlin"})
	insertCDRs(t, db,
		cdr{account: acc, deck: deck, prefix: "4930", start: at("2026-10-05T10:00:00Z"), billMS: 60000, sell: 1000},
		cdr{account: acc, deck: deck, prefix: "", start: at("2026-10-05T11:00:00Z"), billMS: 600000, sell: 12314800,
			flags: []string{"unrated_default"}},
		cdr{uuid: "00000000-0000-4000-8000-000000000001", account: acc, deck: deck, prefix: "", start: at("2026-10-05T12:00:00Z"),
			billMS: 60000, flags: []string{"unrated"}},
		cdr{account: acc, deck: deck, prefix: "4930", start: at("2026-10-06T10:00:00Z"), billMS: 3600000, sell: 60000,
			flags: []string{"estimated"}},
		cdr{account: acc, deck: deck, prefix: "4930", start: at("2026-10-07T10:00:00Z"), billMS: 7200000, sell: 120000,
			flags: []string{"estimated", "max_duration"}},
		cdr{account: other, prefix: "", start: at("2026-10-08T10:00:00Z"), billMS: 60000, flags: []string{"unrated"}},
	)
	invs, err := s.IssueInvoices(ctx, 2026, time.October, acc, at("2026-11-02T00:00:00Z"))
	if err != nil || len(invs) != 1 {
		t.Fatalf("IssueInvoices = %v, %v", invs, err)
	}
	type line struct {
		calls  int64
		amount int64
	}
	got := map[string]line{}
	for _, l := range invs[0].Lines {
		got[l.Destination] = line{l.Calls, l.Amount}
	}
	want := map[string]line{
		"Berlin":                               {1, 1000},
		"Default rate: no rate for the number": {1, 12314800},
		"Unrated calls: no rate, not charged (bill unrated lists them)":      {1, 0},
		"Berlin (no hangup received: estimated, policy estimate)":            {1, 60000},
		"Berlin (no hangup received: maximum duration, policy max_duration)": {1, 120000},
	}
	if len(got) != len(want) {
		t.Errorf("lines = %+v, want %v", got, want)
	}
	for dest, w := range want {
		if got[dest] != w {
			t.Errorf("line %q = %+v, want %+v", dest, got[dest], w)
		}
	}

	// The operator's list of calls to fix: the unrated one and the one
	// the default rate priced, with the number a rate must match, for
	// the account asked about only.
	calls, err := s.UnratedCalls(ctx, 2026, time.October, acc)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 {
		t.Fatalf("UnratedCalls = %+v, want 2 calls", calls)
	}
	if c := calls[0]; c.Flag != "unrated_default" || c.Sell != 12314800 || c.Callee != "1234567" || c.Currency != "EUR" {
		t.Errorf("first unrated call = %+v, want the default-rate one to 1234567", c)
	}
	if c := calls[1]; c.Flag != "unrated" || c.UUID != "00000000-0000-4000-8000-000000000001" || c.Sell != 0 || c.SellDeckID != deck {
		t.Errorf("second unrated call = %+v, want the unrated one", c)
	}
	all, err := s.UnratedCalls(ctx, 2026, time.October, "")
	if err != nil || len(all) != 3 {
		t.Errorf("UnratedCalls of every account = %d calls, %v; want 3", len(all), err)
	}
	if _, err := s.UnratedCalls(ctx, 2026, 13, ""); err == nil {
		t.Error("UnratedCalls of month 13 succeeded")
	}
}

// An issued invoice keeps the customer and payment term of the profile
// as they were when it was issued.
func TestInvoiceKeepsTheCustomerAtIssue(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := postgres.NewBillingStore(db, time.UTC, "test")
	acc := billingAccount(t, db, false)
	p := &callbridge.BillingProfile{AccountID: acc, PaymentDays: 14, CustomerName: "Müller & Söhne GmbH",
		CustomerAddress: "Hauptstraße 1\n10115 Berlin", CustomerTaxNumber: "DE123456789"}
	if err := s.SetProfile(ctx, p); err != nil {
		t.Fatal(err)
	}
	insertCDRs(t, db, cdr{account: acc, prefix: "4930", start: at("2026-10-05T10:00:00Z"), billMS: 60000, sell: 1000000})
	invs, err := s.IssueInvoices(ctx, 2026, time.October, acc, at("2026-11-02T00:00:00Z"))
	if err != nil || len(invs) != 1 {
		t.Fatalf("IssueInvoices = %v, %v", invs, err)
	}
	p.CustomerName, p.CustomerAddress, p.PaymentDays = "Someone Else Ltd", "", 60
	if err := s.SetProfile(ctx, p); err != nil {
		t.Fatal(err)
	}
	got, err := s.Invoice(ctx, acc, invs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.CustomerName != "Müller & Söhne GmbH" || got.CustomerAddress != "Hauptstraße 1\n10115 Berlin" ||
		got.CustomerTaxNumber != "DE123456789" || got.PaymentDays != 14 || !got.DueAt.Equal(at("2026-11-15T00:00:00Z")) {
		t.Errorf("invoice customer %q %q %q, %d days due %v; want the profile at issue, 14 days",
			got.CustomerName, got.CustomerAddress, got.CustomerTaxNumber, got.PaymentDays, got.DueAt)
	}
	if back, err := s.Profile(ctx, acc); err != nil || back.CustomerName != "Someone Else Ltd" || back.MissingHangup != callbridge.HangupEstimate {
		t.Errorf("Profile = %+v, %v", back, err)
	}
}
