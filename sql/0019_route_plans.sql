-- 0019: carrier route plans (package routing chooses the gateways of an
-- outbound leg with them).
--
-- A plan is operator-managed. It is an account's plan (account_id set; at
-- most one per account), the default plan of accounts without one
-- (is_default; at most one), or neither (being prepared). Its routes map
-- a destination prefix (longest match; '' matches every number) and a
-- time band in the plan's zone to an ordered list of gateways and a
-- strategy. Every change to a plan or its routes increments version,
-- which keys the compiled plans cached in each process, and is announced
-- on the callbridge_routes channel with the plan's id.

CREATE TABLE route_plans (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id         uuid REFERENCES accounts(id) ON DELETE CASCADE,
    is_default         boolean NOT NULL DEFAULT false,
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    time_zone          text NOT NULL CHECK (length(time_zone) BETWEEN 1 AND 64),
    currency           text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    max_attempts       smallint NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 10),
    post_dial_ms       integer NOT NULL DEFAULT 60000 CHECK (post_dial_ms BETWEEN 1000 AND 300000),
    -- Empty: the defaults of routing.NewPolicy.
    failover_causes    text[] NOT NULL DEFAULT '{}',
    failover_sip_codes integer[] NOT NULL DEFAULT '{}',
    version            bigint NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT route_plans_default_no_account CHECK (NOT (is_default AND account_id IS NOT NULL))
);
CREATE UNIQUE INDEX route_plans_account_key ON route_plans (account_id) WHERE account_id IS NOT NULL;
CREATE UNIQUE INDEX route_plans_default_key ON route_plans (is_default) WHERE is_default;

CREATE TABLE routes (
    plan_id     uuid NOT NULL REFERENCES route_plans(id) ON DELETE CASCADE,
    prefix      text NOT NULL CHECK (prefix ~ '^([1-9][0-9]{0,14})?$'),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 200),
    strategy    text NOT NULL CHECK (strategy IN ('least_cost', 'priority', 'weighted')),
    -- The gateways in the route's order and their weights (1 when not
    -- weighted), element by element.
    gateways    text[] NOT NULL CHECK (cardinality(gateways) BETWEEN 1 AND 16
                    AND array_to_string(gateways, ',') ~ '^[A-Za-z0-9._-]{1,64}(,[A-Za-z0-9._-]{1,64})*$'),
    weights     integer[] NOT NULL,
    -- Bit n is weekday n (0 Sunday); 255 is every day.
    days        smallint NOT NULL DEFAULT 255 CHECK (days BETWEEN 1 AND 255),
    time_from   integer NOT NULL DEFAULT 0 CHECK (time_from BETWEEN 0 AND 86399),
    time_until  integer NOT NULL DEFAULT 86400 CHECK (time_until BETWEEN 1 AND 86400),
    priority    integer NOT NULL DEFAULT 0,
    CHECK (cardinality(weights) = cardinality(gateways)),
    CHECK (time_from < time_until)
);
CREATE UNIQUE INDEX routes_key ON routes (plan_id, prefix, days, time_from, time_until, priority);

CREATE FUNCTION route_plans_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('callbridge_routes', coalesce(NEW.id, OLD.id)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER route_plans_notify AFTER INSERT OR UPDATE OR DELETE ON route_plans
    FOR EACH ROW EXECUTE FUNCTION route_plans_notify();

CREATE FUNCTION routes_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM pg_notify('callbridge_routes', p::text) FROM (SELECT DISTINCT plan_id AS p FROM new_routes) n;
    ELSE
        PERFORM pg_notify('callbridge_routes', p::text) FROM (SELECT DISTINCT plan_id AS p FROM old_routes) o;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER routes_insert_notify AFTER INSERT ON routes
    REFERENCING NEW TABLE AS new_routes FOR EACH STATEMENT EXECUTE FUNCTION routes_notify();
CREATE TRIGGER routes_delete_notify AFTER DELETE ON routes
    REFERENCING OLD TABLE AS old_routes FOR EACH STATEMENT EXECUTE FUNCTION routes_notify();
