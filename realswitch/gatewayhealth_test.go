//go:build realswitch

package realswitch_test

import (
	"callbridge/esl/freeswitch"
	"callbridge/internal/wait"
	"callbridge/realswitch"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestGatewayHealthInResolve runs the real controller against a real
// FreeSWITCH 1.10.12 with two carrier gateways, each in front of a sipp
// carrier that answers the OPTIONS pings freeswitch-conf's gateways send
// every 30 s. The controller's poll interval is an hour, so after the
// poll at connect only sofia::gateway_state events can tell it anything.
// Resolve shows both gateways up; then backup's carrier stops answering,
// FreeSWITCH marks the gateway DOWN at its next ping, and resolve skips
// it as sofia_down while carrier, capped by CALLBRIDGE_GATEWAY_LIMITS,
// stays kept; /metrics says the same.
func TestGatewayHealthInResolve(t *testing.T) {
	t.Parallel()
	own := startOwn(t, realswitch.Options{
		Carriers: []realswitch.CarrierOption{{Name: "backup"}},
		ControllerEnv: map[string]string{
			"CALLBRIDGE_GATEWAY_LIMITS":        "carrier=2/5",
			"CALLBRIDGE_GATEWAY_POLL_INTERVAL": "1h",
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	var plan struct {
		ID string `json:"id"`
	}
	if err := own.Admin.Do(ctx, "POST", "/v1/admin/route-plans", map[string]any{"name": "default", "default": true, "time_zone": "UTC", "currency": "EUR"}, http.StatusCreated, &plan); err != nil {
		t.Fatal(err)
	}
	admin := func(method, path, contentType, body string) (int, string) {
		req, err := http.NewRequestWithContext(ctx, method, own.Controller.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+own.Admin.Token)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := admin("POST", "/v1/admin/route-plans/"+plan.ID+"/routes", "text/csv", "prefix,strategy,gateways\n49,priority,backup;carrier\n"); code != http.StatusOK {
		t.Fatalf("import routes: %d %s", code, body)
	}
	resolve := func() (bool, string) {
		code, body := admin("GET", "/v1/admin/routes/resolve?number=%2B4930123456", "", "")
		var r struct {
			Resolution struct {
				Candidates []struct {
					Gateway string `json:"gateway"`
					Kept    bool   `json:"kept"`
					Reason  string `json:"reason"`
					Health  struct {
						Sofia     string `json:"sofia"`
						MaxActive int    `json:"max_active"`
					} `json:"health"`
				} `json:"candidates"`
			} `json:"resolution"`
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &r) != nil {
			return false, body
		}
		var parts []string
		for _, c := range r.Resolution.Candidates {
			parts = append(parts, c.Gateway+":"+c.Reason+"/"+c.Health.Sofia+"/max="+strconv.Itoa(c.Health.MaxActive))
		}
		return true, strings.Join(parts, " ")
	}
	until := func(what, want string, within time.Duration) {
		t.Helper()
		wait.ForState(t, what, func() (bool, string) {
			ok, got := resolve()
			return ok && got == want, got
		}, wait.Within(within), wait.Every(250*time.Millisecond))
	}
	until("both gateways up", "backup:unpriced/up/max=0 carrier:unpriced/up/max=2", 30*time.Second)

	// backup's carrier stops answering: its next OPTIONS ping fails.
	own.Carriers["backup"].Stop()
	stopped := time.Now()
	until("backup down", "carrier:unpriced/up/max=2 backup:sofia_down/down/max=0", 75*time.Second)
	t.Logf("backup DOWN in resolve %s after its carrier stopped (pings every 30 s)", time.Since(stopped).Round(time.Second))

	out, err := own.Switch.API(ctx, "sofia xmlstatus gateway backup")
	if err != nil {
		t.Fatal(err)
	}
	gws, err := freeswitch.ParseGatewayStatus(out)
	if err != nil || len(gws) != 1 || gws[0].Up() {
		t.Errorf("FreeSWITCH's view of backup: %+v %v, want DOWN", gws, err)
	}
	if log := own.Controller.Log(); !strings.Contains(log, "carrier: gateway state") || !strings.Contains(log, "gateway=backup status=DOWN") {
		t.Errorf("the controller did not log backup's sofia::gateway_state event")
	}
	_, metrics := admin("GET", "/metrics", "", "")
	for _, want := range []string{
		`callbridge_gateway_sofia_state{gateway="backup",state="down"} 1`,
		`callbridge_gateway_sofia_state{gateway="carrier",state="up"} 1`,
		`callbridge_gateway_max_calls{gateway="carrier"} 2`,
		`callbridge_gateway_max_cps{gateway="carrier"} 5`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
