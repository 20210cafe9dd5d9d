package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"callbridge"
	"callbridge/billing"
	"callbridge/esl/freeswitch"
	"callbridge/routing"
)

// promptCheckUUID stands in for a channel when a prompt path is checked
// against what uuid_broadcast accepts.
const promptCheckUUID = "00000000-0000-4000-8000-000000000000"

// Config is the configuration of `callbridge serve`. Every field comes from
// a flag or, when the flag is not given, from the environment variable
// named in its comment; docs/configuration.md lists them with their defaults
// (TestSettingsTable holds it to settings()).
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
	// ESLProbeInterval is how often each node's readiness probe runs
	// (CALLBRIDGE_ESL_PROBE_INTERVAL, "10s"): a bgapi with our Job-UUID
	// whose BACKGROUND_JOB must come back.
	ESLProbeInterval time.Duration
	// ESLJobTimeout bounds the wait for a command's BACKGROUND_JOB beyond
	// an originate's ring time (CALLBRIDGE_ESL_JOB_TIMEOUT, "15s"); a node
	// that misses it is not ready until its probe passes again.
	ESLJobTimeout time.Duration
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
	// QueueWait is the admission bound (CALLBRIDGE_QUEUE_WAIT, 30s): see
	// callback.Config.QueueWait.
	QueueWait time.Duration
	// RefusedRetry is how long a callback whose leg A the nodes refuse is
	// placed again (CALLBRIDGE_REFUSED_RETRY, 60s).
	RefusedRetry time.Duration
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
	// GatewayLimits caps carrier gateways' concurrent calls and calls per
	// second across every controller (CALLBRIDGE_GATEWAY_LIMITS,
	// "NAME=CALLS/CPS,..."; 0 leaves one uncapped; empty caps none).
	GatewayLimits map[string]routing.Limits
	// BreakerFailures consecutive carrier failures open a gateway's
	// circuit breaker (CALLBRIDGE_BREAKER_FAILURES, 5), for
	// BreakerCooldown before a call probes it again
	// (CALLBRIDGE_BREAKER_COOLDOWN, "30s").
	BreakerFailures int
	BreakerCooldown time.Duration
	// MaxDeckRates caps the rates of one rate deck, an account's or a
	// gateway's (CALLBRIDGE_MAX_DECK_RATES, 1000000), and MaxAccountRates
	// those of all of one account's decks together
	// (CALLBRIDGE_MAX_ACCOUNT_RATES, 600000): every controller holds every
	// deck compiled in memory, about 250 bytes a rate (docs/capacity.md).
	MaxDeckRates    int
	MaxAccountRates int
	// GatewayPollInterval is how often each node is asked for its sofia
	// gateways' state (CALLBRIDGE_GATEWAY_POLL_INTERVAL, "10s"); changes
	// also arrive at once as sofia::gateway_state events.
	GatewayPollInterval time.Duration
	// LogLevel is debug, info, warn or error (CALLBRIDGE_LOG_LEVEL, "info").
	LogLevel slog.Level
	// LogFormat is json or text (CALLBRIDGE_LOG_FORMAT, "json").
	LogFormat string
	// StateDir holds the spool and the reports unless they are set
	// (CALLBRIDGE_STATE_DIR; default /var/lib/callbridge for root, else
	// $XDG_STATE_HOME/callbridge or ~/.local/state/callbridge). Never the
	// working directory: serve started in a checkout must not write into
	// it.
	StateDir string
	// SpoolDir holds CDR batches that could not reach PostgreSQL
	// (CALLBRIDGE_SPOOL_DIR, StateDir/spool).
	SpoolDir string
	// ReportDir receives reports written by billing jobs
	// (CALLBRIDGE_REPORT_DIR, StateDir/reports).
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
	// InvoiceGrace is how long after a month ends it stays open to late
	// CDRs before it may be invoiced (CALLBRIDGE_INVOICE_GRACE, "24h"; 0
	// to callbridge.MaxInvoiceGrace).
	InvoiceGrace time.Duration
	// Issuer is who issues invoices and credit notes, printed on them:
	// legal name, postal address (lines separated by ";") and tax number
	// (CALLBRIDGE_ISSUER_NAME, CALLBRIDGE_ISSUER_ADDRESS,
	// CALLBRIDGE_ISSUER_TAX_NUMBER; empty).
	Issuer billing.Issuer
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
	// AuthFailureLimit is how many failed API-key authentications per
	// second each client address may make, and AuthFailureBurst how many
	// at once (CALLBRIDGE_AUTH_FAILURE_LIMIT, "5/20"; "0" turns it off);
	// beyond, the address gets 429 without a database lookup.
	AuthFailureLimit float64
	AuthFailureBurst int
	// Prompt files on the FreeSWITCH node, each an absolute path or "none"
	// for no prompt: PromptHold is what a callback asking for prompt
	// "hold" plays A while B rings (CALLBRIDGE_PROMPT_HOLD); A hears
	// PromptBBusy, PromptBNoAnswer or PromptCallFailed before being hung
	// up when B is busy, does not answer or fails otherwise
	// (CALLBRIDGE_PROMPT_B_BUSY, CALLBRIDGE_PROMPT_B_NO_ANSWER,
	// CALLBRIDGE_PROMPT_CALL_FAILED). The defaults are FreeSWITCH's 8 kHz
	// English prompts, which the docker/freeswitch image installs.
	PromptHold, PromptBBusy, PromptBNoAnswer, PromptCallFailed string
	// Schedules overrides the cron expression of billing jobs, by job
	// name (CALLBRIDGE_SCHEDULE_<JOB>, e.g. CALLBRIDGE_SCHEDULE_ROLLUP;
	// "off" disables a job; see billing.DefaultSchedules).
	Schedules map[string]string
}

