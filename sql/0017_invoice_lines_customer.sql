-- 0017: invoice lines that say what they bill, the missing-hangup policy,
-- and the customer an invoice is addressed to.
--
-- rollups.line separates, within a destination, the calls a finance team
-- must read apart: '' rated by a rate of the deck, 'default' priced by the
-- deck's default rate (CDR flag unrated_default), 'unrated' not priced at
-- all (flag unrated, zero charge, awaiting a rate and a re-rate),
-- 'estimated' and 'max_duration' closed without a hangup (flag estimated)
-- under the account's missing-hangup policy (flag max_duration when that
-- policy applied). Each becomes its own invoice line. The days holding
-- rollups without a prefix (default-rate and unrated calls, until now one
-- "Unrated" group) are marked for the next rollup to recompute.
ALTER TABLE rollups
    ADD COLUMN line text NOT NULL DEFAULT ''
        CHECK (line IN ('', 'default', 'unrated', 'estimated', 'max_duration')),
    DROP CONSTRAINT rollups_pkey,
    ADD PRIMARY KEY (account_id, day, prefix, description, carrier, line);

INSERT INTO rollup_dirty (account_id, day)
SELECT DISTINCT account_id, day FROM rollups WHERE prefix = ''
ON CONFLICT (account_id, day) DO UPDATE SET gen = rollup_dirty.gen + 1;

-- billing_profiles: the account's missing-hangup policy, and the customer
-- printed on its documents: legal name, postal address (lines separated
-- by newlines) and tax number.
ALTER TABLE billing_profiles
    ADD COLUMN missing_hangup text NOT NULL DEFAULT 'estimate' CHECK (missing_hangup IN ('estimate', 'max_duration')),
    ADD COLUMN customer_name text NOT NULL DEFAULT '' CHECK (length(customer_name) <= 200),
    ADD COLUMN customer_address text NOT NULL DEFAULT '' CHECK (length(customer_address) <= 1000),
    ADD COLUMN customer_tax_number text NOT NULL DEFAULT '' CHECK (length(customer_tax_number) <= 64);

-- invoices keep the customer as it was when they were issued: a document
-- once sent does not change when the profile does. Documents issued
-- before this migration have none (their HTML names the account id).
ALTER TABLE invoices
    ADD COLUMN customer_name text NOT NULL DEFAULT '',
    ADD COLUMN customer_address text NOT NULL DEFAULT '',
    ADD COLUMN customer_tax_number text NOT NULL DEFAULT '',
    ADD COLUMN payment_days bigint NOT NULL DEFAULT 0;
