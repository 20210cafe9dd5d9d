package callbridge_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestPureDependencies keeps the domain, rating, routing and dialplan
// packages, the callback flow and internal/prefix (the digit trie of
// rating and routing) free of I/O dependencies: they may import only the
// standard library, the root package and each other (STYLE.md; as
// Tailscale's deptest does). esl/freeswitch, the FreeSWITCH
// vocabulary, is kept as free: besides those it may use only the
// event-socket header table (esl/internal/wire, itself standard library
// only) and uuid.
func TestPureDependencies(t *testing.T) {
	extra := map[string][]string{"./esl/freeswitch": {"callbridge/esl/freeswitch", "callbridge/esl/internal/wire", "github.com/google/uuid"}}
	for _, pkg := range []string{".", "./rating", "./routing", "./dialplan", "./callback/flow", "./esl/freeswitch", "./internal/prefix"} {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			switch dep {
			case "callbridge", "callbridge/rating", "callbridge/routing", "callbridge/dialplan", "callbridge/callback/flow", "callbridge/internal/prefix":
				continue
			}
			if slices.Contains(extra[pkg], dep) {
				continue
			}
			also := ""
			if len(extra[pkg]) > 0 {
				also = " (and " + strings.Join(extra[pkg], ", ") + ")"
			}
			t.Errorf("%s depends on %s; it may use only the standard library and the root package%s", pkg, dep, also)
		}
	}
}

