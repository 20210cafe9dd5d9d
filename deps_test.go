package callbridge_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPureDependencies keeps the domain, rating, routing and dialplan
// packages free of I/O dependencies: they may import only the standard
// library, the root package and each other (STYLE.md; as Tailscale's
// deptest does).
func TestPureDependencies(t *testing.T) {
	for _, pkg := range []string{".", "./rating", "./routing", "./dialplan"} {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			switch dep {
			case "callbridge", "callbridge/rating", "callbridge/routing", "callbridge/dialplan":
				continue
			}
			t.Errorf("%s depends on %s; it may use only the standard library and the root package", pkg, dep)
		}
	}
}
