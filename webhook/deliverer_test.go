package webhook

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestWebhookRefusesPrivateAddresses(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"93.184.216.34:443", true},
		{"[2606:2800:220:1:248:1893:25c8:1946]:443", true},
		{"127.0.0.1:80", false},
		{"[::1]:80", false},
		{"10.1.2.3:80", false},
		{"172.16.0.1:80", false},
		{"192.168.1.1:80", false},
		{"169.254.169.254:80", false}, // cloud metadata
		{"100.64.0.1:80", false},      // carrier-grade NAT
		{"0.0.0.0:80", false},
		{"[fe80::1]:80", false},
		{"[fd00::1]:80", false},
		{"[::ffff:127.0.0.1]:80", false},
		{"224.0.0.1:80", false},
	} {
		err := publicAddressOnly("tcp", tc.addr, nil)
		if (err == nil) != tc.ok {
			t.Errorf("publicAddressOnly(%s) = %v, want allowed=%v", tc.addr, err, tc.ok)
		}
	}

	// Through the deliverer's client: a loopback receiver is refused unless
	// AllowPrivate is set.
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer recv.Close()
	for _, allow := range []bool{false, true} {
		d := NewDeliverer(nil, Config{AllowPrivate: allow})
		resp, err := d.client.Post(recv.URL, "application/json", strings.NewReader("{}"))
		if resp != nil {
			resp.Body.Close()
		}
		if allow && err != nil {
			t.Errorf("AllowPrivate: POST to %s failed: %v", recv.URL, err)
		}
		if !allow && !errors.Is(err, errPrivateAddress) {
			t.Errorf("POST to loopback %s = %v, want it refused", recv.URL, err)
		}
	}
}

// TestWebhookBackoff doubles the wait per attempt from MinBackoff up to
// MaxBackoff, with up to 10 % jitter on top.
func TestWebhookBackoff(t *testing.T) {
	d := NewDeliverer(nil, Config{MinBackoff: time.Second, MaxBackoff: time.Minute})
	tests := []struct {
		attempts int
		lo, hi   time.Duration
	}{
		{1, time.Second, 1100 * time.Millisecond},
		{2, 2 * time.Second, 2200 * time.Millisecond},
		{4, 8 * time.Second, 8800 * time.Millisecond},
		{30, time.Minute, 66 * time.Second},
	}
	for _, tt := range tests {
		if got := d.Backoff(tt.attempts); got < tt.lo || got > tt.hi {
			t.Errorf("Backoff(%d) = %v, want in [%v, %v]", tt.attempts, got, tt.lo, tt.hi)
		}
	}
}