// allowedImports fixes the imports (outside the standard library) of every
// package's production code: what each capability may build on. A new
// package, or a new import, is added here on purpose or not at all.
var allowedImports = map[string][]string{
	"callbridge":             {},
	"callbridge/rating":      {"callbridge", "callbridge/internal/prefix"},
	"callbridge/dialplan":    {"callbridge"},
	"callbridge/routing":     {"callbridge", "callbridge/internal/prefix", "callbridge/rating"},
	"callbridge/sql":         {},
	"callbridge/esl":         {"callbridge", "callbridge/esl/freeswitch", "callbridge/esl/internal/wire", "github.com/fiorix/go-eventsocket/eventsocket", "github.com/google/uuid"},
	"callbridge/esl/esltest": {"callbridge/esl/esltest/internal/call", "callbridge/esl/esltest/internal/fswitch", "github.com/google/uuid"},
	"callbridge/postgres": {"callbridge", "callbridge/postgres/billing", "callbridge/postgres/binding", "callbridge/postgres/cdr", "callbridge/postgres/internal/batch", "callbridge/postgres/internal/pg",
		"callbridge/postgres/ratedeck", "callbridge/postgres/routeplan", "callbridge/rating", "callbridge/routing", "callbridge/sql", "github.com/google/uuid", "github.com/jmoiron/sqlx", "github.com/lib/pq"},
	"callbridge/postgres/billing":        {"callbridge", "callbridge/postgres/internal/pg", "github.com/lib/pq"},
	"callbridge/postgres/binding":        {"callbridge", "callbridge/postgres/internal/pg", "github.com/lib/pq"},
	"callbridge/postgres/cdr":            {"callbridge", "callbridge/postgres/internal/pg", "github.com/google/uuid", "github.com/lib/pq"},
	"callbridge/postgres/ratedeck":       {"callbridge", "callbridge/postgres/internal/pg", "callbridge/rating", "github.com/jmoiron/sqlx", "github.com/lib/pq"},
	"callbridge/postgres/routeplan":      {"callbridge", "callbridge/postgres/internal/pg", "callbridge/rating", "callbridge/routing", "github.com/jmoiron/sqlx", "github.com/lib/pq"},
	"callbridge/postgres/internal/batch": {},
	"callbridge/postgres/internal/pg":    {"callbridge", "github.com/jmoiron/sqlx", "github.com/lib/pq"},
	"callbridge/postgres/pgtest":         {"callbridge/postgres", "callbridge/rating", "callbridge/routing", "github.com/jmoiron/sqlx", "github.com/lib/pq"},
	"callbridge/billing":                 {"callbridge", "callbridge/rating", "github.com/google/uuid", "github.com/robfig/cron/v3"},
	"callbridge/webhook":                 {"callbridge"},
	"callbridge/callback":                {"callbridge", "callbridge/callback/flow", "callbridge/esl", "callbridge/esl/freeswitch", "callbridge/rating", "callbridge/routing", "github.com/google/uuid"},
	"callbridge/callback/flow":           {"callbridge", "callbridge/routing"},
	"callbridge/carrier":                 {"callbridge/esl", "callbridge/esl/freeswitch", "callbridge/routing"},
	"callbridge/cdr":                     {"callbridge", "callbridge/esl", "callbridge/esl/freeswitch", "callbridge/rating"},
	"callbridge/privacy":                 {"callbridge", "callbridge/dialplan", "callbridge/esl", "callbridge/esl/freeswitch", "callbridge/routing"},
	"callbridge/privacy/privacytest":     {"callbridge", "callbridge/dialplan", "callbridge/privacy"},
	"callbridge/metrics":                 {"callbridge", "callbridge/billing", "callbridge/carrier", "callbridge/cdr", "callbridge/esl", "callbridge/routing", "github.com/prometheus/client_golang/prometheus", "github.com/prometheus/client_golang/prometheus/collectors", "github.com/prometheus/client_golang/prometheus/promhttp"},
	"callbridge/controller":              {"callbridge", "callbridge/billing", "callbridge/controller/accounting", "callbridge/controller/internal/handler", "callbridge/controller/pricing", "callbridge/dialplan", "callbridge/esl", "callbridge/metrics", "callbridge/privacy", "callbridge/rating", "callbridge/routing", "github.com/gin-gonic/gin", "golang.org/x/sys/unix"},
	"callbridge/app":                     {"callbridge", "callbridge/billing", "callbridge/callback", "callbridge/carrier", "callbridge/cdr", "callbridge/controller", "callbridge/dialplan", "callbridge/esl", "callbridge/esl/freeswitch", "callbridge/metrics", "callbridge/postgres", "callbridge/privacy", "callbridge/rating", "callbridge/routing", "callbridge/webhook"},
	"callbridge/app/apptest":             {"callbridge/app", "callbridge/billing", "callbridge/esl", "callbridge/esl/esltest", "callbridge/internal/wait", "callbridge/postgres"},
	"callbridge/cmd/callbridge":          {"callbridge", "callbridge/app", "callbridge/billing", "callbridge/cdr", "callbridge/cmd/callbridge/internal/tour", "callbridge/controller", "callbridge/esl/esltest", "callbridge/esl/freeswitch", "callbridge/postgres", "callbridge/rating", "callbridge/routing"},
	"callbridge/internal/wait":           {},
	"callbridge/realswitch":              {"callbridge", "callbridge/esl", "callbridge/esl/freeswitch", "callbridge/postgres/pgtest"},

	// The HTTP API's subpackages: handlers by capability, registered in
	// controller's routes.go, sharing internal/handler.
	"callbridge/controller/accounting":       {"callbridge", "callbridge/billing", "callbridge/controller/internal/handler", "github.com/gin-gonic/gin"},
	"callbridge/controller/pricing":          {"callbridge", "callbridge/controller/internal/handler", "callbridge/rating", "callbridge/routing", "github.com/gin-gonic/gin"},
	"callbridge/controller/internal/handler": {"callbridge", "github.com/gin-gonic/gin"},

	// make demo's tour: a client of the HTTP API and the simulator's
	// event socket, like any user, so it imports nothing of callbridge's.
	"callbridge/cmd/callbridge/internal/tour": {},

	// The event-socket protocol at the byte level, under the client, and
	// the FreeSWITCH vocabulary (commands, events, result parsers) the
	// client carries, which has no connection in it.
	"callbridge/esl/internal/wire": {},
	"callbridge/esl/freeswitch":    {"callbridge", "callbridge/esl/internal/wire", "github.com/google/uuid"},

	// The simulator's layers under its socket server: the switch it
	// drives, the calls' data and simulated time.
	"callbridge/esl/esltest/internal/fswitch": {"callbridge/esl/esltest/internal/call", "callbridge/esl/esltest/internal/clock", "github.com/google/uuid"},
	"callbridge/esl/esltest/internal/call":    {},
	"callbridge/esl/esltest/internal/clock":   {},

	// The digit trie of rating's decks and routing's plans.
	"callbridge/internal/prefix": {},

	// Test-only or asset packages without production imports.
	"callbridge/bench":             {},
	"callbridge/cluster":           {},
	"callbridge/deploy/kubernetes": {},
	"callbridge/docker":            {},
	"callbridge/faults":            {},
	"callbridge/freeswitch-conf":   {},
	"callbridge/loadgen":           {},
}

