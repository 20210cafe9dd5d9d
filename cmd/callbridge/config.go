package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"callbridge"
	"callbridge/esl"
)

// promptCheckUUID stands in for a channel when a prompt path is checked
// against what uuid_broadcast accepts.
const promptCheckUUID = "00000000-0000-4000-8000-000000000000"

// Config is the configuration of `callbridge serve`. Every field comes from
// a flag or, when the flag is not given, from the environment variable
// named in its comment; the README lists them with their defaults.
type Config struct {
	// DatabaseURL is the PostgreSQL URL (CALLBRIDGE_DATABASE_URL). Required.
	DatabaseURL string
	// HTTPAddr is where the API listens (CALLBRIDGE_HTTP_ADDR, ":8080").
	HTTPAddr string
	// ESL lists the FreeSWITCH nodes' event sockets as host:port
	// (CALLBRIDGE_ESL, comma-separated, "127.0.0.1:8021").
	ESL []string
	// ESLPassword is the event-socket password (CALLBRIDGE_ESL_PASSWORD,
	// "ClueCon"). Never logged.
	ESLPassword string
	// MaxCPS caps new calls per second per node (CALLBRIDGE_MAX_CPS, 10).
	MaxCPS int
	// MaxCalls caps concurrent calls per node (CALLBRIDGE_MAX_CALLS, 500).
	MaxCalls int
	// AdminToken authorises /v1/admin (CALLBRIDGE_ADMIN_TOKEN). Empty
	// disables the admin API. Never logged.
	AdminToken string
	// DialplanUser and DialplanPassword are the HTTP basic-auth credential
	// mod_xml_curl presents on /fs/dialplan (CALLBRIDGE_DIALPLAN_USER,
	// "freeswitch"; CALLBRIDGE_DIALPLAN_PASSWORD, required to serve the
	// dialplan). Never logged.
	DialplanUser     string
	DialplanPassword string
	// DialplanAllow lists the networks allowed to call /fs/dialplan
	// (CALLBRIDGE_DIALPLAN_ALLOW, comma-separated CIDRs; empty allows all).
	DialplanAllow []netip.Prefix
	// DialplanTimeout is FreeSWITCH's xml_curl timeout, FS_DIALPLAN_TIMEOUT
	// (CALLBRIDGE_DIALPLAN_TIMEOUT, 2s): /fs/dialplan answers slower than
	// this from their arrival are counted in callbridge_dialplan_late_total.
	DialplanTimeout time.Duration
	// WebhookAllowPrivate lets webhooks reach loopback, private and
	// link-local addresses (CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE, false): only
	// for receivers on the operator's own network.
	WebhookAllowPrivate bool
	// WebhookSecret signs webhook bodies with HMAC-SHA256
	// (CALLBRIDGE_WEBHOOK_SECRET). Never logged.
	WebhookSecret string
	// Gateway is the carrier gateway callbacks are placed through
	// (CALLBRIDGE_GATEWAY, "carrier").
	Gateway string
	// LogLevel is debug, info, warn or error (CALLBRIDGE_LOG_LEVEL, "info").
	LogLevel slog.Level
	// LogFormat is json or text (CALLBRIDGE_LOG_FORMAT, "json").
	LogFormat string
	// SpoolDir holds CDR batches that could not reach PostgreSQL
	// (CALLBRIDGE_SPOOL_DIR, "./spool").
	SpoolDir string
	// ReportDir receives reports written by billing jobs
	// (CALLBRIDGE_REPORT_DIR, "./reports").
	ReportDir string
	// MetricsAddr, when set, serves /metrics on a separate listener
	// (CALLBRIDGE_METRICS_ADDR). Empty serves it on HTTPAddr behind the
	// admin token.
	MetricsAddr string
	// DrainTimeout bounds how long SIGTERM waits for live calls
	// (CALLBRIDGE_DRAIN_TIMEOUT, "60s").
	DrainTimeout time.Duration
	// TimeZone is the IANA zone cron schedules run in (CALLBRIDGE_TIMEZONE,
	// "UTC").
	TimeZone string
	// BindingMaxTTL is the longest life of a privacy-number binding
	// (CALLBRIDGE_BINDING_MAX_TTL, "720h").
	BindingMaxTTL time.Duration
	// RingTimeout is how long a binding call's target may ring
	// (CALLBRIDGE_RING_TIMEOUT, "30s").
	RingTimeout time.Duration
	// RecordDir is the directory on the FreeSWITCH host that binding call
	// recordings go to (CALLBRIDGE_RECORD_DIR,
	// "/var/lib/freeswitch/recordings/callbridge").
	RecordDir string
	// CountryCode turns national numbers ("0301234567") into E.164
	// (CALLBRIDGE_COUNTRY_CODE; empty accepts international forms only).
	CountryCode string
	// RateLimit is the requests per second each API key may make on /v1,
	// and RateBurst how many it may make at once (CALLBRIDGE_RATE_LIMIT,
	// "50/100": the rate, then the burst; "0" turns the limit off).
	RateLimit float64
	RateBurst int
	// Prompt files on the FreeSWITCH node, each an absolute path or "none"
	// for no prompt: PromptHold is what a callback asking for prompt
	// "hold" plays A while B rings (CALLBRIDGE_PROMPT_HOLD); A hears
	// PromptBBusy, PromptBNoAnswer or PromptCallFailed before being hung
	// up when B is busy, does not answer or fails otherwise
	// (CALLBRIDGE_PROMPT_B_BUSY, CALLBRIDGE_PROMPT_B_NO_ANSWER,
	// CALLBRIDGE_PROMPT_CALL_FAILED). The defaults are FreeSWITCH's 8 kHz
	// English prompts, which the docker/freeswitch image installs.
	PromptHold, PromptBBusy, PromptBNoAnswer, PromptCallFailed string
}

