package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	dir := t.TempDir()
	targets := filepath.Join(dir, "targets.json")
	os.WriteFile(targets, []byte(`[
		{"figure":"price","bench":"BenchmarkPrice/100k","metric":"ns/op","target":300,"better":"lower"},
		{"figure":"allocs","bench":"BenchmarkPrice/100k","metric":"allocs/op","target":0,"better":"lower"},
		{"figure":"cdrs","bench":"BenchmarkCDR","metric":"cdrs/s","target":10000,"better":"higher"},
		{"figure":"absent","bench":"BenchmarkNope","metric":"ns/op","target":1,"better":"lower"},
		{"figure":"seconds","bench":"BenchmarkCDR","metric":"ns/op","scale":1e-9,"unit":"s","target":null},
		{"figure":"paced","bench":"BenchmarkE2E","metric":"completed/s","target":0.9,"relative_to":"cps-limit","better":"higher"},
		{"figure":"underpaced","bench":"BenchmarkE2E","metric":"completed/s","target":0.99,"relative_to":"cps-limit","better":"higher"}]`), 0o644)
	in := strings.NewReader(`goos: linux
BenchmarkPrice/100k-2   	 5000000	       212.5 ns/op	       0 B/op	       0 allocs/op
BenchmarkPrice/100k-2   	 5000000	       900.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkPrice/100k-2   	 5000000	       200.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkCDR-2          	       1	1000000000 ns/op	      8123 cdrs/s
BenchmarkE2E-2          	       1	1000000000 ns/op	        46.0 completed/s	        50.0 cps-limit
PASS
`)
	var out bytes.Buffer
	res := filepath.Join(dir, "results.json")
	if err := run(in, &out, targets, res); err != nil {
		t.Fatal(err)
	}
	var got struct{ Results []Row }
	b, _ := os.ReadFile(res)
	json.Unmarshal(b, &got)
	want := []string{"met", "met", "missed", "missing", "reported", "met", "missed"}
	for i, r := range got.Results {
		if r.Status != want[i] {
			t.Errorf("%s: status %s, want %s", r.Figure, r.Status, want[i])
		}
	}
	if *got.Results[0].Value != 212.5 || *got.Results[2].Value != 8123 || *got.Results[4].Value != 1 {
		t.Errorf("values %v %v", *got.Results[0].Value, *got.Results[2].Value)
	}
	if !strings.Contains(out.String(), "FIGURE") {
		t.Errorf("no table printed:\n%s", out.String())
	}
}
