//go:build realswitch

package realswitch_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"callbridge"
	"callbridge/internal/wait"
	"callbridge/realswitch"
)

// TestOverload: FreeSWITCH holds 4 sessions (FS_MAX_SESSIONS) and creates
// 3 a second (FS_SESSIONS_PER_SECOND), far less than the callbacks
// offered, so it refuses sessions whatever the machine's speed. Each
// callback needs two sessions (A answers, B talks 2 s). The controller
// places at most 3 callbacks on the node (CALLBRIDGE_MAX_CALLS, below the
// 4 sessions, so that a node full of A legs can still place a B) and
// bounds its queue at 4 s of what the node places (CALLBRIDGE_QUEUE_WAIT).
// It asserts that
//   - the controller never adopts its own callbacks (no reconciled
//     entries, no "cannot persist", no adoption in its log);
//   - FreeSWITCH refused originates, each refused leg was placed again
//     (originate_refused in the history, not an attempt) and every
//     accepted callback completed: none failed node_unavailable while
//     capacity came back;
//   - the API answered 503 with Retry-After and a JSON error past the
//     bound;
//   - a /fs/dialplan request FreeSWITCH gave up on (the controller
//     stopped for 3 s) is counted in callbridge_dialplan_late_total.
//
// It changes FreeSWITCH's limits, so it runs on an Env of its own.
func TestOverload(t *testing.T) {
	t.Parallel()
	own := startOwn(t, realswitch.Options{
		SwitchEnv: map[string]string{"FS_MAX_SESSIONS": "4", "FS_SESSIONS_PER_SECOND": "3"},
		ControllerEnv: map[string]string{
			"CALLBRIDGE_MAX_CALLS":  "3",
			"CALLBRIDGE_MAX_CPS":    "10",
			"CALLBRIDGE_QUEUE_WAIT": "4s",
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	acct, err := own.NewAccount(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}

	// Offer callbacks, 20 a second, until the API refuses one.
	var ids []string
	var refusal *http.Response
	var refusalBody []byte
	for i := 0; i < 120 && refusal == nil; i++ {
		a, b := realswitch.Number(5600+i, realswitch.Answer), realswitch.Number(5800+i, realswitch.Hold(2))
		resp, body := post(ctx, t, acct, realswitch.CallbackRequest{A: a, B: b})
		switch resp.StatusCode {
		case http.StatusAccepted:
			var cb callbridge.Callback
			if err := json.Unmarshal(body, &cb); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, cb.ID)
		default:
			refusal, refusalBody = resp, body
		}
		time.Sleep(50 * time.Millisecond)
	}
	if refusal == nil {
		t.Fatalf("%d callbacks accepted, none refused: no bound", len(ids))
	}
	t.Logf("%d callbacks accepted, then %d %s (Retry-After %s)", len(ids), refusal.StatusCode, bytes.TrimSpace(refusalBody), refusal.Header.Get("Retry-After"))
	if refusal.StatusCode != http.StatusServiceUnavailable && refusal.StatusCode != http.StatusTooManyRequests {
		t.Errorf("refused with %d, want 503 or 429", refusal.StatusCode)
	}
	if s, err := strconv.Atoi(refusal.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q, want whole seconds", refusal.Header.Get("Retry-After"))
	}
	var apiErr struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(refusalBody, &apiErr); err != nil || apiErr.Error.Code == "" || apiErr.Error.Message == "" {
		t.Errorf("refusal body %s, want a JSON error", refusalBody)
	}

	refusedLegs, byStatus := 0, map[string]int{}
	var refusedUUIDs []string
	for _, id := range ids {
		cb, err := acct.WaitCallback(ctx, id, realswitch.Ended)
		if err != nil {
			t.Fatal(err)
		}
		byStatus[string(cb.Status)+"/"+string(cb.Reason)]++
		if cb.Status != callbridge.CallbackCompleted {
			t.Errorf("%s: %s/%s, want completed once the node had room", id, cb.Status, cb.Reason)
			for _, e := range cb.Events {
				t.Logf("  %s %s %s %s", e.Type, e.Status, e.Leg, e.Detail)
			}
		}
		if cb.Attempt != 1 {
			t.Errorf("%s: attempt %d: a refused originate is not an attempt", id, cb.Attempt)
		}
		created := map[string]string{} // leg: uuid of its last placement
		for _, e := range cb.Events {
			switch e.Type {
			case callbridge.EventLegCreated:
				created[e.Leg] = e.Detail
			case callbridge.EventRefused:
				refusedLegs++
				refusedUUIDs = append(refusedUUIDs, created[e.Leg])
				if refusedLegs == 1 {
					t.Logf("first refusal: %s", e.Detail)
				}
			case callbridge.EventReconciled:
				t.Errorf("%s: %s entry (%s) though the controller never stopped", id, e.Type, e.Detail)
			}
		}
	}
	t.Logf("outcomes %v; %d originates refused and placed again", byStatus, refusedLegs)
	// Every refused channel has its CDR at once: unanswered, no time, the
	// refusal's cause (issue 12, load item 2).
	var cdrs []*callbridge.CDR
	wait.ForState(t, "a CDR of every refused channel", func() (bool, string) {
		var err error
		if cdrs, err = own.Admin.AccountCDRs(ctx, acct.AccountID, nil); err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, c := range cdrs {
			have[c.UUID] = true
		}
		var missing []string
		for _, uuid := range refusedUUIDs {
			if !have[uuid] {
				missing = append(missing, uuid)
			}
		}
		return len(missing) == 0, fmt.Sprintf("%d of the %d refused channels have no CDR: %v", len(missing), len(refusedUUIDs), missing)
	}, wait.Within(30*time.Second), wait.Every(200*time.Millisecond))
	byUUID := map[string]*callbridge.CDR{}
	for _, c := range cdrs {
		byUUID[c.UUID] = c
	}
	for _, uuid := range refusedUUIDs {
		if c := byUUID[uuid]; c.Answered() || c.BillMS != 0 || c.HangupCause == "" || c.HangupCause == "UNKNOWN" || c.Flags.Has(callbridge.CDREstimated) {
			t.Errorf("refused channel %s: CDR answered %v bill %d cause %q flags %v, want unanswered, 0 ms, the refusal's cause",
				uuid, c.Answered(), c.BillMS, c.HangupCause, c.Flags)
		}
	}
	t.Logf("all %d refused channels have their CDR; %d CDRs in all", len(refusedUUIDs), len(cdrs))
	if refusedLegs == 0 {
		t.Error("no originate was refused: FreeSWITCH's limits did not bite")
	}
	if log := own.Switch.Log(); !strings.Contains(log, "Over Session Limit") && !strings.Contains(log, "Throttle Error") {
		t.Error("FreeSWITCH's log shows no refused session")
	}
	for _, bad := range []string{"cannot persist", "callback adopted"} {
		if n := strings.Count(own.Controller.Log(), bad); n > 0 {
			t.Errorf("controller logged %q %d times", bad, n)
		}
	}
	m := metrics(ctx, t, own)
	if m["callbridge_originates_refused_total"] != float64(refusedLegs) {
		t.Errorf("callbridge_originates_refused_total %v, histories %d", m["callbridge_originates_refused_total"], refusedLegs)
	}
	if m["callbridge_callbacks_shed_total"] < 1 {
		t.Errorf("callbridge_callbacks_shed_total %v", m["callbridge_callbacks_shed_total"])
	}

	// FreeSWITCH waits 2 s (FS_DIALPLAN_TIMEOUT) for the dialplan of an
	// inbound call; the controller is stopped for 3 s meanwhile.
	before := m["callbridge_dialplan_late_total"]
	if err := own.Controller.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(3 * time.Second)
		own.Controller.Signal(syscall.SIGCONT)
	}()
	c, err := realswitch.Dial(ctx, own.Switch.ExternalSIP, realswitch.Number(5599, "999"), "+4915199990001", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := c.Final(); !ok || f.Status != 503 {
		t.Errorf("inbound call while the controller was stopped: %d, want FreeSWITCH's fallback 503", f.Status)
	}
	wait.ForState(t, "the request FreeSWITCH gave up on counted in callbridge_dialplan_late_total", func() (bool, string) {
		late := metrics(ctx, t, own)["callbridge_dialplan_late_total"]
		return late > before, fmt.Sprintf("callbridge_dialplan_late_total %v", late)
	}, wait.Every(200*time.Millisecond))
}

// post creates a callback and returns the raw answer, whatever its status.
func post(ctx context.Context, t *testing.T, acct *realswitch.Client, req realswitch.CallbackRequest) (*http.Response, []byte) {
	t.Helper()
	b, _ := json.Marshal(req)
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, acct.URL+"/v1/callbacks", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+acct.Token)
	r.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// metrics scrapes the controller's unlabelled metrics.
func metrics(ctx context.Context, t *testing.T, e *realswitch.Env) map[string]float64 {
	t.Helper()
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, e.Controller.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+e.Admin.Token)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out
}
