-- 0014: announce every change to a rate deck or its rates on the
-- callbridge_decks channel, with the deck's id, so that every controller
-- reloads that deck into its in-memory registry (postgres.DeckSync). The
-- triggers catch every write: deck creation, rate imports (replace or
-- append), changes of effective_from or owner, deletion (including the
-- cascade from an account), and any rate changed by hand. NOTIFY is
-- delivered at commit and PostgreSQL folds identical notifications of one
-- transaction, so a 100,000-row import announces its deck once.

CREATE FUNCTION rate_decks_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('callbridge_decks', coalesce(NEW.id, OLD.id)::text);
    IF TG_OP = 'UPDATE' AND NEW.id <> OLD.id THEN
        PERFORM pg_notify('callbridge_decks', OLD.id::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER rate_decks_notify AFTER INSERT OR UPDATE OR DELETE ON rate_decks
    FOR EACH ROW EXECUTE FUNCTION rate_decks_notify();

-- Rates are announced once per statement and deck (a COPY of 100,000 rows
-- is one statement), from the statement's transition tables.
CREATE FUNCTION rates_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('callbridge_decks', d::text) FROM (SELECT DISTINCT deck_id AS d FROM new_rates) n;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('callbridge_decks', d::text) FROM (SELECT DISTINCT deck_id AS d FROM old_rates) o;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER rates_insert_notify AFTER INSERT ON rates
    REFERENCING NEW TABLE AS new_rates FOR EACH STATEMENT EXECUTE FUNCTION rates_notify();
CREATE TRIGGER rates_update_notify AFTER UPDATE ON rates
    REFERENCING OLD TABLE AS old_rates NEW TABLE AS new_rates FOR EACH STATEMENT EXECUTE FUNCTION rates_notify();
CREATE TRIGGER rates_delete_notify AFTER DELETE ON rates
    REFERENCING OLD TABLE AS old_rates FOR EACH STATEMENT EXECUTE FUNCTION rates_notify();
