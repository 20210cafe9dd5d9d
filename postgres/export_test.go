package postgres

import (
	"callbridge"
	"context"
	"time"

	"github.com/google/uuid"
)

// ClaimCallback claims the oldest due queued callback for owner, on node,
// with a lease, and moves it to calling_a. It returns nil when none is due.
func (s *CallbackService) ClaimCallback(ctx context.Context, owner, node string, lease time.Duration) (*callbridge.Callback, error) {
	cbs, err := s.ClaimCallbacks(ctx, owner, node, lease, 1)
	if err != nil || len(cbs) == 0 {
		return nil, err
	}
	return cbs[0], nil
}

// CreateBatch runs reqs as one batch, as concurrent CreateCallback calls
// share one, and returns for each request the callback it inserted (nil if
// none) or its error.
func (s *CallbackService) CreateBatch(reqs []*callbridge.CallbackRequest) ([]*callbridge.Callback, []error) {
	calls := make([]*createCall, len(reqs))
	for i, r := range reqs {
		calls[i] = &createCall{r: r, id: uuid.NewString()}
	}
	s.flushCreates(calls)
	cbs, errs := make([]*callbridge.Callback, len(calls)), make([]error, len(calls))
	for i, c := range calls {
		if c.row != nil {
			cbs[i] = c.row.callback()
		}
		errs[i] = c.err
	}
	return cbs, errs
}