// scheduleEnv names the variable of a job's schedule.
func scheduleEnv(job string) string {
	return "CALLBRIDGE_SCHEDULE_" + strings.ToUpper(strings.ReplaceAll(job, "-", "_"))
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
		{"esl-probe-interval", "CALLBRIDGE_ESL_PROBE_INTERVAL", "10s", "how often each node's readiness probe runs", durationSetter(func(c *Config, d time.Duration) { c.ESLProbeInterval = d })},
		{"esl-job-timeout", "CALLBRIDGE_ESL_JOB_TIMEOUT", "15s", "wait for a command's result before the node is not ready", durationSetter(func(c *Config, d time.Duration) { c.ESLJobTimeout = d })},
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
		{"queue-wait", "CALLBRIDGE_QUEUE_WAIT", "30s", "callbacks due beyond what the nodes place in this long are refused with 503", durationSetter(func(c *Config, d time.Duration) { c.QueueWait = d })},
		{"refused-retry", "CALLBRIDGE_REFUSED_RETRY", "60s", "how long a callback whose leg A the nodes refuse is placed again", durationSetter(func(c *Config, d time.Duration) { c.RefusedRetry = d })},
		{"gateway", "CALLBRIDGE_GATEWAY", "carrier", "carrier gateway for callbacks", func(c *Config, v string) error { c.Gateway = v; return nil }},
		{"gateway-limits", "CALLBRIDGE_GATEWAY_LIMITS", "", "per-gateway caps across controllers: NAME=CALLS/CPS, comma-separated (0: no cap)", func(c *Config, v string) (err error) {
			c.GatewayLimits, err = parseGatewayLimits(v)
			return err
		}},
		{"breaker-failures", "CALLBRIDGE_BREAKER_FAILURES", "5", "consecutive carrier failures that open a gateway's circuit breaker", intSetter(func(c *Config, n int) { c.BreakerFailures = n })},
		{"max-deck-rates", "CALLBRIDGE_MAX_DECK_RATES", "1000000", "most rates one rate deck may hold (every controller holds every deck in memory)", intSetter(func(c *Config, n int) { c.MaxDeckRates = n })},
		{"max-account-rates", "CALLBRIDGE_MAX_ACCOUNT_RATES", "600000", "most rates one account's rate decks may hold together", intSetter(func(c *Config, n int) { c.MaxAccountRates = n })},
		{"breaker-cooldown", "CALLBRIDGE_BREAKER_COOLDOWN", "30s", "how long an open breaker skips its gateway before a call probes it", durationSetter(func(c *Config, d time.Duration) { c.BreakerCooldown = d })},
		{"gateway-poll-interval", "CALLBRIDGE_GATEWAY_POLL_INTERVAL", "10s", "how often each node is asked for its gateways' state", durationSetter(func(c *Config, d time.Duration) { c.GatewayPollInterval = d })},
		{"log-level", "CALLBRIDGE_LOG_LEVEL", "info", "debug, info, warn or error", func(c *Config, v string) error { return c.LogLevel.UnmarshalText([]byte(v)) }},
		{"log-format", "CALLBRIDGE_LOG_FORMAT", "json", "json or text", func(c *Config, v string) error { c.LogFormat = v; return nil }},
		{"state-dir", "CALLBRIDGE_STATE_DIR", "", "directory for the spool and reports (default /var/lib/callbridge as root, else $XDG_STATE_HOME/callbridge)", func(c *Config, v string) error { c.StateDir = v; return nil }},
		{"spool-dir", "CALLBRIDGE_SPOOL_DIR", "", "CDR spool directory (default <state dir>/spool)", func(c *Config, v string) error { c.SpoolDir = v; return nil }},
		{"report-dir", "CALLBRIDGE_REPORT_DIR", "", "directory for billing reports (default <state dir>/reports)", func(c *Config, v string) error { c.ReportDir = v; return nil }},
		{"metrics-addr", "CALLBRIDGE_METRICS_ADDR", "", "separate listen address for /metrics", func(c *Config, v string) error { c.MetricsAddr = v; return nil }},
		{"drain-timeout", "CALLBRIDGE_DRAIN_TIMEOUT", "60s", "how long SIGTERM waits for live calls", durationSetter(func(c *Config, d time.Duration) { c.DrainTimeout = d })},
		{"timezone", "CALLBRIDGE_TIMEZONE", "UTC", "IANA zone for cron schedules", func(c *Config, v string) error { c.TimeZone = v; return nil }},
		{"invoice-grace", "CALLBRIDGE_INVOICE_GRACE", defaultInvoiceGrace, "how long a month stays open to late CDRs before it may be invoiced", func(c *Config, v string) (err error) {
			c.InvoiceGrace, err = parseInvoiceGrace(v)
			return err
		}},
		{"issuer-name", "CALLBRIDGE_ISSUER_NAME", "", "legal name of the issuer printed on invoices and credit notes", func(c *Config, v string) error { c.Issuer.Name = v; return nil }},
		{"issuer-address", "CALLBRIDGE_ISSUER_ADDRESS", "", "the issuer's postal address, lines separated by ';'", func(c *Config, v string) error { c.Issuer.Address = v; return nil }},
		{"issuer-tax-number", "CALLBRIDGE_ISSUER_TAX_NUMBER", "", "the issuer's tax number (VAT id)", func(c *Config, v string) error { c.Issuer.TaxNumber = v; return nil }},
		{"binding-max-ttl", "CALLBRIDGE_BINDING_MAX_TTL", "720h", "longest life of a binding", durationSetter(func(c *Config, d time.Duration) { c.BindingMaxTTL = d })},
		{"ring-timeout", "CALLBRIDGE_RING_TIMEOUT", "30s", "how long a binding call's target may ring", durationSetter(func(c *Config, d time.Duration) { c.RingTimeout = d })},
		{"record-dir", "CALLBRIDGE_RECORD_DIR", "/var/lib/freeswitch/recordings/callbridge", "recordings directory on the FreeSWITCH host", func(c *Config, v string) error { c.RecordDir = v; return nil }},
		{"country-code", "CALLBRIDGE_COUNTRY_CODE", "", "country code for national number forms", func(c *Config, v string) error { c.CountryCode = v; return nil }},
		{"rate-limit", "CALLBRIDGE_RATE_LIMIT", "50/100", "requests per second per API key, then the burst (0 disables)", rateSetter(func(c *Config, r float64, b int) { c.RateLimit, c.RateBurst = r, b })},
		{"auth-failure-limit", "CALLBRIDGE_AUTH_FAILURE_LIMIT", "5/20", "failed API-key authentications per second per client address, then the burst (0 disables)", rateSetter(func(c *Config, r float64, b int) { c.AuthFailureLimit, c.AuthFailureBurst = r, b })},
		{"prompt-hold", "CALLBRIDGE_PROMPT_HOLD", callieIVR + "ivr-hold_connect_call.wav", "file a callback's prompt \"hold\" plays A while B rings, or none", func(c *Config, v string) error { c.PromptHold = v; return nil }},
		{"prompt-b-busy", "CALLBRIDGE_PROMPT_B_BUSY", callieIVR + "ivr-user_busy.wav", "file A hears when B is busy, or none", func(c *Config, v string) error { c.PromptBBusy = v; return nil }},
		{"prompt-b-no-answer", "CALLBRIDGE_PROMPT_B_NO_ANSWER", callieIVR + "ivr-no_user_response.wav", "file A hears when B does not answer, or none", func(c *Config, v string) error { c.PromptBNoAnswer = v; return nil }},
		{"prompt-call-failed", "CALLBRIDGE_PROMPT_CALL_FAILED", callieIVR + "ivr-call_cannot_be_completed_as_dialed.wav", "file A hears when B fails otherwise, or none", func(c *Config, v string) error { c.PromptCallFailed = v; return nil }},
	}
}

