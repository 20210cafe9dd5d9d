-- 0005: CDRs, one per call leg (FreeSWITCH channel), priced.
--
-- Uniqueness. cdrs is partitioned by month on start_at, and PostgreSQL
-- requires every unique key of a partitioned table to include the
-- partition key, so the primary key is (uuid, start_at). That alone would
-- let one channel be stored twice under two start times (a CDR estimated
-- by the sweep from CHANNEL_CREATE, then a late CHANNEL_HANGUP_COMPLETE
-- whose start_uepoch is missing). cdr_keys is the global key: a channel
-- uuid enters it once, in the same statement that inserts the CDR, and only
-- CDRs whose key was new are inserted. Redelivered events, reconnects and
-- several controllers writing the same hangup therefore store one row.
--
-- Partitions: one per calendar month (UTC), created ahead by
-- cdrs_ensure_partition for the current and next month here and by every
-- controller at start and daily after; a default partition catches rows
-- outside them, and cdrs_ensure_partition moves such rows into the month's
-- partition when it creates it.

CREATE TABLE cdrs (
    uuid              uuid NOT NULL,
    start_at          timestamptz NOT NULL,
    other_uuid        uuid,
    leg               text NOT NULL CHECK (leg IN ('a', 'b', 'inbound', 'outbound', 'plain')),
    -- No foreign keys: CDRs are history and outlive what they refer to,
    -- and the pipeline must never refuse a hangup for a missing parent.
    account_id        uuid,
    callback_id       uuid,
    binding_id        uuid,
    direction         text NOT NULL,
    caller            text NOT NULL,
    callee            text NOT NULL,
    presented         text NOT NULL,
    gateway           text NOT NULL,
    node              text NOT NULL,
    answer_at         timestamptz,
    end_at            timestamptz NOT NULL,
    duration_ms       bigint NOT NULL CHECK (duration_ms >= 0),
    bill_ms           bigint NOT NULL CHECK (bill_ms >= 0),
    hangup_cause      text NOT NULL,
    q850              integer NOT NULL DEFAULT 0,
    disposition       text NOT NULL,
    sell_micros       bigint NOT NULL DEFAULT 0 CHECK (sell_micros >= 0),
    sell_currency     text NOT NULL DEFAULT '',
    sell_deck_id      text NOT NULL DEFAULT '',
    sell_deck_version bigint NOT NULL DEFAULT 0,
    sell_prefix       text NOT NULL DEFAULT '',
    buy_micros        bigint NOT NULL DEFAULT 0 CHECK (buy_micros >= 0),
    buy_currency      text NOT NULL DEFAULT '',
    buy_deck_id       text NOT NULL DEFAULT '',
    buy_deck_version  bigint NOT NULL DEFAULT 0,
    buy_prefix        text NOT NULL DEFAULT '',
    flags             text[] NOT NULL DEFAULT '{}',
    rated_at          timestamptz NOT NULL DEFAULT now(),
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (uuid, start_at)
) PARTITION BY RANGE (start_at);

-- Listing by account and time (the API's keyset pagination) and the
-- attributions the API filters on.
CREATE INDEX cdrs_account_idx ON cdrs (account_id, start_at, uuid);
CREATE INDEX cdrs_binding_idx ON cdrs (binding_id, start_at) WHERE binding_id IS NOT NULL;
CREATE INDEX cdrs_callback_idx ON cdrs (callback_id, start_at) WHERE callback_id IS NOT NULL;

CREATE TABLE cdrs_default PARTITION OF cdrs DEFAULT;

CREATE TABLE cdr_keys (
    uuid      uuid PRIMARY KEY,
    start_at  timestamptz NOT NULL
);

-- cdr_staging is the shape of a COPY batch. Writers COPY into a session
-- temporary table created LIKE it (ON COMMIT DELETE ROWS), so batches of
-- concurrent writers never meet and nothing is WAL-logged twice; this
-- table itself stays empty.
CREATE UNLOGGED TABLE cdr_staging (LIKE cdrs INCLUDING DEFAULTS);
ALTER TABLE cdr_staging ADD COLUMN seq integer NOT NULL DEFAULT 0;

-- cdrs_ensure_partition creates the partition of the month holding at
-- (UTC) unless it exists, moving the default partition's rows of that month
-- into it. An advisory lock serialises concurrent controllers.
CREATE FUNCTION cdrs_ensure_partition(at timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    lo   timestamptz := date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    hi   timestamptz := (date_trunc('month', at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
    name text := 'cdrs_' || to_char(at AT TIME ZONE 'UTC', 'YYYYMM');
BEGIN
    PERFORM pg_advisory_xact_lock(7161440239837291013);
    IF to_regclass(name) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE cdrs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
    EXECUTE format('WITH moved AS (DELETE FROM cdrs_default WHERE start_at >= %L AND start_at < %L RETURNING *)
                    INSERT INTO %I SELECT * FROM moved', lo, hi, name);
    EXECUTE format('ALTER TABLE cdrs ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
END
$$;

SELECT cdrs_ensure_partition(now());
SELECT cdrs_ensure_partition(now() + interval '1 month');

-- Records that failed to be stored three times, kept for an operator. The
-- payload is bytea holding JSON, so no byte of an event can be refused.
CREATE TABLE cdr_dead_letters (
    id          bigserial PRIMARY KEY,
    uuid        text NOT NULL DEFAULT '',
    node        text NOT NULL DEFAULT '',
    reason      text NOT NULL,
    attempts    integer NOT NULL,
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Every re-pricing of a CDR, with the prices before and after. cdrs holds
-- the current price only, so sums over cdrs (rollups) never count a call
-- twice; this table explains how the price changed.
CREATE TABLE cdr_ratings (
    id          bigserial PRIMARY KEY,
    rerate_id   uuid NOT NULL,
    uuid        uuid NOT NULL,
    start_at    timestamptz NOT NULL,
    account_id  uuid,
    old_sell    bigint NOT NULL,
    new_sell    bigint NOT NULL,
    old_buy     bigint NOT NULL,
    new_buy     bigint NOT NULL,
    old_flags   text[] NOT NULL,
    new_flags   text[] NOT NULL,
    rated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cdr_ratings_uuid_idx ON cdr_ratings (uuid);
CREATE INDEX cdr_ratings_account_idx ON cdr_ratings (account_id, start_at);

-- Call legs seen created and not yet seen hung up, per node. The sweep
-- closes those FreeSWITCH no longer has after a reconnect, and those past
-- their maximum duration, with estimated CDRs.
CREATE TABLE live_channels (
    uuid         uuid PRIMARY KEY,
    node         text NOT NULL,
    other_uuid   uuid,
    leg          text NOT NULL,
    account_id   uuid,
    callback_id  uuid,
    binding_id   uuid,
    direction    text NOT NULL,
    caller       text NOT NULL,
    callee       text NOT NULL,
    presented    text NOT NULL,
    gateway      text NOT NULL,
    start_at     timestamptz NOT NULL,
    answer_at    timestamptz,
    max_ms       bigint NOT NULL DEFAULT 0,
    seen_at      timestamptz NOT NULL
);
CREATE INDEX live_channels_node_idx ON live_channels (node, start_at);
