package callback_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"callbridge"
	"callbridge/callback"
	"callbridge/internal/wait"
)

// refusals returns the originate_refused entries of a callback's history.
func refusals(cb *callbridge.Callback) []*callbridge.CallbackEvent {
	var out []*callbridge.CallbackEvent
	for _, e := range cb.Events {
		if e.Type == callbridge.EventRefused {
			out = append(out, e)
		}
	}
	return out
}

// TestCallbackRefusedOriginateRetried: a node refuses a leg's originate
// before anything rings (every session for A; for B, all but the one A
// holds); the leg is placed again, with a new channel, until the node
// takes it, and the callback completes: the history has each refusal, the
// attempt is not counted, the engine slowed down.
func TestCallbackRefusedOriginateRetried(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		leg    string
		limit  int
		status callbridge.CallbackStatus
	}{
		{callbridge.LegA, -1, callbridge.CallbackCallingA},
		{callbridge.LegB, 1, callbridge.CallbackCallingB},
	} {
		t.Run("leg "+tt.leg, func(t *testing.T) {
			t.Parallel()
			env := newCBEnv(t, cbOpts{})
			env.fs.SetMaxSessions(tt.limit)
			id := env.create(`{"a":"4916011111","b":"4912022222"}`)
			wait.For(t, "two refusals of leg "+tt.leg, func() bool { return len(refusalsOf(refusals(env.get(id)), tt.leg)) >= 2 })
			if got := env.get(id).Status; got != tt.status {
				t.Errorf("status while refused: %s, want %s", got, tt.status)
			}
			env.fs.SetMaxSessions(0)
			cb := env.waitEnded(id)
			if cb.Status != callbridge.CallbackCompleted {
				t.Fatalf("%s/%s, want completed; history %v", cb.Status, cb.Reason, history(cb))
			}
			if cb.Attempt != 1 {
				t.Errorf("attempt %d, want 1: a refusal is not an attempt", cb.Attempt)
			}
			rs := refusalsOf(refusals(cb), tt.leg)
			if len(refusals(cb)) != len(rs) {
				t.Errorf("refusals of the other leg: %d of %d", len(refusals(cb))-len(rs), len(refusals(cb)))
			}
			if n := env.legOriginates(id, tt.leg); n != 1+len(rs) {
				t.Errorf("leg %s originated %d times for %d refusals", tt.leg, n, len(rs))
			}
			l := env.leg(cb, tt.leg)
			if l == nil || l.AnsweredAt == nil || l.HangupCause == "DESTINATION_OUT_OF_ORDER" {
				t.Errorf("leg %s %+v is not the placement that was answered", tt.leg, l)
			}
			rate, n, _ := env.engine.Pacing()
			if n != int64(len(rs)) {
				t.Errorf("engine counted %d refusals, the history %d", n, len(rs))
			}
			if rate >= 500 {
				t.Errorf("pacing rate %.1f/s after refusals, want below the pool's 500/s", rate)
			}
		})
	}
}

func refusalsOf(es []*callbridge.CallbackEvent, leg string) []*callbridge.CallbackEvent {
	var out []*callbridge.CallbackEvent
	for _, e := range es {
		if e.Leg == leg {
			out = append(out, e)
		}
	}
	return out
}

// TestCallbackRefusedPastDeadline: a node that refuses every session
// fails the callback truthfully once its deadline has passed, after
// placing it again meanwhile.
func TestCallbackRefusedPastDeadline(t *testing.T) {
	t.Parallel()
	env := newCBEnv(t, cbOpts{refusedRetry: 1500 * time.Millisecond})
	env.fs.SetMaxSessions(-1)
	id := env.create(`{"a":"4916011111","b":"4914022222"}`)
	cb := env.waitEnded(id)
	if cb.Status != callbridge.CallbackFailed || cb.Reason != callbridge.ReasonNodeUnavailable {
		t.Fatalf("got %s/%s, want failed/node_unavailable", cb.Status, cb.Reason)
	}
	if rs := refusals(cb); len(rs) < 2 {
		t.Errorf("%d refusals in the history, want the first and at least one of its retries", len(rs))
	}
	if cb.Attempt != 1 {
		t.Errorf("attempt %d, want 1", cb.Attempt)
	}
}

// batchStore records the sizes of the claims the engine makes.
type batchStore struct {
	callback.Store
	mu      sync.Mutex
	batches []int
}

