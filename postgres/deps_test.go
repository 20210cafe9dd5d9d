package postgres_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestOnlyPostgresImportsTheDriver keeps sqlx and lib/pq inside postgres
// and its subpackages (STYLE.md): no other package of the module, with
// every build tag the repository uses, imports them, in its code or in its
// tests. Callers see the domain types and database/sql at most.
func TestOnlyPostgresImportsTheDriver(t *testing.T) {
	cmd := exec.Command("go", "list", "-tags", "faults realswitch cluster capacity", "-json=ImportPath,Imports,TestImports,XTestImports", "callbridge/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for {
		var p struct {
			ImportPath                         string
			Imports, TestImports, XTestImports []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		seen++
		if p.ImportPath == "callbridge/postgres" || strings.HasPrefix(p.ImportPath, "callbridge/postgres/") {
			continue
		}
		for _, imp := range append(append(p.Imports, p.TestImports...), p.XTestImports...) {
			if imp == "github.com/jmoiron/sqlx" || imp == "github.com/lib/pq" {
				t.Errorf("%s imports %s; only postgres and its subpackages may", p.ImportPath, imp)
			}
		}
	}
	if seen < 10 {
		t.Fatalf("go list found %d packages; want the whole module", seen)
	}
}
