// Package cdr stores CDRs, the live channels the CDR sweep watches, dead
// letters and re-rating history. It is part of the postgres adapter: build
// it through postgres.NewCDRStore.
package cdr

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"callbridge"
	"callbridge/postgres/internal/pg"

	"github.com/google/uuid"
	"github.com/lib/pq"
)

// Store stores CDRs, the live channels the sweep watches, dead letters
// and re-rating history. It implements callbridge.CDRService.
type Store struct{ db *pg.DB }

var _ callbridge.CDRService = (*Store)(nil)

// New returns a Store backed by db.
func New(db *pg.DB) *Store { return &Store{db: db} }

// columns are the columns of cdr_staging the pipeline fills, in COPY
// order; cdrs has the same names.
var columns = []string{
	"seq", "uuid", "start_at", "other_uuid", "leg", "account_id", "callback_id", "binding_id",
	"direction", "caller", "callee", "presented", "gateway", "node", "answer_at", "end_at",
	"duration_ms", "bill_ms", "hangup_cause", "q850", "disposition",
	"sell_micros", "sell_currency", "sell_deck_id", "sell_deck_version", "sell_prefix",
	"buy_micros", "buy_currency", "buy_deck_id", "buy_deck_version", "buy_prefix",
	"flags", "rated_at", "attempt",
}

// copyCDRs is the COPY statement lib/pq turns into a CopyIn statement.
var copyCDRs = "COPY cdr_batch (" + strings.Join(columns, ", ") + ") FROM STDIN"

