//go:build cluster && capacity

package cluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"callbridge/realswitch"
)

// cpuTime is a process's user+system CPU time so far, from /proc.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

// TestCapacity measures one FreeSWITCH node of the cluster: privacy calls
// (A calls X, bridged to B through the carrier) offered straight to node 1
// at rising rates, each holding 10 s, for 20 s per step. For each rate it
// reports the share answered, call setup time (INVITE to 200, which
// includes the dialplan request to the controller and B's answer), the
// calls up at once, and the CPU FreeSWITCH and the controllers used per
// call. It asserts nothing about speed; `make capacity` prints it for
// docs/capacity.md.
func TestCapacity(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	// The node's own limits out of the way (max-sessions, and the
	// harness's 400-port RTP range: one port a leg): what is measured is
	// the machine.
	c := startCluster(t, map[string]string{"FS_MAX_SESSIONS": "5000", "FS_SESSIONS_PER_SECOND": "1000",
		"FS_RTP_START_PORT": "20000", "FS_RTP_END_PORT": "39998"})
	a, x, b := "+4915110000003", "+4930555000300", realswitch.Number(9301, realswitch.Answer)
	c.bind(ctx, t, "capacity", x, a, b)
	const step, hold = 20 * time.Second, 10 * time.Second
	rates := []int{5, 10, 20, 30, 40}
	if v := os.Getenv("CAPACITY_RATES"); v != "" {
		rates = nil
		for _, s := range strings.Split(v, ",") {
			r, err := strconv.Atoi(s)
			if err != nil {
				t.Fatal(err)
			}
			rates = append(rates, r)
		}
	}
	t.Logf("%-6s %-8s %-9s %-9s %-9s %-11s %-12s", "cps", "offered", "answered", "setup p50", "setup p99", "FS CPU/call", "ctrl CPU/call")
	for _, rate := range rates {
		n := rate * int(step/time.Second)
		pids := []int{c.nodes[0].PID(), c.ctrls[0].PID(), c.ctrls[1].PID()}
		var before [3]time.Duration
		for i, p := range pids {
			before[i], _ = cpuTime(p)
		}
		s, err := realswitch.StartSipp(realswitch.SippConfig{Scenario: "phone.xml", Remote: c.nodes[0].ExternalSIP, Args: []string{
			"-s", realswitch.Digits(x), "-set", "caller", realswitch.Digits(a),
			"-r", strconv.Itoa(rate), "-m", strconv.Itoa(n), "-d", strconv.FormatInt(hold.Milliseconds(), 10),
			"-l", strconv.Itoa(rate * 30), "-timeout", "120s", "-timeout_error",
		}})
		if err != nil {
			t.Fatal(err)
		}
		s.Wait(ctx)
		calls, err := s.Calls()
		s.Stop()
		if err != nil {
			t.Fatal(err)
		}
		var after [3]time.Duration
		for i, p := range pids {
			after[i], _ = cpuTime(p)
		}
		var setups []time.Duration
		for _, call := range calls {
			inv, ok1 := call.Invite()
			f, ok2 := call.Final()
			if ok1 && ok2 && f.Status == 200 {
				setups = append(setups, f.At.Sub(inv.At))
			}
		}
		slices.Sort(setups)
		pct := func(p float64) time.Duration {
			if len(setups) == 0 {
				return 0
			}
			return setups[min(len(setups)-1, int(p*float64(len(setups))))]
		}
		ok := max(len(setups), 1)
		fsCPU := (after[0] - before[0]) / time.Duration(ok)
		ctrlCPU := (after[1] - before[1] + after[2] - before[2]) / time.Duration(ok)
		t.Logf("%-6d %-8d %-9s %-9v %-9v %-11v %-12v", rate, n, fmt.Sprintf("%.1f%%", 100*float64(len(setups))/float64(n)),
			pct(0.5).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), fsCPU.Round(100*time.Microsecond), ctrlCPU.Round(100*time.Microsecond))
		time.Sleep(hold + 2*time.Second) // let the step's calls end
	}
}
