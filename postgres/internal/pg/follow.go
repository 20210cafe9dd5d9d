package pg

import (
	"context"
	"log/slog"
	"time"
)

// Follower describes a listen-then-load loop that keeps an in-memory
// copy of some rows equal to the database: Follow listens on Channel,
// loads everything, then reloads each id a notification names, and
// everything again after the LISTEN connection was lost (when
// notifications may have been missed). Rate decks and route plans use it.
type Follower struct {
	// What names the rows in log lines ("rate decks").
	What string
	// Name labels the listener's log lines ("deck").
	Name string
	// Key is the log attribute of an id whose reload failed ("deck").
	Key string
	// Channel is the LISTEN/NOTIFY channel; its payload is an id.
	Channel string
	// Queue is how many notified ids may wait; beyond it everything is
	// reloaded.
	Queue int
	// RetryDelay is how long Follow waits before trying again after a
	// failed load; zero means one second.
	RetryDelay time.Duration
	// Reload loads everything; Refresh loads one id.
	Reload  func(ctx context.Context) error
	Refresh func(ctx context.Context, id string) error
	// Loaded, if not nil, is called after each successful Reload and
	// after each batch of notified ids.
	Loaded func()
	// Every, if positive, is how often Tick is called.
	Every time.Duration
	Tick  func()
}

// Follow runs f until ctx ends: it listens on f.Channel, loads
// everything, closes ready (if not nil), then applies every change. A
// load that fails is retried after f.RetryDelay; the copy keeps serving
// what it has meanwhile. It returns the listener's error, or nil when ctx
// ends.
func (db *DB) Follow(ctx context.Context, f Follower, log *slog.Logger, ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	retryDelay := f.RetryDelay
	if retryDelay <= 0 {
		retryDelay = time.Second
	}
	loaded := func() {
		if f.Loaded != nil {
			f.Loaded()
		}
	}
	changes := make(chan string, f.Queue)
	resync := make(chan struct{}, 1)
	signal := func() {
		select {
		case resync <- struct{}{}:
		default:
		}
	}
	listening := make(chan struct{})
	lerr := make(chan error, 1)
	go func() {
		lerr <- db.Listen(ctx, f.Name, f.Channel, func(id string) {
			select {
			case changes <- id:
			default:
				signal() // too far behind: reload everything
			}
		}, signal, listening)
	}()
	select {
	case <-listening:
	case err := <-lerr:
		return err
	case <-ctx.Done():
		return nil
	}
	// Listening before loading: a change committed during the load is
	// queued and applied after it.
	signal()
	var tick <-chan time.Time
	if f.Every > 0 && f.Tick != nil {
		t := time.NewTicker(f.Every)
		defer t.Stop()
		tick = t.C
	}
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-lerr:
			return err
		case <-retry:
			retry = nil
			signal()
		case <-tick:
			f.Tick()
		case <-resync:
			if err := f.Reload(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				log.Error(f.What+": reload failed; retrying", "error", err, "retry_in", retryDelay.String())
				retry = time.After(retryDelay)
				continue
			}
			loaded()
			if ready != nil {
				close(ready)
				ready = nil
			}
		case id := <-changes:
			// Coalesce what is queued: an id named twice loads once.
			ids := map[string]bool{id: true}
			for more := true; more; {
				select {
				case id := <-changes:
					ids[id] = true
				default:
					more = false
				}
			}
			for id := range ids {
				if err := f.Refresh(ctx, id); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					// The next full reload reads it again.
					log.Error(f.What+": reload of one "+f.Key+" failed; retrying", f.Key, id, "error", err, "retry_in", retryDelay.String())
					retry = time.After(retryDelay)
				}
			}
			loaded()
		}
	}
}
