package controller_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"callbridge"
	"callbridge/controller"
)

// lostAnswer is a callback store whose first creation takes effect but
// answers EOUTCOMEUNKNOWN, as postgres.CallbackService does when its
// connection died around the commit and the database could not be reached
// to settle it.
type lostAnswer struct {
	callbridge.CallbackService
	lost atomic.Bool
}

var _ callbridge.CallbackService = (*lostAnswer)(nil)

func (s *lostAnswer) CreateCallback(ctx context.Context, r *callbridge.CallbackRequest) (*callbridge.Callback, bool, error) {
	cb, created, err := s.CallbackService.CreateCallback(ctx, r)
	if err == nil && s.lost.CompareAndSwap(false, true) {
		return nil, false, callbridge.Errorf(callbridge.EOUTCOMEUNKNOWN, "callback %s may have been created", cb.ID)
	}
	return cb, created, err
}

// TestCreateCallbackOutcomeUnknown checks the answer to a creation whose
// outcome is unknown (503 outcome_unknown with Retry-After, as documented),
// and that the repeat the answer asks for, with the same Idempotency-Key,
// returns the callback that was created rather than a second one.
func TestCreateCallbackOutcomeUnknown(t *testing.T) {
	t.Parallel()
	env := newFullEnv(t, func(s *controller.Server) { s.Callbacks = &lostAnswer{CallbackService: s.Callbacks} })
	tn := env.newTenant("outcome")
	post := func() answer {
		return env.send(request{method: "POST", path: "/v1/callbacks", auth: "Bearer " + tn.key, contentType: "application/json",
			body: strings.NewReader(`{"a":"+4930111222","b":"+4930333444"}`), header: map[string]string{"Idempotency-Key": "order-7"}})
	}
	first := post()
	if code, _ := first.errorCode(); first.status != http.StatusServiceUnavailable || code != callbridge.EOUTCOMEUNKNOWN || first.header.Get("Retry-After") == "" {
		t.Fatalf("creation of unknown outcome: got %d %q (Retry-After %q), want 503 %s with Retry-After: %s",
			first.status, code, first.header.Get("Retry-After"), callbridge.EOUTCOMEUNKNOWN, first.body)
	}
	repeat := post()
	if repeat.status != http.StatusAccepted {
		t.Fatalf("the repeat: got %d, want 202: %s", repeat.status, repeat.body)
	}
	id, _ := repeat.json(t)["id"].(string)
	list := env.mustCall(http.StatusOK, "GET", "/v1/callbacks", tn.key, nil).json(t)
	cbs, _ := list["callbacks"].([]any)
	if len(cbs) != 1 || cbs[0].(map[string]any)["id"] != id {
		t.Errorf("the account's callbacks: got %v, want only %s, the one the repeat returned", cbs, id)
	}
}