// gatewayName is what a sofia gateway in a route plan may be called.
var gatewayName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// parseGatewayLimits reads "NAME=CALLS/CPS,...": each gateway's most
// concurrent calls and calls per second, 0 for no cap ("NAME=CALLS"
// caps calls only).
func parseGatewayLimits(v string) (map[string]routing.Limits, error) {
	out := map[string]routing.Limits{}
	for _, item := range splitList(v) {
		name, caps, ok := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if !ok || !gatewayName.MatchString(name) {
			return nil, fmt.Errorf("%q: want NAME=CALLS/CPS with a gateway name of A-Z, a-z, 0-9 and '._-'", item)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("gateway %s is listed twice", name)
		}
		calls, cps, _ := strings.Cut(caps, "/")
		var l routing.Limits
		var err error
		if l.MaxActive, err = strconv.Atoi(strings.TrimSpace(calls)); err != nil || l.MaxActive < 0 || l.MaxActive > 1000000 {
			return nil, fmt.Errorf("%q: the concurrent calls must be 0 to 1000000", item)
		}
		if cps != "" {
			if l.MaxCPS, err = strconv.Atoi(strings.TrimSpace(cps)); err != nil || l.MaxCPS < 0 || l.MaxCPS > 10000 {
				return nil, fmt.Errorf("%q: the calls per second must be 0 to 10000", item)
			}
		}
		out[name] = l
	}
	return out, nil
}