// promptNone is the prompt setting that plays nothing.
const promptNone = "none"

// callieIVR is where FreeSWITCH's 8 kHz English IVR prompts are installed.
const callieIVR = "/usr/share/freeswitch/sounds/en/us/callie/ivr/8000/"

// setting is one configuration knob: its flag name, environment variable,
// default and how to parse it into the Config.
type setting struct {
	flag, env, def, usage string
	set                   func(c *Config, v string) error
}

func settings() []setting {
	return []setting{
		{"database-url", "CALLBRIDGE_DATABASE_URL", "", "PostgreSQL URL", func(c *Config, v string) error { c.DatabaseURL = v; return nil }},
		{"http-addr", "CALLBRIDGE_HTTP_ADDR", ":8080", "HTTP listen address", func(c *Config, v string) error { c.HTTPAddr = v; return nil }},
		{"esl", "CALLBRIDGE_ESL", "127.0.0.1:8021", "FreeSWITCH event sockets, comma-separated host:port", func(c *Config, v string) error { c.ESL = splitList(v); return nil }},
		{"esl-password", "CALLBRIDGE_ESL_PASSWORD", "ClueCon", "event socket password", func(c *Config, v string) error { c.ESLPassword = v; return nil }},
		{"max-cps", "CALLBRIDGE_MAX_CPS", "10", "new calls per second per node", intSetter(func(c *Config, n int) { c.MaxCPS = n })},
		{"max-calls", "CALLBRIDGE_MAX_CALLS", "500", "concurrent calls per node", intSetter(func(c *Config, n int) { c.MaxCalls = n })},
		{"admin-token", "CALLBRIDGE_ADMIN_TOKEN", "", "operator token for /v1/admin", func(c *Config, v string) error { c.AdminToken = v; return nil }},
		{"dialplan-user", "CALLBRIDGE_DIALPLAN_USER", "freeswitch", "basic-auth user of /fs/dialplan", func(c *Config, v string) error { c.DialplanUser = v; return nil }},
		{"dialplan-password", "CALLBRIDGE_DIALPLAN_PASSWORD", "", "basic-auth password of /fs/dialplan", func(c *Config, v string) error { c.DialplanPassword = v; return nil }},
		{"dialplan-allow", "CALLBRIDGE_DIALPLAN_ALLOW", "", "CIDRs allowed to call /fs/dialplan", func(c *Config, v string) error {
			c.DialplanAllow = nil
			for _, s := range splitList(v) {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return fmt.Errorf("%q is not a CIDR", s)
				}
				c.DialplanAllow = append(c.DialplanAllow, p)
			}
			return nil
		}},
		{"dialplan-timeout", "CALLBRIDGE_DIALPLAN_TIMEOUT", "2s", "FreeSWITCH's xml_curl timeout (FS_DIALPLAN_TIMEOUT): slower /fs/dialplan answers count as late", durationSetter(func(c *Config, d time.Duration) { c.DialplanTimeout = d })},
		{"webhook-secret", "CALLBRIDGE_WEBHOOK_SECRET", "", "HMAC key for webhook signatures", func(c *Config, v string) error { c.WebhookSecret = v; return nil }},
		{"webhook-allow-private", "CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE", "false", "let webhooks reach private addresses", func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%q is not true or false", v)
			}
			c.WebhookAllowPrivate = b
			return nil
		}},
		{"gateway", "CALLBRIDGE_GATEWAY", "carrier", "carrier gateway for callbacks", func(c *Config, v string) error { c.Gateway = v; return nil }},
		{"log-level", "CALLBRIDGE_LOG_LEVEL", "info", "debug, info, warn or error", func(c *Config, v string) error { return c.LogLevel.UnmarshalText([]byte(v)) }},
		{"log-format", "CALLBRIDGE_LOG_FORMAT", "json", "json or text", func(c *Config, v string) error { c.LogFormat = v; return nil }},
		{"spool-dir", "CALLBRIDGE_SPOOL_DIR", "./spool", "CDR spool directory", func(c *Config, v string) error { c.SpoolDir = v; return nil }},
		{"report-dir", "CALLBRIDGE_REPORT_DIR", "./reports", "directory for billing reports", func(c *Config, v string) error { c.ReportDir = v; return nil }},
		{"metrics-addr", "CALLBRIDGE_METRICS_ADDR", "", "separate listen address for /metrics", func(c *Config, v string) error { c.MetricsAddr = v; return nil }},
		{"drain-timeout", "CALLBRIDGE_DRAIN_TIMEOUT", "60s", "how long SIGTERM waits for live calls", durationSetter(func(c *Config, d time.Duration) { c.DrainTimeout = d })},
		{"timezone", "CALLBRIDGE_TIMEZONE", "UTC", "IANA zone for cron schedules", func(c *Config, v string) error { c.TimeZone = v; return nil }},
		{"binding-max-ttl", "CALLBRIDGE_BINDING_MAX_TTL", "720h", "longest life of a binding", durationSetter(func(c *Config, d time.Duration) { c.BindingMaxTTL = d })},
		{"ring-timeout", "CALLBRIDGE_RING_TIMEOUT", "30s", "how long a binding call's target may ring", durationSetter(func(c *Config, d time.Duration) { c.RingTimeout = d })},
		{"record-dir", "CALLBRIDGE_RECORD_DIR", "/var/lib/freeswitch/recordings/callbridge", "recordings directory on the FreeSWITCH host", func(c *Config, v string) error { c.RecordDir = v; return nil }},
		{"country-code", "CALLBRIDGE_COUNTRY_CODE", "", "country code for national number forms", func(c *Config, v string) error { c.CountryCode = v; return nil }},
		{"rate-limit", "CALLBRIDGE_RATE_LIMIT", "50/100", "requests per second per API key, then the burst (0 disables)", parseRateLimit},
		{"prompt-hold", "CALLBRIDGE_PROMPT_HOLD", callieIVR + "ivr-hold_connect_call.wav", "file a callback's prompt \"hold\" plays A while B rings, or none", func(c *Config, v string) error { c.PromptHold = v; return nil }},
		{"prompt-b-busy", "CALLBRIDGE_PROMPT_B_BUSY", callieIVR + "ivr-user_busy.wav", "file A hears when B is busy, or none", func(c *Config, v string) error { c.PromptBBusy = v; return nil }},
		{"prompt-b-no-answer", "CALLBRIDGE_PROMPT_B_NO_ANSWER", callieIVR + "ivr-no_user_response.wav", "file A hears when B does not answer, or none", func(c *Config, v string) error { c.PromptBNoAnswer = v; return nil }},
		{"prompt-call-failed", "CALLBRIDGE_PROMPT_CALL_FAILED", callieIVR + "ivr-call_cannot_be_completed_as_dialed.wav", "file A hears when B fails otherwise, or none", func(c *Config, v string) error { c.PromptCallFailed = v; return nil }},
	}
}

