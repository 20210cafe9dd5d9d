package main

import (
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"callbridge/routing"
)

// TestGatewaySettings reads the carrier gateways' caps, breaker and poll
// interval, and refuses malformed ones naming the setting.
func TestGatewaySettings(t *testing.T) {
	parse := func(env map[string]string) (*Config, error) {
		env["CALLBRIDGE_DATABASE_URL"] = "postgres://x/y"
		return parseConfig("serve", nil, func(k string) string { return env[k] }, io.Discard)
	}
	cfg, err := parse(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.GatewayLimits) != 0 || cfg.BreakerFailures != 5 || cfg.BreakerCooldown != 30*time.Second || cfg.GatewayPollInterval != 10*time.Second {
		t.Errorf("defaults: %v %d %s %s", cfg.GatewayLimits, cfg.BreakerFailures, cfg.BreakerCooldown, cfg.GatewayPollInterval)
	}
	cfg, err = parse(map[string]string{
		"CALLBRIDGE_GATEWAY_LIMITS":        " carrier=120/10, backup=60 ,eu.trunk-2=0/5",
		"CALLBRIDGE_BREAKER_FAILURES":      "3",
		"CALLBRIDGE_BREAKER_COOLDOWN":      "1m",
		"CALLBRIDGE_GATEWAY_POLL_INTERVAL": "5s",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]routing.Limits{"carrier": {MaxActive: 120, MaxCPS: 10}, "backup": {MaxActive: 60}, "eu.trunk-2": {MaxCPS: 5}}
	if !maps.Equal(cfg.GatewayLimits, want) || cfg.BreakerFailures != 3 || cfg.BreakerCooldown != time.Minute || cfg.GatewayPollInterval != 5*time.Second {
		t.Errorf("got %v %d %s %s, want %v 3 1m 5s", cfg.GatewayLimits, cfg.BreakerFailures, cfg.BreakerCooldown, cfg.GatewayPollInterval, want)
	}
	for _, bad := range []struct{ env, v string }{
		{"CALLBRIDGE_GATEWAY_LIMITS", "carrier"},
		{"CALLBRIDGE_GATEWAY_LIMITS", "carrier=ten"},
		{"CALLBRIDGE_GATEWAY_LIMITS", "carrier=10/x"},
		{"CALLBRIDGE_GATEWAY_LIMITS", "carrier=-1"},
		{"CALLBRIDGE_GATEWAY_LIMITS", "carrier=1/20000"},
		{"CALLBRIDGE_GATEWAY_LIMITS", "car rier=1"},
		{"CALLBRIDGE_GATEWAY_LIMITS", "x}sofia/gateway/evil=1"},
		{"CALLBRIDGE_GATEWAY_LIMITS", "carrier=1,carrier=2"},
		{"CALLBRIDGE_BREAKER_FAILURES", "0"},
		{"CALLBRIDGE_BREAKER_COOLDOWN", "10ms"},
		{"CALLBRIDGE_GATEWAY_POLL_INTERVAL", "2h"},
	} {
		if _, err := parse(map[string]string{bad.env: bad.v}); err == nil || !strings.Contains(err.Error(), bad.env) {
			t.Errorf("%s=%q: %v, want an error naming the setting", bad.env, bad.v, err)
		}
	}
}
