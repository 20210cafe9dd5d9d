package callbridge_test

import (
	"testing"
	"time"

	"callbridge"
)

func TestBindingRoutable(t *testing.T) {
	exp := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		status callbridge.BindingStatus
		now    time.Time
		want   bool
	}{
		{"active before expiry", callbridge.StatusActive, exp.Add(-time.Nanosecond), true},
		{"active at expiry", callbridge.StatusActive, exp, false},
		{"active after expiry", callbridge.StatusActive, exp.Add(time.Second), false},
		{"unbound", callbridge.StatusUnbound, exp.Add(-time.Hour), false},
		{"still binding", callbridge.StatusBinding, exp.Add(-time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &callbridge.Binding{Status: tt.status, ExpiresAt: exp}
			if got := b.Routable(tt.now); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBindingValidate(t *testing.T) {
	valid := func() *callbridge.Binding {
		return &callbridge.Binding{
			Mode: callbridge.ModeAXB, X: "4930100100", A: "4917011111", B: "4917022222",
			CallerDisplay: callbridge.DisplayX, ExpiresAt: time.Now().Add(time.Hour),
		}
	}
	tests := []struct {
		name  string
		edit  func(*callbridge.Binding)
		field string
	}{
		{"valid axb", func(*callbridge.Binding) {}, ""},
		{"valid xb", func(b *callbridge.Binding) { b.Mode, b.A = callbridge.ModeXB, "" }, ""},
		{"xb with a", func(b *callbridge.Binding) { b.Mode = callbridge.ModeXB }, "a"},
		{"axb without a", func(b *callbridge.Binding) { b.A = "" }, "a"},
		{"a equals b", func(b *callbridge.Binding) { b.A = b.B }, "a"},
		{"x equals b", func(b *callbridge.Binding) { b.X = b.B }, "x"},
		{"bad mode", func(b *callbridge.Binding) { b.Mode = "AB" }, "mode"},
		{"bad b", func(b *callbridge.Binding) { b.B = "12a" }, "b"},
		{"caller display on xb", func(b *callbridge.Binding) {
			b.Mode, b.A, b.CallerDisplay = callbridge.ModeXB, "", callbridge.DisplayCaller
		}, "caller_display"},
		{"bad caller display", func(b *callbridge.Binding) { b.CallerDisplay = "b" }, "caller_display"},
		{"external id with dollar", func(b *callbridge.Binding) { b.ExternalID = "${x}" }, "external_id"},
		{"webhook not http", func(b *callbridge.Binding) { b.WebhookURL = "file:///etc/passwd" }, "webhook_url"},
		{"no expiry", func(b *callbridge.Binding) { b.ExpiresAt = time.Time{} }, "expires_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := valid()
			tt.edit(b)
			err := b.Validate()
			if got := callbridge.ErrorField(err); got != tt.field || (tt.field != "" && callbridge.ErrorCode(err) != callbridge.EINVALID) {
				t.Errorf("got field %q (%v), want %q", got, err, tt.field)
			}
		})
	}
}

func TestBindingParty(t *testing.T) {
	axb := &callbridge.Binding{Mode: callbridge.ModeAXB, A: "4917011111", B: "4917022222"}
	xb := &callbridge.Binding{Mode: callbridge.ModeXB, B: "4917022222"}
	tests := []struct {
		b    *callbridge.Binding
		n    callbridge.Number
		want string
	}{
		{axb, "4917011111", "a"},
		{axb, "4917022222", "b"},
		{axb, "4917033333", ""},
		{axb, "", ""},
		{xb, "4917022222", "b"},
		{xb, "", ""},
	}
	for _, tt := range tests {
		if got := tt.b.Party(tt.n); got != tt.want {
			t.Errorf("Party(%q) of %s: got %q, want %q", tt.n, tt.b.Mode, got, tt.want)
		}
	}
}

func TestVirtualNumberValidate(t *testing.T) {
	tests := []struct {
		name  string
		n     callbridge.VirtualNumber
		field string
	}{
		{"valid", callbridge.VirtualNumber{Number: "4930100100", Gateway: "carrier-1"}, ""},
		{"gateway with slash", callbridge.VirtualNumber{Number: "4930100100", Gateway: "a/b"}, "gateway"},
		{"gateway empty", callbridge.VirtualNumber{Number: "4930100100"}, "gateway"},
		{"bad number", callbridge.VirtualNumber{Number: "+49", Gateway: "g"}, "number"},
		{"empty label", callbridge.VirtualNumber{Number: "4930100100", Gateway: "g", Labels: []string{""}}, "labels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := callbridge.ErrorField(tt.n.Validate()); got != tt.field {
				t.Errorf("got field %q, want %q", got, tt.field)
			}
		})
	}
}
