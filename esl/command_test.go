package esl

import (
	"testing"

	"callbridge"
)

func parseNumberT(tb testing.TB, s string) (callbridge.Number, error) {
	tb.Helper()
	n, err := callbridge.ParseNumber(s)
	if err != nil {
		tb.Fatal(err)
	}
	return n, nil
}
