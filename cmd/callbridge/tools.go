package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"callbridge"
	"callbridge/postgres"
)

// toolFlags parses an operator tool's flags (which may come before or
// after its positional arguments) and the database URL every tool needs.
// It returns the positional arguments.
func toolFlags(name string, args []string, getenv func(string) string, stderr io.Writer, extra func(fs *flag.FlagSet)) ([]string, string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := fs.String("database-url", "", "PostgreSQL URL (env CALLBRIDGE_DATABASE_URL)")
	if extra != nil {
		extra(fs)
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, "", usageError{err}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	u := *dbURL
	if u == "" {
		u = getenv("CALLBRIDGE_DATABASE_URL")
	}
	if u == "" {
		return nil, "", usageError{fmt.Errorf("CALLBRIDGE_DATABASE_URL is required")}
	}
	return pos, u, nil
}

// runMigrate applies pending migrations.
func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	_, u, err := toolFlags("migrate", args, getenv, stderr, nil)
	if err != nil {
		return err
	}
	db, err := postgres.Open(ctx, u, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := db.Migrate(ctx)
	if err != nil {
		return err
	}
	v, _, err := db.SchemaStatus(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "applied %d migration(s); schema version %d\n", len(applied), v)
	return nil
}

// runAccounts manages accounts: create NAME, create-key ID, revoke-key ID KEY.
// A new API key is printed alone on the last line of standard output.
func runAccounts(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	const use = "usage: callbridge accounts create NAME [--service-number N] [--currency EUR] [--prepaid] [--hide-caller-id]\n" +
		"       callbridge accounts create-key ACCOUNT_ID\n" +
		"       callbridge accounts revoke-key ACCOUNT_ID KEY_OR_KEY_ID"
	if len(args) == 0 {
		fmt.Fprintln(stderr, use)
		return usageError{fmt.Errorf("accounts: missing subcommand")}
	}
	verb := args[0]
	var svc, cur string
	var prepaid, hide bool
	pos, u, err := toolFlags("accounts "+verb, args[1:], getenv, stderr, func(fs *flag.FlagSet) {
		if verb == "create" {
			fs.StringVar(&svc, "service-number", "", "number callbacks present by default")
			fs.StringVar(&cur, "currency", "USD", "ISO 4217 currency")
			fs.BoolVar(&prepaid, "prepaid", false, "prepaid account")
			fs.BoolVar(&hide, "hide-caller-id", false, "present the service number to B instead of A")
		}
	})
	if err != nil {
		return err
	}
	db, err := postgres.Open(ctx, u, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	accounts := postgres.NewAccountService(db)
	switch {
	case verb == "create" && len(pos) >= 1:
		a := &callbridge.Account{Name: strings.Join(pos, " "), Currency: cur, Prepaid: prepaid, HideCallerID: hide}
		if svc != "" {
			n, err := callbridge.ParseNumber(svc)
			if err != nil {
				return usageError{fmt.Errorf("--service-number: %s", callbridge.ErrorMessage(err))}
			}
			a.ServiceNumber = n
		}
		key, err := accounts.CreateAccount(ctx, a)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "account %s created (%s)\n%s\n", a.ID, a.Name, key)
		return nil
	case verb == "create-key" && len(pos) == 1:
		key, err := accounts.CreateAPIKey(ctx, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, key)
		return nil
	case verb == "revoke-key" && len(pos) == 2:
		if err := accounts.RevokeAPIKey(ctx, pos[0], pos[1]); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "revoked")
		return nil
	}
	fmt.Fprintln(stderr, use)
	return usageError{fmt.Errorf("accounts: bad arguments")}
}

// runHealthcheck GETs /healthz of the controller on CALLBRIDGE_HTTP_ADDR
// and exits non-zero unless it answers 200: the Docker HEALTHCHECK.
func runHealthcheck(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	addr := getenv("CALLBRIDGE_HTTP_ADDR")
	if len(args) > 0 {
		addr = args[0]
	}
	if addr == "" {
		addr = ":8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usageError{fmt.Errorf("healthcheck: bad address %q", addr)}
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /healthz answered %s", resp.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
