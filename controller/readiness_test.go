package controller_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"callbridge/app"
	"callbridge/esl/esltest"
	"callbridge/internal/wait"
)

// A connected node whose commands stop completing (its BACKGROUND_JOBs
// never come) makes /readyz answer 503 with the node not ready and why,
// and the metrics show it; once its results come again it is ready again.
func TestReadyzFollowsNodeReadiness(t *testing.T) {
	fs := esltest.NewServer()
	t.Cleanup(fs.Close)
	e := newFullEnvWith(t, func(c *app.Config) {
		c.ESL, c.ESLPassword = []string{fs.Addr()}, "ClueCon"
		c.ESLProbeInterval, c.ESLJobTimeout = 50*time.Millisecond, 300*time.Millisecond
	}, nil)
	node := fs.Addr() // app.New names each node by its address

	readyz := func(status int) map[string]any {
		t.Helper()
		var a answer
		wait.ForState(t, fmt.Sprintf("/readyz to answer %d", status), func() (bool, string) {
			a = e.call("GET", "/readyz", "", nil)
			return a.status == status, fmt.Sprintf("%d %s", a.status, a.body)
		}, wait.Every(20*time.Millisecond))
		return a.json(t)["nodes"].([]any)[0].(map[string]any)
	}
	metric := func(line string) {
		t.Helper()
		a := e.call("GET", "/metrics", fullAdminToken, nil)
		if a.status != http.StatusOK || !strings.Contains(string(a.body), line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}

	n := readyz(http.StatusOK)
	if n["ready"] != true || n["probe_ms"].(float64) <= 0 {
		t.Errorf("ready node shown as %v", n)
	}
	metric(`callbridge_esl_node_ready{node="` + node + `"} 1`)

	fs.SetJobEvents(esltest.JobEventsSwallowed)
	n = readyz(http.StatusServiceUnavailable)
	if n["connected"] != true || n["ready"] != false || !strings.Contains(n["not_ready"].(string), "no BACKGROUND_JOB") || n["job_timeouts"].(float64) < 1 {
		t.Errorf("node whose jobs never complete shown as %v", n)
	}
	metric(`callbridge_esl_node_ready{node="` + node + `"} 0`)
	metric(`callbridge_esl_job_timeouts_total{node="` + node + `"}`)

	fs.SetJobEvents(esltest.JobEventsNormal)
	if n = readyz(http.StatusOK); n["ready"] != true {
		t.Errorf("recovered node shown as %v", n)
	}
}
