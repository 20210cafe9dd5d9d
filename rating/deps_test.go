package rating

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps rating pure: the standard library, the root package
// and the digit trie (itself pure) only, as Tailscale's tstest/deptest
// does.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		std := !strings.Contains(strings.SplitN(pkg, "/", 2)[0], ".")
		if pkg == "callbridge" || pkg == "callbridge/rating" || pkg == "callbridge/internal/prefix" {
			continue
		}
		if strings.HasPrefix(pkg, "callbridge/") || !std {
			t.Errorf("rating depends on %s", pkg)
		}
	}
}