// rateSetter reads "RATE/BURST" or "RATE" (the burst is then twice the
// rate, at least 1).
func rateSetter(f func(c *Config, rate float64, burst int)) func(*Config, string) error {
	return func(c *Config, v string) error { return parseRate(c, v, f) }
}

func parseRate(c *Config, v string, f func(c *Config, rate float64, burst int)) error {
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
	f(c, rate, burst)
	return nil
}

func (c *Config) validateRateCaps() error {
	if c.MaxDeckRates < 1 || c.MaxDeckRates > maxRatesSetting {
		return fmt.Errorf("invalid CALLBRIDGE_MAX_DECK_RATES %d: want 1..%d", c.MaxDeckRates, maxRatesSetting)
	}
	if c.MaxAccountRates < 1 || c.MaxAccountRates > maxRatesSetting {
		return fmt.Errorf("invalid CALLBRIDGE_MAX_ACCOUNT_RATES %d: want 1..%d", c.MaxAccountRates, maxRatesSetting)
	}
	return nil
}

// rateCaps reads CALLBRIDGE_MAX_DECK_RATES and
// CALLBRIDGE_MAX_ACCOUNT_RATES as serve does, for the tools that write
// rates: they must not store a deck the controllers would refuse.
func rateCaps(getenv func(string) string) (deck, account int, err error) {
	var c Config
	for _, s := range settings() {
		if s.env != "CALLBRIDGE_MAX_DECK_RATES" && s.env != "CALLBRIDGE_MAX_ACCOUNT_RATES" {
			continue
		}
		v := getenv(s.env)
		if v == "" {
			v = s.def
		}
		if err := s.set(&c, v); err != nil {
			return 0, 0, fmt.Errorf("invalid %s: %v", s.env, err)
		}
	}
	if err := c.validateRateCaps(); err != nil {
		return 0, 0, err
	}
	return c.MaxDeckRates, c.MaxAccountRates, nil
}

