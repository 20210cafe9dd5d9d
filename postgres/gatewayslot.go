package postgres

import (
	"context"
	"time"

	"callbridge"
	"callbridge/routing"

	"github.com/lib/pq"
)

// GatewaySlots counts the calls in progress through each carrier gateway
// for every controller (gateway_slots, migration 0022), so that the
// gateways' caps hold across controllers. Package carrier claims a slot
// per attempt, renews the leases of those it holds while their calls last
// and releases them when they end.
type GatewaySlots struct {
	db *DB
}

// NewGatewaySlots returns the gateway slots of db.
func NewGatewaySlots(db *DB) *GatewaySlots { return &GatewaySlots{db: db} }

// Claim takes a slot through gateway for holder, leased for lease, when
// the gateway is under l (or whatever its load with force): it returns
// the slot's id (0 when refused), routing.ReasonOK,
// routing.ReasonAtCapacity or routing.ReasonCPSLimit, and the gateway's
// load after the claim. Claims through one gateway are serialised in the
// database: two controllers never both take its last slot. Errors:
// EINVALID for a gateway name the table refuses, EUNAVAILABLE and
// EINTERNAL as the database fails.
func (s *GatewaySlots) Claim(ctx context.Context, gateway, holder string, l routing.Limits, lease time.Duration, force bool) (int64, routing.Reason, routing.Load, error) {
	var (
		slot            *int64
		reason          string
		active, started int
	)
	err := s.db.QueryRowContext(ctx, `SELECT slot, reason, active, started FROM gateway_slot_claim($1, $2, $3, $4, $5, $6)`,
		gateway, holder, l.MaxActive, l.MaxCPS, max(lease.Milliseconds(), 1), force).Scan(&slot, &reason, &active, &started)
	if err != nil {
		return 0, 0, routing.Load{}, Error(err)
	}
	load := routing.Load{Gateway: gateway, Active: active, Started: started}
	switch reason {
	case "ok":
		if slot == nil {
			return 0, 0, load, callbridge.Errorf(callbridge.EINTERNAL, "postgres: gateway %s: a claim without a slot", gateway)
		}
		return *slot, routing.ReasonOK, load, nil
	case "at_capacity":
		return 0, routing.ReasonAtCapacity, load, nil
	case "cps_limit":
		return 0, routing.ReasonCPSLimit, load, nil
	}
	return 0, 0, load, callbridge.Errorf(callbridge.EINTERNAL, "postgres: gateway %s: claim answered %q", gateway, reason)
}

// Renew extends the leases of the slots ids that have not ended to lease
// from now, and returns those it extended: a slot missing from the answer
// was released, or its lease ended and a claim deleted it.
func (s *GatewaySlots) Renew(ctx context.Context, ids []int64, lease time.Duration) ([]int64, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := s.db.QueryContext(ctx, `UPDATE gateway_slots SET expires_at = clock_timestamp() + make_interval(secs => $2 / 1000.0)
		WHERE id = ANY($1) AND NOT ended RETURNING id`, pq.Array(ids), lease.Milliseconds())
	if err != nil {
		return nil, Error(err)
	}
	defer rows.Close()
	kept := make([]int64, 0, len(ids))
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, Error(err)
		}
		kept = append(kept, id)
	}
	return kept, Error(rows.Err())
}

// Release ends the slots ids: they stop counting as calls at once, and
// towards the calls-per-second window a second after they started.
// Releasing a slot twice, or one already deleted, does nothing.
func (s *GatewaySlots) Release(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.db.ExecContext(ctx, `UPDATE gateway_slots SET ended = true WHERE id = ANY($1)`, pq.Array(ids))
	return Error(err)
}

// Loads returns the load of every gateway with a slot, by name.
func (s *GatewaySlots) Loads(ctx context.Context) ([]routing.Load, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT gateway,
			count(*) FILTER (WHERE NOT ended AND expires_at > clock_timestamp()),
			count(*) FILTER (WHERE started_at > clock_timestamp() - interval '1 second')
		FROM gateway_slots GROUP BY gateway ORDER BY gateway`)
	if err != nil {
		return nil, Error(err)
	}
	defer rows.Close()
	var out []routing.Load
	for rows.Next() {
		var l routing.Load
		if err := rows.Scan(&l.Gateway, &l.Active, &l.Started); err != nil {
			return nil, Error(err)
		}
		out = append(out, l)
	}
	return out, Error(rows.Err())
}