func (s *batchStore) ClaimCallbacks(ctx context.Context, owner, node string, lease time.Duration, n int) ([]*callbridge.Callback, error) {
	cbs, err := s.Store.ClaimCallbacks(ctx, owner, node, lease, n)
	if len(cbs) > 0 {
		s.mu.Lock()
		s.batches = append(s.batches, len(cbs))
		s.mu.Unlock()
	}
	return cbs, err
}

// TestCallbackClaimBatches: a deep queue is claimed in batches, not one
// callback per transaction.
func TestCallbackClaimBatches(t *testing.T) {
	t.Parallel()
	env := newCBEnv(t, cbOpts{noEngine: true})
	var ids []string
	for i := 0; i < 40; i++ {
		ids = append(ids, env.create(fmt.Sprintf(`{"a":"49160111%02d","b":"49140222%02d"}`, i, i)))
	}
	bs := &batchStore{}
	env.startEngine(cbOpts{store: func(s callback.Store) callback.Store { bs.Store = s; return bs }})
	for _, id := range ids {
		env.waitStatus(id, callbridge.CallbackCompleted, callbridge.CallbackFailed)
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	total, biggest := 0, 0
	for _, n := range bs.batches {
		total += n
		biggest = max(biggest, n)
	}
	if total != len(ids) || biggest < 2 || len(bs.batches) >= len(ids) {
		t.Errorf("claims %v: want the %d callbacks in fewer, bigger batches", bs.batches, len(ids))
	}
}

// TestCallbackAdmissionBound: while the node refuses every session, the
// API accepts callbacks up to the bound, then answers 503 with
// Retry-After and a JSON error; once the node takes sessions again the
// queue drains and new callbacks are accepted.
func TestCallbackAdmissionBound(t *testing.T) {
	t.Parallel()
	env := newCBEnv(t, cbOpts{refusedRetry: 300 * time.Millisecond, queueWait: time.Second})
	env.fs.SetMaxSessions(-1)
	var accepted []string
	var code int
	var h http.Header
	var raw []byte
	for i := 0; i < 200; i++ {
		code, h, raw = env.do("POST", "/v1/callbacks", fmt.Sprintf(`{"a":"4916011%03d","b":"4916022%03d"}`, i, i))
		if code != http.StatusAccepted {
			break
		}
		var cb callbridge.Callback
		if err := json.Unmarshal(raw, &cb); err != nil {
			t.Fatal(err)
		}
		accepted = append(accepted, cb.ID)
	}
	if code != http.StatusServiceUnavailable {
		t.Fatalf("after %d callbacks: %d %s, want 503 past the bound", len(accepted), code, raw)
	}
	if len(accepted) < callback.MinQueueBound {
		t.Errorf("refused after %d callbacks, want at least %d accepted", len(accepted), callback.MinQueueBound)
	}
	if s, err := strconv.Atoi(h.Get("Retry-After")); err != nil || s < 1 || s > 60 {
		t.Errorf("Retry-After %q, want 1 to 60 seconds", h.Get("Retry-After"))
	}
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(raw, &body); err != nil || body.Error.Code != callbridge.EUNAVAILABLE || body.Error.Message == "" {
		t.Errorf("503 body %s", raw)
	}
	if _, _, shed := env.engine.Pacing(); shed < 1 {
		t.Errorf("shed counter %d", shed)
	}

	env.fs.SetMaxSessions(0)
	completed := 0
	for _, id := range accepted {
		env.hangUpWhenBridged(id)
		cb := env.waitEnded(id)
		switch {
		case cb.Status == callbridge.CallbackCompleted:
			completed++
		case cb.Reason == callbridge.ReasonNodeUnavailable && len(refusals(cb)) > 0:
			// claimed while the node refused, past its deadline: truthful
		default:
			t.Errorf("%s: %s/%s, history %v", id, cb.Status, cb.Reason, history(cb))
			for _, e := range cb.Events {
				t.Logf("%s %s %s %s", e.Type, e.Status, e.Leg, e.Detail)
			}
		}
	}
	if completed == 0 {
		t.Error("no callback completed once the node took sessions again")
	}
	wait.For(t, "the API to accept again", func() bool {
		code, _, _ := env.do("POST", "/v1/callbacks", `{"a":"4916011999","b":"4914022999"}`)
		return code == http.StatusAccepted
	})
}
