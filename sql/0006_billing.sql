-- 0006: billing: job runs, daily rollups, invoices, the prepaid ledger.
--
-- Rollups are derived data: a row of rollups is always the aggregate of the
-- CDRs of one account, local day (in the billing zone), destination and
-- carrier, recomputed whole from cdrs. Triggers on cdrs mark the (account,
-- UTC day) pairs whose CDRs were inserted or changed in rollup_dirty, in
-- the same transaction as the change; the rollup job recomputes the local
-- days those pairs touch and clears a mark only if its generation did not
-- move meanwhile, so a CDR committed during a rollup is never missed.
--
-- Invoices and their lines are immutable once inserted (a trigger refuses
-- UPDATE and DELETE). The prepaid balance is the sum of ledger_entries;
-- balances caches it, kept by a trigger on ledger_entries.

-- job_runs records every run of a scheduled job. At most one successful
-- run exists per job and slot, so a slot is never run twice by two
-- processes even if the advisory lock were lost.
CREATE TABLE job_runs (
    id           bigserial PRIMARY KEY,
    job          text NOT NULL CHECK (job ~ '^[a-z0-9_-]{1,64}$'),
    slot         timestamptz NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    outcome      text NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'ok', 'failed')),
    rows         bigint NOT NULL DEFAULT 0,
    error        text NOT NULL DEFAULT '',
    node         text NOT NULL DEFAULT ''
);
CREATE INDEX job_runs_job_idx ON job_runs (job, slot DESC);
CREATE UNIQUE INDEX job_runs_once ON job_runs (job, slot) WHERE outcome = 'ok';
CREATE INDEX job_runs_started_idx ON job_runs (started_at DESC);

-- rollups: one row per account, local day, destination and carrier.
CREATE TABLE rollups (
    account_id   uuid NOT NULL,
    day          date NOT NULL,
    prefix       text NOT NULL,
    description  text NOT NULL,
    carrier      text NOT NULL,
    calls        bigint NOT NULL,
    answered     bigint NOT NULL,
    billed_ms    bigint NOT NULL,
    sell         bigint NOT NULL,
    buy          bigint NOT NULL,
    PRIMARY KEY (account_id, day, prefix, description, carrier)
);
CREATE INDEX rollups_day_idx ON rollups (day);

-- rollup_dirty: (account, UTC day of the CDR's start) whose CDRs changed
-- since they were last rolled up. gen moves on every change.
CREATE TABLE rollup_dirty (
    account_id  uuid NOT NULL,
    day         date NOT NULL,
    gen         bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (account_id, day)
);

-- billing_profiles: how an account is billed; accounts without a row use
-- the defaults.
CREATE TABLE billing_profiles (
    account_id       uuid PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    issuer           text NOT NULL DEFAULT 'default' CHECK (issuer ~ '^[A-Za-z0-9_-]{1,64}$'),
    tax_bps          bigint NOT NULL DEFAULT 0 CHECK (tax_bps BETWEEN 0 AND 10000),
    tax_label        text NOT NULL DEFAULT '' CHECK (length(tax_label) <= 64),
    payment_days     bigint NOT NULL DEFAULT 30 CHECK (payment_days BETWEEN 0 AND 365),
    low_balance      bigint CHECK (low_balance >= 0),
    low_balance_url  text NOT NULL DEFAULT '' CHECK (length(low_balance_url) <= 2048)
);

-- invoice_issuers: one gapless invoice sequence per issuer.
CREATE TABLE invoice_issuers (
    issuer    text PRIMARY KEY,
    prefix    text NOT NULL,
    last_seq  bigint NOT NULL DEFAULT 0
);
INSERT INTO invoice_issuers (issuer, prefix) VALUES ('default', 'CB');

CREATE TABLE invoices (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id    uuid NOT NULL REFERENCES accounts(id),
    issuer        text NOT NULL,
    seq           bigint NOT NULL,
    number        text NOT NULL,
    period        text NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    period_start  timestamptz NOT NULL,
    period_end    timestamptz NOT NULL,
    currency      text NOT NULL,
    issued_at     timestamptz NOT NULL DEFAULT now(),
    due_at        timestamptz NOT NULL,
    subtotal      bigint NOT NULL,
    tax_bps       bigint NOT NULL,
    tax_label     text NOT NULL,
    tax           bigint NOT NULL,
    total         bigint NOT NULL,
    days          jsonb NOT NULL DEFAULT '[]',
    UNIQUE (issuer, seq),
    UNIQUE (account_id, period),
    CHECK (total = subtotal + tax)
);
CREATE INDEX invoices_account_idx ON invoices (account_id, period DESC);

CREATE TABLE invoice_lines (
    invoice_id   uuid NOT NULL REFERENCES invoices(id),
    line         int NOT NULL,
    account_id   uuid NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('usage', 'debit', 'credit')),
    period       text NOT NULL,
    destination  text NOT NULL,
    calls        bigint NOT NULL,
    answered     bigint NOT NULL,
    billed_ms    bigint NOT NULL,
    amount       bigint NOT NULL,
    PRIMARY KEY (invoice_id, line)
);
CREATE INDEX invoice_lines_account_idx ON invoice_lines (account_id, period);

CREATE FUNCTION billing_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'issued invoices are immutable' USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER invoices_immutable BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION billing_immutable();
CREATE TRIGGER invoice_lines_immutable BEFORE UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION billing_immutable();