// onlyImporters names, for the libraries one adapter owns, the packages
// that may import them (STYLE.md): everything else goes through them.
var onlyImporters = map[string][]string{
	"github.com/gin-gonic/gin":         {"callbridge/controller", "callbridge/controller/accounting", "callbridge/controller/internal/handler", "callbridge/controller/pricing"},
	"github.com/prometheus/":           {"callbridge/metrics"},
	"github.com/jmoiron/sqlx":          postgresPackages,
	"github.com/lib/pq":                postgresPackages,
	"callbridge/controller":            {"callbridge/app", "callbridge/cmd/callbridge", "callbridge/controller", "callbridge/controller/accounting", "callbridge/controller/pricing"}, // this entry also covers controller/...
	"callbridge/app":                   {"callbridge/app/apptest", "callbridge/cmd/callbridge"},
	"github.com/fiorix/go-eventsocket": {"callbridge/esl"},
}

// postgresPackages are the storage adapter and its subpackages: the only
// importers of sqlx and pq.
var postgresPackages = []string{"callbridge/postgres", "callbridge/postgres/pgtest", "callbridge/postgres/internal/pg",
	"callbridge/postgres/billing", "callbridge/postgres/binding", "callbridge/postgres/cdr", "callbridge/postgres/ratedeck", "callbridge/postgres/routeplan"}

// TestPackageImports checks every package's production imports against
// allowedImports and onlyImporters: only controller and its subpackages
// import gin, only metrics imports Prometheus, only postgres imports sqlx and pq, and the
// capabilities (callback, cdr, privacy, webhook) never import the HTTP
// layer or the wiring.
func TestPackageImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", "faults realswitch cluster capacity",
		"-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, imports := f[0], f[1:]
		allowed, ok := allowedImports[pkg]
		if !ok {
			t.Errorf("package %s is not in allowedImports: add it with the imports it may use", pkg)
			continue
		}
		for _, imp := range imports {
			if !strings.Contains(strings.Split(imp, "/")[0], ".") && imp != "callbridge" && !strings.HasPrefix(imp, "callbridge/") {
				continue // standard library
			}
			if !slices.Contains(allowed, imp) {
				t.Errorf("%s imports %s, which allowedImports does not allow it", pkg, imp)
			}
			for lib, owners := range onlyImporters {
				if (imp == lib || strings.HasPrefix(imp, strings.TrimSuffix(lib, "/")+"/")) && !slices.Contains(owners, pkg) {
					t.Errorf("%s imports %s; only %v may", pkg, imp, owners)
				}
			}
		}
	}
	// The table itself keeps the rules.
	for pkg, allowed := range allowedImports {
		for _, imp := range allowed {
			for lib, owners := range onlyImporters {
				if (imp == lib || strings.HasPrefix(imp, strings.TrimSuffix(lib, "/")+"/")) && !slices.Contains(owners, pkg) {
					t.Errorf("allowedImports lets %s import %s; only %v may", pkg, imp, owners)
				}
			}
		}
	}
}