// WriteBatch stores a batch in one transaction and returns how many CDRs
// were new. live updates the legs believed up (a leg whose CDR exists is
// never made live again); each CDR is inserted unless a CDR of its channel
// uuid already exists (in this batch or any earlier one, from any
// controller), and its channel leaves live_channels. Replaying a batch is
// therefore harmless. CDRs are COPYed into a session temporary table and
// inserted from it with one INSERT ... SELECT.
//
// Errors are mapped by Error: EUNAVAILABLE when the database cannot be
// reached (retry later), EINVALID when a value is refused (the batch will
// never pass as is).
func (s *Store) WriteBatch(ctx context.Context, cdrs []*callbridge.CDR, live []*callbridge.LiveChannel) (int, error) {
	if len(cdrs) == 0 && len(live) == 0 {
		return 0, nil
	}
	var inserted int
	err := s.db.Tx(ctx, func(tx *pg.Tx) error {
		if len(live) > 0 {
			if err := upsertLive(ctx, tx, live); err != nil {
				return err
			}
		}
		if len(cdrs) == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE IF NOT EXISTS cdr_batch
			(LIKE cdr_staging INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`); err != nil {
			return writeError(err)
		}
		stmt, err := tx.PrepareContext(ctx, copyCDRs)
		if err != nil {
			return writeError(err)
		}
		for i, c := range cdrs {
			if _, err := stmt.ExecContext(ctx, copyValues(i, c)...); err != nil {
				stmt.Close()
				return writeError(err)
			}
		}
		if _, err := stmt.ExecContext(ctx); err != nil {
			stmt.Close()
			return writeError(err)
		}
		if err := stmt.Close(); err != nil {
			return writeError(err)
		}
		cols := strings.Join(columns[1:], ", ")
		res, err := tx.ExecContext(ctx, `
			WITH b AS (SELECT DISTINCT ON (uuid) * FROM cdr_batch ORDER BY uuid, seq),
			k AS (INSERT INTO cdr_keys (uuid, start_at) SELECT uuid, start_at FROM b
			      ON CONFLICT (uuid) DO NOTHING RETURNING uuid)
			INSERT INTO cdrs (`+cols+`) SELECT `+cols+` FROM b JOIN k USING (uuid)`)
		if err != nil {
			return writeError(err)
		}
		n, _ := res.RowsAffected()
		inserted = int(n)
		if _, err := tx.ExecContext(ctx, `DELETE FROM live_channels l USING cdr_batch b WHERE l.uuid = b.uuid`); err != nil {
			return writeError(err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return inserted, nil
}

// writeError is pg.Error, and also maps every data exception (class 22) and
// integrity violation (class 23) to EINVALID: the pipeline retries a batch
// that failed for any other reason, and dead-letters only records the
// database refuses.
func writeError(err error) error {
	var pe *pq.Error
	if errors.As(err, &pe) && (pe.Code.Class() == "22" || pe.Code.Class() == "23") {
		return fmt.Errorf("%w: %s", &callbridge.Error{Code: callbridge.EINVALID, Message: "value refused: " + pe.Message}, pe.Code)
	}
	return pg.Error(err)
}

func copyValues(seq int, c *callbridge.CDR) []any {
	return []any{
		seq, c.UUID, c.StartAt.UTC(), nullStringArg(c.OtherUUID), c.Leg, nullStringArg(c.AccountID),
		nullStringArg(c.CallbackID), nullStringArg(c.BindingID),
		c.Direction, c.Caller, c.Callee, c.Presented, c.Gateway, c.Node, nullTimeArg(c.AnswerAt), c.EndAt.UTC(),
		c.DurationMS, c.BillMS, c.HangupCause, c.Q850, c.Disposition,
		c.Sell, c.SellCurrency, c.SellDeckID, c.SellDeckVersion, c.SellPrefix,
		c.Buy, c.BuyCurrency, c.BuyDeckID, c.BuyDeckVersion, c.BuyPrefix,
		pq.StringArray(c.Flags.Names()), ratedAt(c), c.Attempt,
	}
}

func ratedAt(c *callbridge.CDR) time.Time {
	if c.RatedAt.IsZero() {
		return time.Now().UTC()
	}
	return c.RatedAt.UTC()
}

func nullStringArg(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullTimeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

func upsertLive(ctx context.Context, tx *pg.Tx, live []*callbridge.LiveChannel) error {
	n := len(live)
	var (
		ids, nodes, others, legs, accounts, callbacks, bindings = make([]sql.NullString, n), make([]string, n), make([]sql.NullString, n), make([]string, n), make([]sql.NullString, n), make([]sql.NullString, n), make([]sql.NullString, n)
		dirs, callers, callees, presented, gateways             = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		starts, answers, seen                                   = make([]sql.NullTime, n), make([]sql.NullTime, n), make([]sql.NullTime, n)
		maxes                                                   = make([]int64, n)
	)
	ns := func(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }
	nt := func(t time.Time) sql.NullTime { return sql.NullTime{Time: t.UTC(), Valid: !t.IsZero()} }
	for i, l := range live {
		ids[i], nodes[i], others[i], legs[i] = ns(l.UUID), l.Node, ns(l.OtherUUID), l.Leg
		accounts[i], callbacks[i], bindings[i] = ns(l.AccountID), ns(l.CallbackID), ns(l.BindingID)
		dirs[i], callers[i], callees[i], presented[i], gateways[i] = l.Direction, l.Caller, l.Callee, l.Presented, l.Gateway
		starts[i], answers[i], seen[i], maxes[i] = nt(l.StartAt), nt(l.AnswerAt), nt(l.SeenAt), l.MaxMS
	}
	arr := func(v any) any { return pq.GenericArray{A: v} }
	// DISTINCT ON keeps the last update of each leg in the batch (an
	// ANSWER after its CREATE); ON CONFLICT merges it with the stored row,
	// which may be the one a callback engine recorded before originating
	// the leg (its gateway is filled in from the events).
	_, err := tx.ExecContext(ctx, `
		INSERT INTO live_channels AS l (uuid, node, other_uuid, leg, account_id, callback_id, binding_id,
			direction, caller, callee, presented, gateway, start_at, answer_at, max_ms, seen_at)
		SELECT DISTINCT ON (u.uuid) u.uuid, u.node, u.other_uuid, u.leg, u.account_id, u.callback_id, u.binding_id,
			u.direction, u.caller, u.callee, u.presented, u.gateway, u.start_at, u.answer_at, u.max_ms, u.seen_at
		FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::uuid[], $6::uuid[], $7::uuid[],
			$8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::timestamptz[], $14::timestamptz[],
			$15::bigint[], $16::timestamptz[])
			WITH ORDINALITY AS u(uuid, node, other_uuid, leg, account_id, callback_id, binding_id,
			direction, caller, callee, presented, gateway, start_at, answer_at, max_ms, seen_at, ord)
		WHERE NOT EXISTS (SELECT 1 FROM cdr_keys k WHERE k.uuid = u.uuid)
		ORDER BY u.uuid, u.ord DESC
		ON CONFLICT (uuid) DO UPDATE SET
			direction = CASE WHEN l.direction = '' THEN EXCLUDED.direction ELSE l.direction END,
			caller = CASE WHEN l.caller = '' THEN EXCLUDED.caller ELSE l.caller END,
			callee = CASE WHEN l.callee = '' THEN EXCLUDED.callee ELSE l.callee END,
			presented = CASE WHEN l.presented = '' THEN EXCLUDED.presented ELSE l.presented END,
			gateway = CASE WHEN l.gateway = '' THEN EXCLUDED.gateway ELSE l.gateway END,
			other_uuid = coalesce(EXCLUDED.other_uuid, l.other_uuid),
			account_id = coalesce(EXCLUDED.account_id, l.account_id),
			callback_id = coalesce(EXCLUDED.callback_id, l.callback_id),
			binding_id = coalesce(EXCLUDED.binding_id, l.binding_id),
			answer_at = coalesce(l.answer_at, EXCLUDED.answer_at),
			max_ms = greatest(l.max_ms, EXCLUDED.max_ms),
			seen_at = greatest(l.seen_at, EXCLUDED.seen_at)`,
		arr(ids), pq.Array(nodes), arr(others), pq.Array(legs), arr(accounts), arr(callbacks), arr(bindings),
		pq.Array(dirs), pq.Array(callers), pq.Array(callees), pq.Array(presented), pq.Array(gateways),
		arr(starts), arr(answers), pq.Array(maxes), arr(seen))
	return writeError(err)
}

// LiveChannels returns the legs believed up on node, oldest first.
func (s *Store) LiveChannels(ctx context.Context, node string) ([]*callbridge.LiveChannel, error) {
	return s.liveWhere(ctx, `node = $1`, node)
}

// LiveChannelsByUUID returns those of the channels ids that are believed
// up, in no particular order; ids that are not uuids are ignored.
func (s *Store) LiveChannelsByUUID(ctx context.Context, ids []string) ([]*callbridge.LiveChannel, error) {
	valid := make([]string, 0, len(ids))
	for _, id := range ids {
		if callbridge.IsUUID(id) {
			valid = append(valid, id)
		}
	}
	if len(valid) == 0 {
		return nil, nil
	}
	return s.liveWhere(ctx, `uuid = ANY($1::uuid[])`, pq.Array(valid))
}

// OverdueChannels returns the legs believed up whose maximum duration
// (max_ms, or defaultMax when it is 0) plus grace has passed at now,
// oldest first, at most limit of them.
func (s *Store) OverdueChannels(ctx context.Context, now time.Time, defaultMax, grace time.Duration, limit int) ([]*callbridge.LiveChannel, error) {
	return s.liveWhere(ctx, `coalesce(answer_at, start_at)
		+ make_interval(secs => (CASE WHEN max_ms > 0 THEN max_ms ELSE $2 END + $3) / 1000.0) < $1
		ORDER BY start_at LIMIT $4`, now.UTC(), defaultMax.Milliseconds(), grace.Milliseconds(), limit)
}

func (s *Store) liveWhere(ctx context.Context, where string, args ...any) ([]*callbridge.LiveChannel, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT uuid, node, coalesce(other_uuid::text, ''), leg,
		coalesce(account_id::text, ''), coalesce(callback_id::text, ''), coalesce(binding_id::text, ''),
		direction, caller, callee, presented, gateway, start_at, answer_at, max_ms, seen_at
		FROM live_channels WHERE `+where, args...)
	if err != nil {
		return nil, pg.Error(err)
	}
	defer rows.Close()
	var out []*callbridge.LiveChannel
	for rows.Next() {
		var l callbridge.LiveChannel
		var answer sql.NullTime
		if err := rows.Scan(&l.UUID, &l.Node, &l.OtherUUID, &l.Leg, &l.AccountID, &l.CallbackID, &l.BindingID,
			&l.Direction, &l.Caller, &l.Callee, &l.Presented, &l.Gateway, &l.StartAt, &answer, &l.MaxMS, &l.SeenAt); err != nil {
			return nil, pg.Error(err)
		}
		l.StartAt, l.SeenAt = l.StartAt.UTC(), l.SeenAt.UTC()
		if answer.Valid {
			l.AnswerAt = answer.Time.UTC()
		}
		out = append(out, &l)
	}
	return out, pg.Error(rows.Err())
}

// DeadLetter stores a record that could not be stored as a CDR.
func (s *Store) DeadLetter(ctx context.Context, d *callbridge.CDRDeadLetter) error {
	err := s.db.QueryRowContext(ctx, `INSERT INTO cdr_dead_letters (uuid, node, reason, attempts, payload)
		VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at`,
		d.UUID, d.Node, d.Reason, d.Attempts, []byte(d.Payload)).Scan(&d.ID, &d.CreatedAt)
	if err != nil {
		return fmt.Errorf("postgres: dead letter: %w", pg.Error(err))
	}
	d.CreatedAt = d.CreatedAt.UTC()
	return nil
}

// DeadLetters returns the stored dead letters, oldest first.
func (s *Store) DeadLetters(ctx context.Context) ([]*callbridge.CDRDeadLetter, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, uuid, node, reason, attempts, payload, created_at
		FROM cdr_dead_letters ORDER BY id`)
	if err != nil {
		return nil, pg.Error(err)
	}
	defer rows.Close()
	var out []*callbridge.CDRDeadLetter
	for rows.Next() {
		var d callbridge.CDRDeadLetter
		var payload []byte
		if err := rows.Scan(&d.ID, &d.UUID, &d.Node, &d.Reason, &d.Attempts, &payload, &d.CreatedAt); err != nil {
			return nil, pg.Error(err)
		}
		d.Payload, d.CreatedAt = payload, d.CreatedAt.UTC()
		out = append(out, &d)
	}
	return out, pg.Error(rows.Err())
}

const selectCDR = `SELECT uuid, start_at, coalesce(other_uuid::text, ''), leg, coalesce(account_id::text, ''),
	coalesce(callback_id::text, ''), coalesce(binding_id::text, ''), direction, caller, callee, presented,
	gateway, node, answer_at, end_at, duration_ms, bill_ms, hangup_cause, q850, disposition,
	sell_micros, sell_currency, sell_deck_id, sell_deck_version, sell_prefix,
	buy_micros, buy_currency, buy_deck_id, buy_deck_version, buy_prefix, flags, rated_at, created_at, attempt
	FROM cdrs`

type scanner interface{ Scan(dest ...any) error }

func scanCDR(r scanner) (*callbridge.CDR, error) {
	var c callbridge.CDR
	var answer sql.NullTime
	var flags pq.StringArray
	err := r.Scan(&c.UUID, &c.StartAt, &c.OtherUUID, &c.Leg, &c.AccountID, &c.CallbackID, &c.BindingID,
		&c.Direction, &c.Caller, &c.Callee, &c.Presented, &c.Gateway, &c.Node, &answer, &c.EndAt,
		&c.DurationMS, &c.BillMS, &c.HangupCause, &c.Q850, &c.Disposition,
		&c.Sell, &c.SellCurrency, &c.SellDeckID, &c.SellDeckVersion, &c.SellPrefix,
		&c.Buy, &c.BuyCurrency, &c.BuyDeckID, &c.BuyDeckVersion, &c.BuyPrefix, &flags, &c.RatedAt, &c.CreatedAt, &c.Attempt)
	if err != nil {
		return nil, pg.Error(err)
	}
	if c.Flags, err = callbridge.ParseCDRFlags(flags); err != nil {
		return nil, fmt.Errorf("postgres: cdr %s: %w", c.UUID, err)
	}
	c.StartAt, c.EndAt, c.RatedAt, c.CreatedAt = c.StartAt.UTC(), c.EndAt.UTC(), c.RatedAt.UTC(), c.CreatedAt.UTC()
	if answer.Valid {
		c.AnswerAt = answer.Time.UTC()
	}
	return &c, nil
}

// CDR returns one CDR of an account by channel uuid. ENOTFOUND.
func (s *Store) CDR(ctx context.Context, accountID, id string) (*callbridge.CDR, error) {
	if !callbridge.IsUUID(accountID) || !callbridge.IsUUID(id) {
		return nil, pg.NotFound("cdr")
	}
	c, err := scanCDR(s.db.QueryRowContext(ctx, selectCDR+` WHERE account_id = $1 AND uuid = $2`, accountID, id))
	if callbridge.ErrorCode(err) == callbridge.ENOTFOUND {
		return nil, pg.NotFound("cdr")
	}
	return c, err
}

// CDRByUUID returns the CDR of a channel whatever its account, for
// operators and tests. ENOTFOUND.
func (s *Store) CDRByUUID(ctx context.Context, id string) (*callbridge.CDR, error) {
	if !callbridge.IsUUID(id) {
		return nil, pg.NotFound("cdr")
	}
	c, err := scanCDR(s.db.QueryRowContext(ctx, selectCDR+` WHERE uuid = $1`, id))
	if callbridge.ErrorCode(err) == callbridge.ENOTFOUND {
		return nil, pg.NotFound("cdr")
	}
	return c, err
}

// maxCDRPage caps one page of CDRs.
const maxCDRPage = 1000

// CDRs implements callbridge.CDRService. Pages follow (start_at, uuid), so
// a page boundary never skips or repeats a CDR even when many share a
// start time.
func (s *Store) CDRs(ctx context.Context, accountID string, f callbridge.CDRFilter) ([]*callbridge.CDR, string, error) {
	if !callbridge.IsUUID(accountID) {
		return nil, "", nil
	}
	if f.Limit <= 0 || f.Limit > maxCDRPage {
		f.Limit = maxCDRPage
	}
	where := []string{"account_id = $1"}
	args := []any{accountID}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if !f.From.IsZero() {
		add("start_at >= $%d", f.From.UTC())
	}
	if !f.To.IsZero() {
		add("start_at < $%d", f.To.UTC())
	}
	if f.Number != "" {
		add("$%[1]d IN (caller, callee, presented)", f.Number)
	}
	if f.BindingID != "" {
		if !callbridge.IsUUID(f.BindingID) {
			return nil, "", nil
		}
		add("binding_id = $%d", f.BindingID)
	}
	if f.CallbackID != "" {
		if !callbridge.IsUUID(f.CallbackID) {
			return nil, "", nil
		}
		add("callback_id = $%d", f.CallbackID)
	}
	if f.Cursor != "" {
		at, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		args = append(args, at, id)
		where = append(where, fmt.Sprintf("(start_at, uuid) > ($%d, $%d)", len(args)-1, len(args)))
	}
	args = append(args, f.Limit+1)
	q := selectCDR + ` WHERE ` + strings.Join(where, " AND ") + fmt.Sprintf(` ORDER BY start_at, uuid LIMIT $%d`, len(args))
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", pg.Error(err)
	}
	defer rows.Close()
	var out []*callbridge.CDR
	for rows.Next() {
		c, err := scanCDR(rows)
		if err != nil {
			return nil, "", err
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, "", pg.Error(err)
	}
	next := ""
	if len(out) > f.Limit {
		out = out[:f.Limit]
		last := out[len(out)-1]
		next = encodeCursor(last.StartAt, last.UUID)
	}
	return out, next, nil
}

func encodeCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + "|" + id))
}

func decodeCursor(s string) (time.Time, string, error) {
	bad := callbridge.FieldError("cursor", "is not a cursor this API returned")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return time.Time{}, "", bad
	}
	ts, id, ok := strings.Cut(string(b), "|")
	at, err := time.Parse(time.RFC3339Nano, ts)
	if !ok || err != nil || !callbridge.IsUUID(id) {
		return time.Time{}, "", bad
	}
	return at, id, nil
}

// RerateFilter selects the CDRs Rerate prices again: StartAt in [From, To),
// of one account when AccountID is set.
type RerateFilter struct {
	From, To  time.Time
	AccountID string
}

// RerateSummary counts what Rerate did.
type RerateSummary struct {
	// ID identifies the run in cdr_ratings.
	ID string
	// Seen CDRs were priced again; Changed of them got a new price or new
	// flags, and a row in cdr_ratings.
	Seen, Changed int
	// SellDelta and BuyDelta are the sums of new minus old prices.
	SellDelta, BuyDelta int64
}

// rerateChunk is how many CDRs one re-rating transaction handles.
const rerateChunk = 1000

// Rerate prices again every CDR the filter selects, in chunks of one
// transaction each, walking (start_at, uuid) so a concurrent insert is
// neither skipped nor priced twice within the run (a CDR with the zero
// uuid at exactly From would be skipped; channel uuids are never zero). price receives a copy
// of the CDR and updates its prices and flags; a CDR whose price or
// flags changed is updated in place (flagged rerated) and the old and new
// prices are recorded in cdr_ratings under the run's id. cdrs holds only
// the current price, so rollups summing cdrs never count a call twice.
func (s *Store) Rerate(ctx context.Context, f RerateFilter, price func(ctx context.Context, c *callbridge.CDR) error) (RerateSummary, error) {
	sum := RerateSummary{ID: uuid.NewString()}
	if f.AccountID != "" && !callbridge.IsUUID(f.AccountID) {
		return sum, pg.NotFound("account")
	}
	if !f.From.Before(f.To) {
		return sum, callbridge.FieldError("to", "must be after from")
	}
	after, afterID := f.From.UTC(), "00000000-0000-0000-0000-000000000000"
	for {
		var n int
		err := s.db.Tx(ctx, func(tx *pg.Tx) error {
			args := []any{after, afterID, f.To.UTC(), rerateChunk}
			q := selectCDR + ` WHERE (start_at, uuid) > ($1, $2::uuid) AND start_at < $3`
			if f.AccountID != "" {
				q += ` AND account_id = $5`
				args = append(args, f.AccountID)
			}
			q += ` ORDER BY start_at, uuid LIMIT $4 FOR UPDATE`
			rows, err := tx.QueryContext(ctx, q, args...)
			if err != nil {
				return pg.Error(err)
			}
			var batch []*callbridge.CDR
			for rows.Next() {
				c, err := scanCDR(rows)
				if err != nil {
					rows.Close()
					return err
				}
				batch = append(batch, c)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return pg.Error(err)
			}
			n = len(batch)
			for _, old := range batch {
				c := *old
				if err := price(ctx, &c); err != nil {
					return err
				}
				sum.Seen++
				c.Flags &^= callbridge.CDRRerated
				oldFlags := old.Flags &^ callbridge.CDRRerated
				if c.Sell == old.Sell && c.Buy == old.Buy && c.Flags == oldFlags &&
					c.SellDeckVersion == old.SellDeckVersion && c.BuyDeckVersion == old.BuyDeckVersion {
					continue
				}
				c.Flags |= callbridge.CDRRerated
				if _, err := tx.ExecContext(ctx, `UPDATE cdrs SET sell_micros = $3, sell_currency = $4,
					sell_deck_id = $5, sell_deck_version = $6, sell_prefix = $7, buy_micros = $8, buy_currency = $9,
					buy_deck_id = $10, buy_deck_version = $11, buy_prefix = $12, flags = $13, rated_at = now()
					WHERE uuid = $1 AND start_at = $2`,
					c.UUID, c.StartAt, c.Sell, c.SellCurrency, c.SellDeckID, c.SellDeckVersion, c.SellPrefix,
					c.Buy, c.BuyCurrency, c.BuyDeckID, c.BuyDeckVersion, c.BuyPrefix, pq.StringArray(c.Flags.Names())); err != nil {
					return pg.Error(err)
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO cdr_ratings (rerate_id, uuid, start_at, account_id,
					old_sell, new_sell, old_buy, new_buy, old_flags, new_flags) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
					sum.ID, c.UUID, c.StartAt, nullStringArg(c.AccountID), old.Sell, c.Sell, old.Buy, c.Buy,
					pq.StringArray(old.Flags.Names()), pq.StringArray(c.Flags.Names())); err != nil {
					return pg.Error(err)
				}
				sum.Changed++
				sum.SellDelta += c.Sell - old.Sell
				sum.BuyDelta += c.Buy - old.Buy
			}
			if len(batch) > 0 {
				last := batch[len(batch)-1]
				after, afterID = last.StartAt, last.UUID
			}
			return nil
		})
		if err != nil {
			return sum, err
		}
		if n < rerateChunk {
			return sum, nil
		}
	}
}