-- ledger_entries: every change of a prepaid balance.
CREATE TABLE ledger_entries (
    id          bigserial PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('topup', 'call', 'rerate')),
    amount      bigint NOT NULL,
    reference   text NOT NULL DEFAULT '' CHECK (length(reference) <= 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (kind <> 'topup' OR amount > 0)
);
CREATE INDEX ledger_entries_account_idx ON ledger_entries (account_id, id);
-- A top-up with a reference is applied once however often it is sent.
CREATE UNIQUE INDEX ledger_entries_topup_ref ON ledger_entries (account_id, reference)
    WHERE kind = 'topup' AND reference <> '';

-- balances caches the ledger sum per account. low_notified is true while
-- the balance is under the profile's low_balance threshold, so a
-- low-balance event is raised once per crossing.
CREATE TABLE balances (
    account_id    uuid PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    balance       bigint NOT NULL DEFAULT 0,
    low_notified  boolean NOT NULL DEFAULT false
);

-- low_balance_events: an outbox of crossings, delivered by a job.
CREATE TABLE low_balance_events (
    id            bigserial PRIMARY KEY,
    account_id    uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    balance       bigint NOT NULL,
    threshold     bigint NOT NULL,
    url           text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    attempts      int NOT NULL DEFAULT 0,
    next_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at  timestamptz,
    last_error    text NOT NULL DEFAULT ''
);
CREATE INDEX low_balance_events_pending_idx ON low_balance_events (next_at) WHERE delivered_at IS NULL;

CREATE FUNCTION ledger_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO balances AS b (account_id, balance)
    SELECT account_id, sum(amount) FROM new_entries GROUP BY account_id ORDER BY account_id
    ON CONFLICT (account_id) DO UPDATE SET balance = b.balance + excluded.balance;

    WITH flip AS (
        UPDATE balances b SET low_notified = (b.balance < p.low_balance)
        FROM billing_profiles p
        WHERE p.account_id = b.account_id
          AND b.account_id IN (SELECT account_id FROM new_entries)
          AND p.low_balance IS NOT NULL
          AND b.low_notified <> (b.balance < p.low_balance)
        RETURNING b.account_id, b.balance, b.low_notified, p.low_balance, p.low_balance_url
    )
    INSERT INTO low_balance_events (account_id, balance, threshold, url)
    SELECT account_id, balance, low_balance, low_balance_url FROM flip WHERE low_notified;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_entries_apply AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_apply();

-- reservations: money held by live calls of prepaid accounts. A
-- reservation ends when the CDR of its call is stored, when it is
-- released, or at expires_at.
CREATE TABLE reservations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id  uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    call_id     uuid NOT NULL UNIQUE,
    amount      bigint NOT NULL CHECK (amount >= 0),
    max_ms      bigint NOT NULL CHECK (max_ms >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX reservations_account_idx ON reservations (account_id, expires_at);

-- CDR triggers. Inserting or re-pricing CDRs marks their (account, UTC
-- day) for the rollup, debits prepaid accounts in the ledger (the price on
-- insert, the difference on re-rating) and ends the reservation the call
-- held. They are statement triggers over transition tables, so a batch of
-- CDRs costs a few set-based statements, not one per row.
CREATE FUNCTION cdrs_billing_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollup_dirty AS d (account_id, day)
    SELECT DISTINCT account_id, (start_at AT TIME ZONE 'UTC')::date
    FROM new_cdrs WHERE account_id IS NOT NULL
    ORDER BY 1, 2
    ON CONFLICT (account_id, day) DO UPDATE SET gen = d.gen + 1;

    INSERT INTO ledger_entries (account_id, kind, amount, reference)
    SELECT n.account_id, 'call', -n.sell_micros, n.uuid::text
    FROM new_cdrs n JOIN accounts a ON a.id = n.account_id AND a.prepaid
    WHERE n.sell_micros <> 0
    ORDER BY n.account_id;

    DELETE FROM reservations r USING new_cdrs n WHERE r.call_id = n.uuid;
    RETURN NULL;
END $$;
CREATE TRIGGER cdrs_billing_insert AFTER INSERT ON cdrs
    REFERENCING NEW TABLE AS new_cdrs
    FOR EACH STATEMENT EXECUTE FUNCTION cdrs_billing_insert();

CREATE FUNCTION cdrs_billing_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollup_dirty AS d (account_id, day)
    SELECT account_id, day FROM (
        SELECT account_id, (start_at AT TIME ZONE 'UTC')::date AS day FROM new_cdrs WHERE account_id IS NOT NULL
        UNION
        SELECT account_id, (start_at AT TIME ZONE 'UTC')::date FROM old_cdrs WHERE account_id IS NOT NULL
    ) t
    ORDER BY 1, 2
    ON CONFLICT (account_id, day) DO UPDATE SET gen = d.gen + 1;

    INSERT INTO ledger_entries (account_id, kind, amount, reference)
    SELECT n.account_id, 'rerate', o.sell_micros - n.sell_micros, n.uuid::text
    FROM new_cdrs n
    JOIN old_cdrs o ON o.uuid = n.uuid AND o.start_at = n.start_at
    JOIN accounts a ON a.id = n.account_id AND a.prepaid
    WHERE n.sell_micros <> o.sell_micros AND n.account_id IS NOT DISTINCT FROM o.account_id
    ORDER BY n.account_id;
    RETURN NULL;
END $$;
CREATE TRIGGER cdrs_billing_update AFTER UPDATE ON cdrs
    REFERENCING OLD TABLE AS old_cdrs NEW TABLE AS new_cdrs
    FOR EACH STATEMENT EXECUTE FUNCTION cdrs_billing_update();
