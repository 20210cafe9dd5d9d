-- 0003: privacy numbers: the pool of virtual numbers X and their bindings.
--
-- The routing rules are constraints on rows with status 'active', so the
-- database itself refuses an ambiguous route:
--   * XB: one active binding per X (bindings_xb_one);
--   * AXB: no party number in two active bindings on one X
--     (bindings_axb_parties: the two parties as a multirange of bigints,
--     which is exact because E.164 digits never start with 0);
--   * an X is never in XB and AXB use at once (bindings_one_mode);
--   * external_id is unique per account among active bindings.
-- A binding whose expires_at has passed routes nothing (readers check
-- expires_at > now()), but it still holds its place in the constraints
-- until it is marked 'expired'. Every writer that binds an X therefore
-- first marks the expired rows of that X (bindings_expire_x), so an
-- expired-but-unswept binding never blocks a new one.
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE numbers (
    number      text PRIMARY KEY CHECK (number ~ '^[1-9][0-9]{0,14}$'),
    account_id  uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    gateway     text NOT NULL CHECK (gateway ~ '^[A-Za-z0-9._-]{1,64}$'),
    area        text NOT NULL DEFAULT '' CHECK (length(area) <= 64),
    labels      text[] NOT NULL DEFAULT '{}' CHECK (cardinality(labels) <= 32),
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX numbers_account_idx ON numbers (account_id, area, number);

CREATE TABLE bindings (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id      uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    mode            text NOT NULL CHECK (mode IN ('XB', 'AXB')),
    -- No foreign key to numbers: a number may be deleted once no active
    -- binding uses it, while its past bindings stay as history. Writers
    -- lock the numbers row (FOR SHARE / FOR UPDATE) instead.
    x               text NOT NULL CHECK (x ~ '^[1-9][0-9]{0,14}$'),
    a               text NOT NULL DEFAULT '' CHECK (a ~ '^([1-9][0-9]{0,14})?$'),
    b               text NOT NULL CHECK (b ~ '^[1-9][0-9]{0,14}$'),
    status          text NOT NULL DEFAULT 'binding'
                    CHECK (status IN ('binding', 'active', 'unbinding', 'unbound', 'expired')),
    expires_at      timestamptz NOT NULL,
    record          boolean NOT NULL DEFAULT false,
    caller_display  text NOT NULL DEFAULT 'x' CHECK (caller_display IN ('x', 'caller')),
    external_id     text NOT NULL DEFAULT '' CHECK (external_id ~ '^[A-Za-z0-9._:-]{0,128}$'),
    webhook_url     text NOT NULL DEFAULT '' CHECK (length(webhook_url) <= 2048),
    idempotency_key text,
    request_hash    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((mode = 'XB' AND a = '') OR (mode = 'AXB' AND a <> '' AND a <> b)),
    CHECK (x <> a AND x <> b),
    CHECK (mode = 'AXB' OR caller_display = 'x'),
    CONSTRAINT bindings_one_mode EXCLUDE USING gist (x WITH =, mode WITH <>)
        WHERE (status = 'active'),
    CONSTRAINT bindings_axb_parties EXCLUDE USING gist (
        x WITH =,
        (int8multirange(int8range(a::bigint, a::bigint + 1), int8range(b::bigint, b::bigint + 1))) WITH &&
    ) WHERE (status = 'active' AND mode = 'AXB')
);
CREATE UNIQUE INDEX bindings_xb_one ON bindings (x) WHERE status = 'active' AND mode = 'XB';
CREATE UNIQUE INDEX bindings_external_id ON bindings (account_id, external_id)
    WHERE status = 'active' AND external_id <> '';
CREATE UNIQUE INDEX bindings_idempotency ON bindings (account_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX bindings_account_idx ON bindings (account_id, created_at DESC, id DESC);
CREATE INDEX bindings_active_x_idx ON bindings (x) WHERE status = 'active';
CREATE INDEX bindings_active_expiry_idx ON bindings (expires_at) WHERE status = 'active';
CREATE INDEX bindings_account_parties_idx ON bindings (account_id, a, b);

-- binding_events records every status change, written by a trigger so no
-- code path can forget it. The detail comes from the transaction-local
-- setting callbridge.binding_detail when a writer sets it.
CREATE TABLE binding_events (
    id           bigserial PRIMARY KEY,
    binding_id   uuid NOT NULL REFERENCES bindings(id) ON DELETE CASCADE,
    from_status  text NOT NULL DEFAULT '',
    to_status    text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX binding_events_binding_idx ON binding_events (binding_id, id);

CREATE FUNCTION bindings_record_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO binding_events (binding_id, from_status, to_status, detail)
        VALUES (NEW.id, '', NEW.status, coalesce(current_setting('callbridge.binding_detail', true), ''));
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO binding_events (binding_id, from_status, to_status, detail)
        VALUES (NEW.id, OLD.status, NEW.status, coalesce(current_setting('callbridge.binding_detail', true), ''));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER bindings_events AFTER INSERT OR UPDATE ON bindings
    FOR EACH ROW EXECUTE FUNCTION bindings_record_event();

-- Every change to a number or a binding notifies channel
-- callbridge_bindings with the X it concerns, so every controller reloads
-- that X into its in-memory index. NOTIFY is delivered at commit and
-- duplicates within a transaction are folded.
CREATE FUNCTION bindings_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'numbers' THEN
        PERFORM pg_notify('callbridge_bindings', coalesce(NEW.number, OLD.number));
    ELSE
        PERFORM pg_notify('callbridge_bindings', coalesce(NEW.x, OLD.x));
        IF TG_OP = 'UPDATE' AND NEW.x <> OLD.x THEN
            PERFORM pg_notify('callbridge_bindings', OLD.x);
        END IF;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER bindings_notify AFTER INSERT OR UPDATE OR DELETE ON bindings
    FOR EACH ROW EXECUTE FUNCTION bindings_notify();
CREATE TRIGGER numbers_notify AFTER INSERT OR UPDATE OR DELETE ON numbers
    FOR EACH ROW EXECUTE FUNCTION bindings_notify();

-- bindings_expire_x marks the active bindings of one X whose time has come
-- as expired and returns how many it marked. Writers call it before
-- binding that X.
CREATE FUNCTION bindings_expire_x(p_x text) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE n integer;
BEGIN
    PERFORM set_config('callbridge.binding_detail', 'expired', true);
    UPDATE bindings SET status = 'expired', updated_at = now()
     WHERE x = p_x AND status = 'active' AND expires_at <= now();
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
