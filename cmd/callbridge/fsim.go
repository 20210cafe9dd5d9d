package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"callbridge"
	"callbridge/esl/esltest"
)

// fsimConfig is the configuration of "callbridge fsim".
type fsimConfig struct {
	// Listen is the event-socket address to listen on.
	Listen string
	// Password is the event-socket password clients must send.
	Password string
	// Script is an optional JSON far-end script file (see package esltest).
	Script string
	// DialplanURL receives the mod_xml_curl dialplan requests of inbound calls.
	DialplanURL string
	// DialplanUser is the HTTP basic-auth user for DialplanURL.
	DialplanUser string
	// DialplanPassword is the HTTP basic-auth password for DialplanURL
	// (env CALLBRIDGE_FSIM_DIALPLAN_PASSWORD keeps it off the command line).
	DialplanPassword string
	// Speed is how many times faster than real time the simulated clock runs.
	Speed float64
	// Gateways are the node's sofia gateways (--gateway NAME[:down|:refuse],
	// repeated): a DOWN one refuses legs with GATEWAY_DOWN, a refusing one
	// fails every leg as a carrier answering 503. Gateways not listed
	// carry calls.
	Gateways []esltest.Gateway
}

// Validate reports the first invalid field.
func (c fsimConfig) Validate() error {
	switch {
	case c.Listen == "":
		return errors.New("fsim: --listen is required")
	case c.Password == "":
		return errors.New("fsim: --password must not be empty")
	case c.Speed <= 0:
		return fmt.Errorf("fsim: --speed must be positive, got %v", c.Speed)
	}
	for _, g := range c.Gateways {
		if err := callbridge.ValidateGateway(g.Name); err != nil {
			return fmt.Errorf("fsim: --gateway %q: %w", g.Name, err)
		}
	}
	return nil
}

// runFsim runs a simulated FreeSWITCH node until ctx is cancelled, logging
// one line per call outcome to stdout.
func runFsim(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg fsimConfig
	fs := flag.NewFlagSet("fsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8021", "event-socket listen address")
	fs.StringVar(&cfg.Password, "password", "ClueCon", "event-socket password")
	fs.StringVar(&cfg.Script, "script", "", "JSON far-end script file")
	fs.StringVar(&cfg.DialplanURL, "dialplan-url", "", "mod_xml_curl dialplan URL for inbound calls")
	fs.StringVar(&cfg.DialplanUser, "dialplan-user", "", "HTTP basic-auth user for --dialplan-url")
	// Secrets are never flag defaults: -h would print them.
	fs.StringVar(&cfg.DialplanPassword, "dialplan-password", "", "HTTP basic-auth password for --dialplan-url (default: $CALLBRIDGE_FSIM_DIALPLAN_PASSWORD)")
	fs.Float64Var(&cfg.Speed, "speed", 1, "simulated clock speed (times real time)")
	fs.Func("gateway", "a sofia gateway NAME, NAME:down or NAME:refuse (answers 503); repeatable", func(v string) error {
		name, mode, _ := strings.Cut(v, ":")
		g := esltest.Gateway{Name: name}
		switch mode {
		case "":
		case "down":
			g.Status = "DOWN"
		case "refuse":
			g.Refuse = true
		default:
			return fmt.Errorf("want NAME, NAME:down or NAME:refuse, got %q", v)
		}
		cfg.Gateways = append(cfg.Gateways, g)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("fsim: unexpected arguments %q", fs.Args())}
	}
	if cfg.DialplanPassword == "" {
		cfg.DialplanPassword = getenv("CALLBRIDGE_FSIM_DIALPLAN_PASSWORD")
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	logger := slog.New(slog.NewTextHandler(stdout, nil))
	s := esltest.NewUnstartedServer()
	s.Password = cfg.Password
	s.DialplanURL = cfg.DialplanURL
	s.DialplanUser = cfg.DialplanUser
	s.DialplanPassword = cfg.DialplanPassword
	s.Speed = cfg.Speed
	s.Gateways = cfg.Gateways
	s.Logger = logger
	if cfg.Script != "" {
		script, err := esltest.LoadScript(cfg.Script)
		if err != nil {
			return fmt.Errorf("fsim: %w", err)
		}
		s.Script = script
	}
	if err := s.Listen(cfg.Listen); err != nil {
		return fmt.Errorf("fsim: %w", err)
	}
	defer s.Close()
	logger.Info("fsim: listening", "addr", s.Addr(), "speed", cfg.Speed)
	<-ctx.Done()
	logger.Info("fsim: shutting down")
	return nil
}
