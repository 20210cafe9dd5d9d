package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelpListsEveryCommand: callbridge --help names every command run
// dispatches to (tour was missing).
func TestHelpListsEveryCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, c := range commands() {
		if !strings.Contains(out.String(), "\n  "+c.name+" ") {
			t.Errorf("--help does not list %s:\n%s", c.name, out.String())
		}
	}
	for _, want := range []string{"tour", "bill", "fsim"} {
		if !strings.Contains(out.String(), "  "+want+" ") {
			t.Errorf("--help does not list %s", want)
		}
	}
}

// TestHelpShowsNoSecrets runs every command and subcommand with -h while
// every environment variable holds a secret: no help text may print one
// (tour printed the admin token and fsim its dialplan password as flag
// defaults).
func TestHelpShowsNoSecrets(t *testing.T) {
	getenv := func(k string) string { return "s3cret-" + k }
	invocations := [][]string{}
	for _, c := range commands() {
		invocations = append(invocations, []string{c.name, "-h"})
	}
	invocations = append(invocations,
		[]string{"accounts", "create", "-h"}, []string{"accounts", "keys", "-h"},
		[]string{"rates", "create", "-h"}, []string{"rates", "import", "-h"}, []string{"rates", "export", "-h"},
		[]string{"bill", "rollup", "-h"}, []string{"bill", "invoice", "-h"}, []string{"bill", "report", "usage", "-h"})
	for _, args := range invocations {
		var out bytes.Buffer
		run(context.Background(), args, getenv, &out, &out)
		if strings.Contains(out.String(), "s3cret") {
			t.Errorf("callbridge %s prints a secret from the environment:\n%s", strings.Join(args, " "), out.String())
		}
	}
}
