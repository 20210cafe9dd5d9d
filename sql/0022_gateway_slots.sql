-- 0022: the calls in progress through each carrier gateway, counted in one
-- place for every controller, so that a gateway's caps (concurrent calls
-- and calls per second, CALLBRIDGE_GATEWAY_LIMITS) hold across
-- controllers (package carrier claims and releases the slots).
--
-- A slot is one attempt through a gateway. The process that claimed it
-- (holder: the controller's owner name and a random id per start) renews
-- its lease while the call lasts; a process that dies stops renewing, and
-- its slots stop counting when their leases end. An ended slot still
-- counts towards the calls-per-second window for the second after it
-- started; the next claim through the gateway deletes it.

CREATE TABLE gateway_slots (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gateway     text NOT NULL CHECK (gateway ~ '^[A-Za-z0-9._-]{1,64}$'),
    holder      text NOT NULL CHECK (length(holder) BETWEEN 1 AND 200),
    started_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    ended       boolean NOT NULL DEFAULT false
);
CREATE INDEX gateway_slots_gateway_idx ON gateway_slots (gateway, started_at);

-- gateway_slot_claim takes a slot through p_gateway for p_holder when the
-- gateway is under its caps (0: no cap), or unconditionally with p_force
-- (a call the switch already places). Claims through one gateway are
-- serialised by a transaction-level advisory lock, and each statement of
-- this VOLATILE function takes a new snapshot, so the count after the
-- lock sees every claim committed before it: two controllers can never
-- both take the last slot. reason is 'ok', 'at_capacity' or 'cps_limit';
-- active and started are the gateway's counts after the claim. The
-- database's clock times every slot, so controllers' clocks do not matter.
CREATE FUNCTION gateway_slot_claim(p_gateway text, p_holder text, p_max_active integer, p_max_cps integer,
        p_lease_ms integer, p_force boolean, OUT slot bigint, OUT reason text, OUT active integer, OUT started integer)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    t timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(1735876985, hashtext(p_gateway)); -- 1735876985 is "gway"
    t := clock_timestamp();
    DELETE FROM gateway_slots
        WHERE gateway = p_gateway AND started_at <= t - interval '1 second' AND (ended OR expires_at <= t);
    SELECT count(*) FILTER (WHERE NOT ended AND expires_at > t),
           count(*) FILTER (WHERE started_at > t - interval '1 second')
        INTO active, started FROM gateway_slots WHERE gateway = p_gateway;
    reason := 'ok';
    IF NOT p_force AND p_max_active > 0 AND active >= p_max_active THEN
        reason := 'at_capacity';
    ELSIF NOT p_force AND p_max_cps > 0 AND started >= p_max_cps THEN
        reason := 'cps_limit';
    ELSE
        INSERT INTO gateway_slots (gateway, holder, started_at, expires_at)
            VALUES (p_gateway, p_holder, t, t + make_interval(secs => p_lease_ms / 1000.0))
            RETURNING id INTO slot;
        active := active + 1;
        started := started + 1;
    END IF;
END $$;
