-- 0015: billing documents finance can send: amounts due in the currency's
-- minor unit, and credit notes.
--
-- invoices.subtotal, tax and total become minor units of the currency
-- (exponent: 2 for EUR, 0 for JPY, 3 for KWD); invoice_lines.amount stays
-- the exact micro-units of the rated CDRs and amount_minor is it rounded
-- half away from zero. Invoices issued before this migration were
-- computed in micro-units: they keep their amounts and get exponent 6, so
-- every stored document says truthfully what it billed. exact is the sum
-- of a document's line amounts in micro-units.
--
-- A credit note is a row of invoices of kind 'credit_note': negative
-- amounts, numbered in its issuer's credit-note sequence, referencing the
-- invoice it corrects. An invoice is never negative.
ALTER TABLE invoices DISABLE TRIGGER invoices_immutable;
ALTER TABLE invoice_lines DISABLE TRIGGER invoice_lines_immutable;

ALTER TABLE invoices
    ADD COLUMN kind text NOT NULL DEFAULT 'invoice' CHECK (kind IN ('invoice', 'credit_note')),
    ADD COLUMN exponent int NOT NULL DEFAULT 6 CHECK (exponent BETWEEN 0 AND 6),
    ADD COLUMN exact bigint,
    ADD COLUMN corrects_id uuid REFERENCES invoices(id),
    ADD COLUMN corrects_number text;
UPDATE invoices SET exact = subtotal;
ALTER TABLE invoices ALTER COLUMN exact SET NOT NULL,
    ALTER COLUMN exponent DROP DEFAULT;

ALTER TABLE invoice_lines ADD COLUMN amount_minor bigint;
UPDATE invoice_lines SET amount_minor = amount;
ALTER TABLE invoice_lines ALTER COLUMN amount_minor SET NOT NULL;

ALTER TABLE invoices ENABLE TRIGGER invoices_immutable;
ALTER TABLE invoice_lines ENABLE TRIGGER invoice_lines_immutable;

-- One invoice per account and month; credit notes are as many as the
-- corrections need. Each kind has its own gapless sequence per issuer.
ALTER TABLE invoices DROP CONSTRAINT invoices_account_id_period_key,
    DROP CONSTRAINT invoices_issuer_seq_key,
    ADD CONSTRAINT invoices_issuer_kind_seq_key UNIQUE (issuer, kind, seq),
    -- NOT VALID: invoices issued before credit notes existed may be negative.
    ADD CONSTRAINT invoices_sign CHECK (CASE kind WHEN 'invoice' THEN total >= 0 AND corrects_id IS NULL
                                                  ELSE total <= 0 AND corrects_id IS NOT NULL AND corrects_number IS NOT NULL END) NOT VALID;
CREATE UNIQUE INDEX invoices_account_period_once ON invoices (account_id, period) WHERE kind = 'invoice';

ALTER TABLE invoice_issuers ADD COLUMN credit_last_seq bigint NOT NULL DEFAULT 0;
