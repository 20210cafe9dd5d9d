-- 0008: binding updates in the history.
--
-- binding_events recorded status changes only, so a PATCH (new A or B,
-- recording switched, a new expiry) left no trace although its writer sets
-- the detail "updated". An update that changes a party, record or
-- expires_at without changing the status is now recorded too, from and to
-- the same status, its detail naming what changed (with the new expiry,
-- whose history matters when a call was cut by it):
-- "updated: b, record, expires_at=2026-11-22T05:00:00Z".
CREATE OR REPLACE FUNCTION bindings_record_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed text[] := '{}';
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO binding_events (binding_id, from_status, to_status, detail)
        VALUES (NEW.id, '', NEW.status, coalesce(current_setting('callbridge.binding_detail', true), ''));
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO binding_events (binding_id, from_status, to_status, detail)
        VALUES (NEW.id, OLD.status, NEW.status, coalesce(current_setting('callbridge.binding_detail', true), ''));
    ELSE
        IF NEW.a IS DISTINCT FROM OLD.a THEN
            changed := changed || 'a'::text;
        END IF;
        IF NEW.b IS DISTINCT FROM OLD.b THEN
            changed := changed || 'b'::text;
        END IF;
        IF NEW.record IS DISTINCT FROM OLD.record THEN
            changed := changed || 'record'::text;
        END IF;
        IF NEW.expires_at IS DISTINCT FROM OLD.expires_at THEN
            changed := changed || ('expires_at=' ||
                to_char(NEW.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'));
        END IF;
        IF cardinality(changed) > 0 THEN
            INSERT INTO binding_events (binding_id, from_status, to_status, detail)
            VALUES (NEW.id, OLD.status, NEW.status, 'updated: ' || array_to_string(changed, ', '));
        END IF;
    END IF;
    RETURN NULL;
END $$;
