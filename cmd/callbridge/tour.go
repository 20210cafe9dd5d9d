package main

import (
	"context"
	"flag"
	"io"

	"callbridge/cmd/callbridge/internal/tour"
)

// runTour runs the scripted tour `make demo` runs (package tour) against
// a controller and a simulated FreeSWITCH node.
func runTour(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tour", flag.ContinueOnError)
	fs.SetOutput(stderr)
	api := fs.String("api", "http://127.0.0.1:8080", "controller base URL")
	// Secrets are never flag defaults: -h would print them.
	admin := fs.String("admin-token", "", "admin token (default: $CALLBRIDGE_ADMIN_TOKEN)")
	eslAddr := fs.String("esl", "127.0.0.1:8021", "simulator event socket")
	eslPass := fs.String("esl-password", "ClueCon", "simulator password")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *admin == "" {
		*admin = getenv("CALLBRIDGE_ADMIN_TOKEN")
	}
	return tour.Run(ctx, tour.Config{API: *api, AdminToken: *admin, ESLAddr: *eslAddr, ESLPassword: *eslPass}, stdout)
}
