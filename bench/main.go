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
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Target is one figure the project promises.
type Target struct {
	Figure string  `json:"figure"`
	Bench  string  `json:"bench"`  // benchmark name without the -N suffix, e.g. BenchmarkPrice/100k
	Metric string  `json:"metric"` // unit as printed by go test: ns/op, allocs/op, or a ReportMetric unit
	Target float64 `json:"target"`
	Better string  `json:"better"` // "lower" or "higher"
	Note   string  `json:"note,omitempty"`
}

// Row is one line of the results.
type Row struct {
	Target
	Value  *float64 `json:"value"`
	Met    bool     `json:"met"`
	Status string   `json:"status"` // met, missed, missing
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
		cmp := "≤"
		if r.Better == "higher" {
			cmp = "≥"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s %s\t%s\n", r.Figure, v, r.Metric, cmp, strconv.FormatFloat(r.Target.Target, 'g', 6, 64), r.Status)
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
// value (the last run of a benchmark wins).
func parse(in io.Reader, echo io.Writer) (map[string]map[string]float64, error) {
	got := map[string]map[string]float64{}
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
		m := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			m[f[i+1]] = v
		}
		got[name] = m
	}
	return got, sc.Err()
}

func evaluate(ts []Target, got map[string]map[string]float64) []Row {
	var rows []Row
	for _, t := range ts {
		r := Row{Target: t, Status: "missing"}
		if m, ok := got[t.Bench]; ok {
			if v, ok := m[t.Metric]; ok {
				r.Value = &v
				if t.Better == "higher" {
					r.Met = v >= t.Target
				} else {
					r.Met = v <= t.Target
				}
				r.Status = "missed"
				if r.Met {
					r.Status = "met"
				}
			}
		}
		rows = append(rows, r)
	}
	return rows
}
