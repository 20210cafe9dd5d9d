package postgres

import (
	"callbridge"

	"github.com/google/uuid"
)

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
