-- 0002: callbacks (click-to-call), their legs and ordered history, and the
-- webhook outbox every feature delivers through.
--
-- The callbacks table is also the work queue: a worker claims rows with
-- status 'queued' and run_at <= now() using FOR UPDATE SKIP LOCKED, sets
-- owner and a lease, and renews the lease while it drives the call. A row
-- whose lease ran out (its controller died) is taken over by another
-- worker, which reconciles it against the node.

-- Per-account callback settings.
ALTER TABLE accounts
    ADD COLUMN callback_queue_limit    integer NOT NULL DEFAULT 1000
        CHECK (callback_queue_limit BETWEEN 1 AND 1000000),
    ADD COLUMN callback_retry_attempts integer NOT NULL DEFAULT 0
        CHECK (callback_retry_attempts BETWEEN 0 AND 5),
    ADD COLUMN callback_retry_delay_ms integer NOT NULL DEFAULT 60000
        CHECK (callback_retry_delay_ms BETWEEN 0 AND 3600000);

CREATE TABLE callbacks (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id       uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'queued' CHECK (status IN
                     ('queued', 'calling_a', 'a_answered', 'calling_b', 'bridged', 'completed', 'failed')),
    reason           text NOT NULL DEFAULT '' CHECK (reason IN ('', 'a_busy', 'a_no_answer', 'a_rejected', 'a_hangup',
                     'b_busy', 'b_no_answer', 'b_rejected', 'node_unavailable', 'cancelled', 'max_duration',
                     'insufficient_funds', 'internal')),
    a                text NOT NULL CHECK (a ~ '^[1-9][0-9]{0,14}$'),
    b                text NOT NULL CHECK (b ~ '^[1-9][0-9]{0,14}$'),
    caller_id_a      text NOT NULL DEFAULT '' CHECK (caller_id_a ~ '^([1-9][0-9]{0,14})?$'),
    caller_id_b      text NOT NULL DEFAULT '' CHECK (caller_id_b ~ '^([1-9][0-9]{0,14})?$'),
    ring_timeout_a   integer NOT NULL CHECK (ring_timeout_a BETWEEN 5 AND 120),
    ring_timeout_b   integer NOT NULL CHECK (ring_timeout_b BETWEEN 5 AND 120),
    max_duration     integer NOT NULL CHECK (max_duration BETWEEN 10 AND 86400),
    prompt           text NOT NULL DEFAULT 'none' CHECK (prompt ~ '^[a-z0-9_-]{1,64}$'),
    record           boolean NOT NULL DEFAULT false,
    webhook_url      text NOT NULL DEFAULT '' CHECK (length(webhook_url) <= 2048),
    metadata         jsonb CHECK (metadata IS NULL OR jsonb_typeof(metadata) = 'object'),
    attempt          integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    node             text NOT NULL DEFAULT '',
    -- Work queue and lease.
    run_at           timestamptz NOT NULL DEFAULT now(),
    owner            text NOT NULL DEFAULT '',
    lease_until      timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    idempotency_key  text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    ended_at         timestamptz,
    CHECK (a <> b),
    CHECK ((status IN ('completed', 'failed')) = (ended_at IS NOT NULL)),
    CHECK ((status = 'failed') = (reason <> ''))
);
CREATE UNIQUE INDEX callbacks_idempotency ON callbacks (account_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX callbacks_account_idx ON callbacks (account_id, created_at DESC, id DESC);
-- The queue: claimable rows, oldest due first.
CREATE INDEX callbacks_queue_idx ON callbacks (run_at, id) WHERE status = 'queued';
-- Per-account queue depth (the bounded queue).
CREATE INDEX callbacks_account_queued_idx ON callbacks (account_id) WHERE status = 'queued';
-- Live callbacks, for leases and reconciliation.
CREATE INDEX callbacks_live_idx ON callbacks (lease_until)
    WHERE status IN ('calling_a', 'a_answered', 'calling_b', 'bridged');

-- One row per leg placed; a retried A leg gets a row per attempt.
CREATE TABLE callback_legs (
    callback_id  uuid NOT NULL REFERENCES callbacks(id) ON DELETE CASCADE,
    leg          text NOT NULL CHECK (leg IN ('a', 'b')),
    attempt      integer NOT NULL CHECK (attempt >= 1),
    uuid         uuid NOT NULL UNIQUE,
    node         text NOT NULL,
    number       text NOT NULL CHECK (number ~ '^[1-9][0-9]{0,14}$'),
    caller_id    text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    ringing_at   timestamptz,
    answered_at  timestamptz,
    hangup_at    timestamptz,
    hangup_cause text NOT NULL DEFAULT '',
    PRIMARY KEY (callback_id, leg, attempt)
);

-- The ordered history: id orders entries (one writer per callback at a
-- time, the worker holding its lease).
CREATE TABLE callback_events (
    id           bigserial PRIMARY KEY,
    callback_id  uuid NOT NULL REFERENCES callbacks(id) ON DELETE CASCADE,
    type         text NOT NULL,
    status       text NOT NULL DEFAULT '',
    reason       text NOT NULL DEFAULT '',
    leg          text NOT NULL DEFAULT '',
    attempt      integer NOT NULL DEFAULT 1,
    detail       text NOT NULL DEFAULT '',
    at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX callback_events_callback_idx ON callback_events (callback_id, id);

-- The webhook outbox, shared by every feature. Rows are written in the
-- same transaction as the change they report. A deliverer claims the
-- oldest pending row of each key (FOR UPDATE SKIP LOCKED), pushes
-- next_attempt_at past its HTTP timeout while it posts, then marks it
-- delivered or schedules a retry; after the retry window the row is dead.
CREATE TABLE webhooks (
    id               bigserial PRIMARY KEY,
    account_id       uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    url              text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2048),
    event_type       text NOT NULL CHECK (length(event_type) BETWEEN 1 AND 64),
    key              text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX webhooks_pending_idx ON webhooks (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX webhooks_pending_key_idx ON webhooks (key, id) WHERE status = 'pending';
CREATE INDEX webhooks_account_idx ON webhooks (account_id, id DESC);
