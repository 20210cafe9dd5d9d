// Command bench turns `go test -bench` output into callbridge's benchmark
// table: one row per figure with its value, unit, target and whether the
// target was met, printed as text and written as JSON (bench/results.json)
// so runs can be compared. The figures and targets live in targets.json
// beside it; a figure whose benchmark did not run is reported as missing,
// never as met.
//
//	go test -run '^$' -bench . ./... | go run ./bench -targets bench/targets.json -out bench/results.json
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Target is one figure the project promises (or, without a target, one it
// reports).
type Target struct {
	Figure string `json:"figure"`
	Bench  string `json:"bench"`  // benchmark name without the -N suffix, e.g. BenchmarkPrice/100k
	Metric string `json:"metric"` // unit as printed by go test: ns/op, allocs/op, or a ReportMetric unit
	// Scale multiplies the value for display (1e-9 turns ns/op into
	// seconds); Unit names the displayed unit (default: Metric).
	Scale float64 `json:"scale,omitempty"`
	Unit  string  `json:"unit,omitempty"`
	// Target is the promised value in display units; nil only reports.
	// With RelativeTo, the target is a fraction of that other metric of
	// the same benchmark (0.9 of "cps-limit").
	Target     *float64 `json:"target"`
	RelativeTo string   `json:"relative_to,omitempty"`
	Better     string   `json:"better"` // "lower" or "higher"
	Note       string   `json:"note,omitempty"`
}

// Row is one line of the results.
type Row struct {
	Target
	Value  *float64 `json:"value"`
	Met    bool     `json:"met"`
	Status string   `json:"status"` // met, missed, missing, reported
}

func main() {
	targets := flag.String("targets", "bench/targets.json", "targets file")
	out := flag.String("out", "bench/results.json", "JSON results file")
	flag.Parse()
	if err := run(os.Stdin, os.Stdout, *targets, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, w io.Writer, targetsPath, outPath string) error {
	b, err := os.ReadFile(targetsPath)
	if err != nil {
		return err
	}
	var ts []Target
	if err := json.Unmarshal(b, &ts); err != nil {
		return fmt.Errorf("%s: %w", targetsPath, err)
	}
	got, err := parse(in, w)
	if err != nil {
		return err
	}
	rows := evaluate(ts, got)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nFIGURE\tVALUE\tUNIT\tTARGET\tRESULT")
	for _, r := range rows {
		v := "-"
		if r.Value != nil {
			v = strconv.FormatFloat(*r.Value, 'g', 6, 64)
		}
		cmp := "≤ "
		if r.Better == "higher" {
			cmp = "≥ "
		}
		tgt := "-"
		if r.Target.Target != nil {
			tgt = cmp + strconv.FormatFloat(*r.Target.Target, 'g', 6, 64)
			if r.RelativeTo != "" {
				tgt += " × " + r.RelativeTo
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Figure, v, r.Unit, tgt, r.Status)
	}
	tw.Flush()
	res := struct {
		Time    time.Time `json:"time"`
		Results []Row     `json:"results"`
	}{time.Now().UTC(), rows}
	j, _ := json.MarshalIndent(res, "", "  ")
	return os.WriteFile(outPath, append(j, '\n'), 0o644)
}

// parse reads go test output, echoing it, and returns benchmark → unit →
// value. A benchmark run several times (-count) gives the median of its
// runs, so one disturbed run on a shared machine does not decide a figure.
func parse(in io.Reader, echo io.Writer) (map[string]map[string]float64, error) {
	runs := map[string]map[string][]float64{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(echo, line)
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := f[0]
		if i := strings.LastIndex(name, "-"); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		if runs[name] == nil {
			runs[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			runs[name][f[i+1]] = append(runs[name][f[i+1]], v)
		}
	}
	got := map[string]map[string]float64{}
	for name, units := range runs {
		got[name] = map[string]float64{}
		for unit, vs := range units {
			sort.Float64s(vs)
			m := vs[len(vs)/2]
			if len(vs)%2 == 0 {
				m = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
			}
			got[name][unit] = m
		}
	}
	return got, sc.Err()
}

func evaluate(ts []Target, got map[string]map[string]float64) []Row {
	var rows []Row
	for _, t := range ts {
		if t.Scale == 0 {
			t.Scale = 1
		}
		if t.Unit == "" {
			t.Unit = t.Metric
		}
		r := Row{Target: t, Status: "missing"}
		m, ok := got[t.Bench]
		v, vok := m[t.Metric]
		if !ok || !vok {
			rows = append(rows, r)
			continue
		}
		v *= t.Scale
		r.Value = &v
		if t.Target == nil {
			r.Status = "reported"
			rows = append(rows, r)
			continue
		}
		target := *t.Target
		if t.RelativeTo != "" {
			base, ok := m[t.RelativeTo]
			if !ok {
				r.Status = "missing"
				rows = append(rows, r)
				continue
			}
			target *= base * t.Scale
		}
		if t.Better == "higher" {
			r.Met = v >= target
		} else {
			r.Met = v <= target
		}
		r.Status = "missed"
		if r.Met {
			r.Status = "met"
		}
		rows = append(rows, r)
	}
	return rows
}
