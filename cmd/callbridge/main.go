// Command callbridge is the callbridge controller for FreeSWITCH, with its
// operator tools and the FreeSWITCH simulator.
//
//	callbridge serve       run the HTTP API, the call engine and the jobs
//	callbridge migrate     apply database migrations and exit
//	callbridge accounts    create accounts, create and revoke API keys
//	callbridge rates       rate decks: create, list, import and export CSV
//	callbridge fsim        run the simulated FreeSWITCH (esl/esltest)
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

const usage = `usage: callbridge <command> [flags]

commands:
  serve        run the HTTP API, the call engine and the scheduled jobs
  migrate      apply database migrations and exit
  accounts     create accounts and manage API keys
  rates        rate decks: create, list, import and export CSV
  fsim         run the simulated FreeSWITCH node
  bill         roll up, invoice and report usage by hand, list job runs
  healthcheck  probe a running controller's /healthz (for Docker)
  version      print the version

Run 'callbridge <command> -h' for a command's flags.`

// run is the whole program: main only calls it. args excludes the program
// name.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return usageError{errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, rest, getenv, stdout, stderr)
	case "accounts":
		return runAccounts(ctx, rest, getenv, stdout, stderr)
	case "fsim":
		return runFsim(ctx, rest, getenv, stdout, stderr)
	case "rates":
		return runRates(ctx, rest, getenv, stdout, stderr)
	case "bill":
		return runBill(ctx, rest, getenv, stdout, stderr)
	case "tour":
		return runTour(ctx, rest, getenv, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, rest, getenv, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "callbridge", version)
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	fmt.Fprintln(stderr, usage)
	return usageError{fmt.Errorf("unknown command %q", cmd)}
}