// maxRatesSetting bounds CALLBRIDGE_MAX_DECK_RATES and
// CALLBRIDGE_MAX_ACCOUNT_RATES: 50 million rates are about 12 GB on
// every controller.
const maxRatesSetting = 50_000_000

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

// defaultInvoiceGrace is CALLBRIDGE_INVOICE_GRACE's default: a day for
// calls that cross the month's end and CDRs replayed late.
const defaultInvoiceGrace = "24h"

// parseInvoiceGrace reads a grace for late CDRs: a duration from 0 to
// callbridge.MaxInvoiceGrace.
func parseInvoiceGrace(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 24h", v)
	}
	if d < 0 || d > callbridge.MaxInvoiceGrace {
		return 0, fmt.Errorf("%q: want 0 to %s", v, callbridge.MaxInvoiceGrace)
	}
	return d, nil
}

// invoiceGrace reads CALLBRIDGE_INVOICE_GRACE for the command-line tools,
// as serve does.
func invoiceGrace(getenv func(string) string) (time.Duration, error) {
	v := getenv("CALLBRIDGE_INVOICE_GRACE")
	if v == "" {
		v = defaultInvoiceGrace
	}
	d, err := parseInvoiceGrace(v)
	if err != nil {
		return 0, fmt.Errorf("invalid CALLBRIDGE_INVOICE_GRACE: %v", err)
	}
	return d, nil
}

// issuerFromEnv returns the issuer printed on documents, read from the
// environment as serve reads it, for callbridge bill.
func issuerFromEnv(getenv func(string) string) (billing.Issuer, error) {
	i := billing.Issuer{Name: getenv("CALLBRIDGE_ISSUER_NAME"), Address: getenv("CALLBRIDGE_ISSUER_ADDRESS"),
		TaxNumber: getenv("CALLBRIDGE_ISSUER_TAX_NUMBER")}
	if err := i.Validate(); err != nil {
		return i, fmt.Errorf("invalid CALLBRIDGE_%s: %v", strings.ToUpper(callbridge.ErrorField(err)), callbridge.ErrorMessage(err))
	}
	return i, nil
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
	cfg.Schedules = billingSchedules(getenv)
	if err := cfg.fillStateDirs(getenv, os.Geteuid()); err != nil {
		return nil, err
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
	if err := checkListenAddr(c.HTTPAddr); err != nil {
		return fmt.Errorf("invalid CALLBRIDGE_HTTP_ADDR %q: %v", c.HTTPAddr, err)
	}
	if c.MetricsAddr != "" {
		if err := checkListenAddr(c.MetricsAddr); err != nil {
			return fmt.Errorf("invalid CALLBRIDGE_METRICS_ADDR %q: %v", c.MetricsAddr, err)
		}
	}
	if len(c.ESL) == 0 {
		return fmt.Errorf("invalid CALLBRIDGE_ESL: want at least one host:port")
	}
	for _, a := range c.ESL {
		if err := checkDialAddr(a); err != nil {
			return fmt.Errorf("invalid CALLBRIDGE_ESL entry %q: %v", a, err)
		}
	}
	if err := c.Issuer.Validate(); err != nil {
		return fmt.Errorf("invalid CALLBRIDGE_%s: %v", strings.ToUpper(callbridge.ErrorField(err)), callbridge.ErrorMessage(err))
	}
	for job, spec := range c.Schedules {
		if _, ok := billing.DefaultSchedules()[job]; !ok {
			return fmt.Errorf("invalid %s: no such job", scheduleEnv(job))
		}
		if err := billing.CheckSchedule(spec); err != nil {
			return fmt.Errorf("invalid %s: %v", scheduleEnv(job), err)
		}
	}
	if c.ESLProbeInterval < 100*time.Millisecond || c.ESLProbeInterval > time.Hour {
		return fmt.Errorf("invalid CALLBRIDGE_ESL_PROBE_INTERVAL %s: want 100ms..1h", c.ESLProbeInterval)
	}
	if c.ESLJobTimeout < 100*time.Millisecond || c.ESLJobTimeout > 10*time.Minute {
		return fmt.Errorf("invalid CALLBRIDGE_ESL_JOB_TIMEOUT %s: want 100ms..10m", c.ESLJobTimeout)
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
		if _, err := freeswitch.UUIDBroadcast(promptCheckUUID, p.path, "aleg"); err != nil {
			return fmt.Errorf("invalid %s %q: want an absolute path of A-Z, a-z, 0-9 and '_./-', or none", p.env, p.path)
		}
	}
	if err := c.validateRateCaps(); err != nil {
		return err
	}
	if c.BreakerFailures < 1 || c.BreakerFailures > 1000 {
		return fmt.Errorf("invalid CALLBRIDGE_BREAKER_FAILURES %d: want 1..1000", c.BreakerFailures)
	}
	if c.BreakerCooldown < time.Second || c.BreakerCooldown > time.Hour {
		return fmt.Errorf("invalid CALLBRIDGE_BREAKER_COOLDOWN %s: want 1s..1h", c.BreakerCooldown)
	}
	if c.GatewayPollInterval < time.Second || c.GatewayPollInterval > time.Hour {
		return fmt.Errorf("invalid CALLBRIDGE_GATEWAY_POLL_INTERVAL %s: want 1s..1h", c.GatewayPollInterval)
	}
	if c.Gateway == "" || strings.ContainsAny(c.Gateway, " \t\r\n{}[],|^&'\"\\/") {
		return fmt.Errorf("invalid CALLBRIDGE_GATEWAY %q: want a sofia gateway name", c.Gateway)
	}
	return nil
}

// checkListenAddr checks a listen address: [host]:port with a port of 0
// (any free one) to 65535.
func checkListenAddr(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return errors.New("want [host]:port")
	}
	if _, err := parsePort(port); err != nil {
		return err
	}
	return nil
}

