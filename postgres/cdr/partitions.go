package cdr

import (
	"context"
	"fmt"
	"strings"
	"time"

	"callbridge/postgres/internal/pg"

	"github.com/lib/pq"
)

// EnsurePartitions creates the monthly CDR partitions of the month of now
// and of the ahead months after it (UTC months), if they do not exist, and
// returns how many it checked. Rows of those months that waited in the
// default partition move into theirs. Controllers call it at start and
// the partitions job daily, so rows never pile up in the default
// partition.
func (s *Store) EnsurePartitions(ctx context.Context, now time.Time, ahead int) (int64, error) {
	m := time.Date(now.UTC().Year(), now.UTC().Month(), 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i <= ahead; i++ {
		if _, err := s.db.ExecContext(ctx, `SELECT cdrs_ensure_partition($1)`, m.AddDate(0, i, 0)); err != nil {
			return int64(i), fmt.Errorf("postgres: cdr partition %s: %w", m.AddDate(0, i, 0).Format("2006-01"), pg.Error(err))
		}
	}
	return int64(ahead + 1), nil
}

// RetirePartitions detaches the monthly CDR partitions that end at or
// before before, and drops them too when drop is set. Their rollups and
// invoices stay. It returns the names it retired.
func (s *Store) RetirePartitions(ctx context.Context, before time.Time, drop bool) ([]string, error) {
	var names []string
	err := s.db.SelectContext(ctx, &names, `
		SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
		WHERE p.relname = 'cdrs' AND c.relname ~ '^cdrs_[0-9]{6}$' ORDER BY c.relname`)
	if err != nil {
		return nil, fmt.Errorf("postgres: cdr partitions: %w", pg.Error(err))
	}
	var retired []string
	for _, n := range names {
		start, err := time.Parse("200601", strings.TrimPrefix(n, "cdrs_"))
		if err != nil || start.AddDate(0, 1, 0).After(before.UTC()) {
			continue
		}
		if _, err := s.db.ExecContext(ctx, fmt.Sprintf(`ALTER TABLE cdrs DETACH PARTITION %s`, pq.QuoteIdentifier(n))); err != nil {
			return retired, fmt.Errorf("postgres: detach %s: %w", n, pg.Error(err))
		}
		if drop {
			if _, err := s.db.ExecContext(ctx, fmt.Sprintf(`DROP TABLE %s`, pq.QuoteIdentifier(n))); err != nil {
				return retired, fmt.Errorf("postgres: drop %s: %w", n, pg.Error(err))
			}
		}
		retired = append(retired, n)
	}
	return retired, nil
}
