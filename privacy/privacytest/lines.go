// Package privacytest builds binding indexes for tests and benchmarks.
package privacytest

import (
	"fmt"
	"time"

	"callbridge"
	"callbridge/dialplan"
	"callbridge/privacy"
)

// account owns every binding Lines makes.
const account = "8b1c3a5e-2f7d-4c11-9d0e-5a6b7c8d9e0f"

// Lines builds an index of n active AXB bindings, four pairs per X,
// and returns it with the (x, caller) pairs that hit a binding.
func Lines(n int) (*privacy.Index, [][2]callbridge.Number) {
	ix := privacy.NewIndex(nil, nil)
	exp := time.Now().Add(24 * time.Hour)
	const perX = 4
	var probes [][2]callbridge.Number
	for i := 0; i < n/perX; i++ {
		x := callbridge.Number(fmt.Sprintf("4930%08d", i))
		l := &dialplan.Line{X: x, AccountID: account, Gateway: "carrier-1", Enabled: true}
		for j := range perX {
			k := i*perX + j
			b := &callbridge.Binding{
				ID: fmt.Sprintf("%08x-0000-4000-8000-%012x", k, k), AccountID: account, Mode: callbridge.ModeAXB, X: x,
				A: callbridge.Number(fmt.Sprintf("4917%09d", 2*k)), B: callbridge.Number(fmt.Sprintf("4917%09d", 2*k+1)),
				Status: callbridge.StatusActive, ExpiresAt: exp, CallerDisplay: callbridge.DisplayX,
			}
			l.Bindings = append(l.Bindings, b)
			if k%997 == 0 {
				probes = append(probes, [2]callbridge.Number{x, b.A}, [2]callbridge.Number{x, b.B})
			}
		}
		ix.Set(l)
	}
	return ix, probes
}