// checkDialAddr checks an address to connect to: host:port with a host
// and a port of 1 to 65535 (a number: a service name would be looked up).
func checkDialAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return errors.New("want host:port")
	}
	n, err := parsePort(port)
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("port 0 cannot be connected to")
	}
	return nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 0 to 65535", s)
	}
	return n, nil
}

// defaultStateDir is where callbridge keeps state when CALLBRIDGE_STATE_DIR
// is not set: /var/lib/callbridge for root (as the Docker image and
// systemd's StateDirectory= do), else the XDG base directory spec's
// $XDG_STATE_HOME/callbridge, which defaults to ~/.local/state/callbridge.
// A relative XDG_STATE_HOME is ignored, as the spec says.
func defaultStateDir(getenv func(string) string, euid int) (string, error) {
	if euid == 0 {
		return "/var/lib/callbridge", nil
	}
	if x := getenv("XDG_STATE_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "callbridge"), nil
	}
	if h := getenv("HOME"); filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "state", "callbridge"), nil
	}
	return "", errors.New("no state directory: HOME is not set; set CALLBRIDGE_STATE_DIR")
}

// fillStateDirs gives the spool and the reports their default places
// under the state directory, and refuses relative directories: they
// would depend on where serve happens to be started.
func (c *Config) fillStateDirs(getenv func(string) string, euid int) error {
	for _, d := range []struct{ env, dir string }{
		{"CALLBRIDGE_STATE_DIR", c.StateDir}, {"CALLBRIDGE_SPOOL_DIR", c.SpoolDir}, {"CALLBRIDGE_REPORT_DIR", c.ReportDir},
	} {
		if d.dir != "" && !filepath.IsAbs(d.dir) {
			return fmt.Errorf("invalid %s %q: must be an absolute path (a relative one would depend on the directory callbridge is started in)", d.env, d.dir)
		}
	}
	if c.SpoolDir != "" && c.ReportDir != "" {
		return nil
	}
	if c.StateDir == "" {
		dir, err := defaultStateDir(getenv, euid)
		if err != nil {
			return err
		}
		c.StateDir = dir
	}
	if c.SpoolDir == "" {
		c.SpoolDir = filepath.Join(c.StateDir, "spool")
	}
	if c.ReportDir == "" {
		c.ReportDir = filepath.Join(c.StateDir, "reports")
	}
	return nil
}
