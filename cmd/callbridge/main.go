// Command callbridge is the callbridge controller for FreeSWITCH, with its
// operator tools and the FreeSWITCH simulator.
//
//	callbridge serve       run the HTTP API, the call engine and the jobs
//	callbridge migrate     apply database migrations and exit
//	callbridge accounts    create accounts, create and revoke API keys
//	callbridge rates       rate decks: create, list, import and export CSV
//	callbridge bill        roll up, invoice and report usage by hand
//	callbridge fsim        run the simulated FreeSWITCH (esl/esltest)
//	callbridge tour        the scripted tour of make demo
//	callbridge healthcheck probe a running controller's /healthz
//	callbridge version     print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "callbridge:", err)
		}
		os.Exit(exitCode(err))
	}
}

// exitCode is 2 for usage and configuration errors, 1 otherwise.
func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

// usageError marks errors in how the command was called.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// command is one subcommand of callbridge.
type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error
}

// commands lists every subcommand, in the order usage shows them; run
// dispatches on this list, so the usage text cannot leave one out.
func commands() []command {
	return []command{
		{"serve", "run the HTTP API, the call engine and the scheduled jobs", runServe},
		{"migrate", "apply database migrations and exit", runMigrate},
		{"accounts", "create accounts and manage API keys", runAccounts},
		{"rates", "rate decks: create, list, import and export CSV", runRates},
		{"bill", "roll up, invoice and report usage by hand, list job runs", runBill},
		{"fsim", "run the simulated FreeSWITCH node", runFsim},
		{"tour", "the scripted tour `make demo` runs against serve and fsim", runTour},
		{"healthcheck", "probe a running controller's /healthz (for Docker)", runHealthcheck},
		{"version", "print the version", func(_ context.Context, _ []string, _ func(string) string, stdout, _ io.Writer) error {
			fmt.Fprintln(stdout, "callbridge", version)
			return nil
		}},
	}
}

// usage is the text of callbridge --help.
func usage() string {
	var b strings.Builder
	b.WriteString("usage: callbridge <command> [flags]\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-12s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun 'callbridge <command> -h' for a command's flags.")
	return b.String()
}

// run is the whole program: main only calls it. args excludes the program
// name.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage())
		return usageError{errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-version", "--version":
		cmd = "version"
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(stdout, usage())
		return nil
	}
	for _, c := range commands() {
		if c.name == cmd {
			return c.run(ctx, rest, getenv, stdout, stderr)
		}
	}
	fmt.Fprintln(stderr, usage())
	return usageError{fmt.Errorf("unknown command %q", cmd)}
}
