package pg

import (
	"context"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// Listen runs LISTEN channel on a connection of its own until ctx ends. It
// calls changed with the payload of every notification, and resync after
// the connection was lost and re-established: notifications may have been
// missed then, so whatever the caller keeps in memory must be read again
// whole. Both run on listen's goroutine. ready, if not nil, is closed once
// the LISTEN is in place. name labels the listener's log lines.
func (db *DB) Listen(ctx context.Context, name, channel string, changed func(string), resync func(), ready chan<- struct{}) error {
	l := pq.NewListener(db.URL, 100*time.Millisecond, 10*time.Second, func(ev pq.ListenerEventType, err error) {
		if err != nil {
			db.Logger.Warn(name+" listener", "event", int(ev), "err", err)
		}
	})
	defer l.Close()
	if err := l.Listen(channel); err != nil {
		return fmt.Errorf("postgres: listen %s: %w", channel, Error(err))
	}
	if ready != nil {
		close(ready)
	}
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case n := <-l.Notify:
			if n == nil {
				resync()
				continue
			}
			changed(n.Extra)
		case <-ping.C:
			// Ping detects a dead connection that would otherwise
			// stay silent; the listener then reconnects.
			l.Ping()
		}
	}
}
