package controller

import (
	"context"
	"net/http"
	"time"

	"callbridge/esl"

	"github.com/gin-gonic/gin"
)

// healthz says the process is alive. It checks nothing else, so an
// orchestrator does not restart a controller because PostgreSQL is down.
func healthz(version string) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"status": "ok", "version": version})
	}
}

// readyz says whether this controller can do its work: the database
// answers, its schema is current, and (when nodes are configured) at least
// one FreeSWITCH node is ready: connected, and completing its commands
// (a connected node whose bgapi results do not come back is not). Each
// node's state is listed.
func readyz(db HealthChecker, nodes func() []NodeStatus) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
		defer cancel()
		ready := true
		dbState := gin.H{"reachable": false}
		if db == nil {
			ready = false
		} else if err := db.PingContext(ctx); err != nil {
			ready = false
			dbState["error"] = "database unreachable"
		} else {
			dbState["reachable"] = true
			v, current, err := db.SchemaStatus(ctx)
			dbState["schema_version"], dbState["schema_current"] = v, current
			if err != nil || !current {
				ready = false
			}
		}
		var ns []NodeStatus
		if nodes != nil {
			ns = nodes()
			usable := 0
			for _, n := range ns {
				if n.Ready {
					usable++
				}
			}
			if len(ns) > 0 && usable == 0 {
				ready = false
			}
		}
		if ns == nil {
			ns = []NodeStatus{}
		}
		status := http.StatusOK
		if !ready {
			status = http.StatusServiceUnavailable
		}
		c.JSON(status, gin.H{"ready": ready, "database": dbState, "nodes": ns})
	}
}

// NodeStatuses reports each node's client for /readyz and the metrics.
func NodeStatuses(clients []*esl.Client) []NodeStatus {
	var out []NodeStatus
	for _, c := range clients {
		st := c.Stats()
		out = append(out, NodeStatus{
			Name:          c.Name(),
			Addr:          c.Name(),
			State:         st.State.String(),
			Connected:     st.State == esl.StateConnected,
			Ready:         st.Ready,
			NotReady:      st.NotReady,
			ProbeMS:       float64(st.ProbeLatency.Microseconds()) / 1000,
			ProbeFailures: int64(st.ProbeFailures),
			JobTimeouts:   int64(st.JobTimeouts),
			Redials:       int64(st.Redials),
			Events:        int64(st.EventsReceived),
			Calls:         st.ActiveCalls,
		})
	}
	return out
}
