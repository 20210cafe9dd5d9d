//go:build realswitch

package realswitch_test

import (
	"fmt"
	"os"
	"testing"

	"callbridge/realswitch"
)

// env is the FreeSWITCH, controller and carrier every parallel scenario
// shares; each scenario uses its own account and numbers.
var env *realswitch.Env

// binary is the callbridge binary, built once, for scenarios that need
// an Env of their own (Options.Binary).
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "realswitch-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if binary, err = realswitch.BuildController(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if env, err = realswitch.Start(realswitch.Options{Binary: binary}); err != nil {
		fmt.Fprintln(os.Stderr, "realswitch:", err)
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintln(os.Stderr, env.Diagnostics())
	}
	if err := env.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "realswitch: close:", err)
		code = 1
	}
	return code
}

// startOwn starts an Env of the test's own, for a scenario that kills,
// stops or reconfigures the controller or FreeSWITCH, with the suite's
// binary, and closes it when the test ends, logging its diagnostics if the
// test failed.
func startOwn(t *testing.T, opts realswitch.Options) *realswitch.Env {
	t.Helper()
	opts.Binary = binary
	own, err := realswitch.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(own.Diagnostics())
		}
		if err := own.Close(); err != nil {
			t.Error(err)
		}
	})
	return own
}