// parseRateLimit reads "RATE/BURST" or "RATE" (the burst is then twice
// the rate, at least 1).
func parseRateLimit(c *Config, v string) error {
	r, b, hasBurst := strings.Cut(v, "/")
	rate, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
	if err != nil || rate < 0 || rate > 1e6 {
		return fmt.Errorf("%q: want requests per second (0 to 1000000), optionally /burst", v)
	}
	burst := max(int(2*rate), 1)
	if hasBurst {
		if burst, err = strconv.Atoi(strings.TrimSpace(b)); err != nil || burst < 1 || burst > 1000000 {
			return fmt.Errorf("%q: the burst must be 1 to 1000000", v)
		}
	}
	c.RateLimit, c.RateBurst = rate, burst
	return nil
}

func intSetter(f func(*Config, int)) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not an integer", v)
		}
		f(c, n)
		return nil
	}
}

func durationSetter(f func(*Config, time.Duration)) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 30s or 1h", v)
		}
		f(c, d)
		return nil
	}
}

// NumberRules returns how this deployment normalises numbers.
func (c *Config) NumberRules() callbridge.NumberRules {
	r := callbridge.DefaultNumberRules()
	if c.CountryCode != "" {
		r.CountryCode, r.TrunkPrefix = c.CountryCode, "0"
	}
	return r
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// parseConfig reads flags from args and the environment from getenv. Flags
// win over the environment, which wins over defaults. An error names the
// setting at fault.
func parseConfig(name string, args []string, getenv func(string) string, stderr io.Writer) (*Config, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	ss := settings()
	vals := make([]*string, len(ss))
	for i, s := range ss {
		vals[i] = fs.String(s.flag, "", fmt.Sprintf("%s (env %s, default %q)", s.usage, s.env, s.def))
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg := &Config{}
	for i, s := range ss {
		v, src := *vals[i], "--"+s.flag
		if v == "" {
			v, src = getenv(s.env), s.env
		}
		if v == "" {
			v, src = s.def, s.env+" default"
		}
		if err := s.set(cfg, v); err != nil {
			return nil, fmt.Errorf("invalid %s: %v", src, err)
		}
	}
	return cfg, cfg.Validate()
}

// Validate checks the configuration; an error names the setting.
func (c *Config) Validate() error {
	if c.DatabaseURL == "" {
		return fmt.Errorf("CALLBRIDGE_DATABASE_URL is required")
	}
	if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return fmt.Errorf("invalid CALLBRIDGE_DATABASE_URL: want postgres://user@host:port/db")
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return fmt.Errorf("invalid CALLBRIDGE_HTTP_ADDR %q: %v", c.HTTPAddr, err)
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("invalid CALLBRIDGE_METRICS_ADDR %q: %v", c.MetricsAddr, err)
		}
	}
	for _, a := range c.ESL {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("invalid CALLBRIDGE_ESL entry %q: want host:port", a)
		}
	}
	if c.MaxCPS < 1 || c.MaxCPS > 10000 {
		return fmt.Errorf("invalid CALLBRIDGE_MAX_CPS %d: want 1..10000", c.MaxCPS)
	}
	if c.MaxCalls < 1 || c.MaxCalls > 1000000 {
		return fmt.Errorf("invalid CALLBRIDGE_MAX_CALLS %d: want 1..1000000", c.MaxCalls)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return fmt.Errorf("invalid CALLBRIDGE_LOG_FORMAT %q: want json or text", c.LogFormat)
	}
	if c.DrainTimeout < 0 {
		return fmt.Errorf("invalid CALLBRIDGE_DRAIN_TIMEOUT: must not be negative")
	}
	if _, err := time.LoadLocation(c.TimeZone); err != nil {
		return fmt.Errorf("invalid CALLBRIDGE_TIMEZONE %q: %v", c.TimeZone, err)
	}
	if c.CountryCode != "" {
		if _, err := strconv.Atoi(c.CountryCode); err != nil || len(c.CountryCode) > 3 || c.CountryCode[0] == '0' {
			return fmt.Errorf("invalid CALLBRIDGE_COUNTRY_CODE %q: want 1 to 3 digits", c.CountryCode)
		}
	}
	if c.BindingMaxTTL < time.Minute {
		return fmt.Errorf("invalid CALLBRIDGE_BINDING_MAX_TTL: must be at least 1m")
	}
	if c.RingTimeout < time.Second || c.RingTimeout > 600*time.Second {
		return fmt.Errorf("invalid CALLBRIDGE_RING_TIMEOUT: want 1s..600s")
	}
	if !strings.HasPrefix(c.RecordDir, "/") || strings.ContainsAny(c.RecordDir, " \t\r\n{}[],|^&'\"$\\") {
		return fmt.Errorf("invalid CALLBRIDGE_RECORD_DIR %q: want an absolute path without spaces or special characters", c.RecordDir)
	}
	for _, p := range []struct{ env, path string }{
		{"CALLBRIDGE_PROMPT_HOLD", c.PromptHold}, {"CALLBRIDGE_PROMPT_B_BUSY", c.PromptBBusy},
		{"CALLBRIDGE_PROMPT_B_NO_ANSWER", c.PromptBNoAnswer}, {"CALLBRIDGE_PROMPT_CALL_FAILED", c.PromptCallFailed},
	} {
		if p.path == promptNone {
			continue
		}
		// The path goes into uuid_broadcast: accept exactly what it accepts.
		if _, err := esl.UUIDBroadcast(promptCheckUUID, p.path, "aleg"); err != nil {
			return fmt.Errorf("invalid %s %q: want an absolute path of A-Z, a-z, 0-9 and '_./-', or none", p.env, p.path)
		}
	}
	if c.Gateway == "" || strings.ContainsAny(c.Gateway, " \t\r\n{}[],|^&'\"\\/") {
		return fmt.Errorf("invalid CALLBRIDGE_GATEWAY %q: want a sofia gateway name", c.Gateway)
	}
	return nil
}
