-- 0001: accounts and API keys.
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE accounts (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    service_number  text NOT NULL DEFAULT '' CHECK (service_number ~ '^([1-9][0-9]{0,14})?$'),
    hide_caller_id  boolean NOT NULL DEFAULT false,
    prepaid         boolean NOT NULL DEFAULT false,
    currency        text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- API keys are stored as SHA-256 of the key; the key is random (256 bits),
-- so a fast hash is enough and lookups are by index, not by scanning.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id  uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    prefix      text NOT NULL,
    hash        bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_account_idx ON api_keys (account_id);
