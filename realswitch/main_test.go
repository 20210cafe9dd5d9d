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
