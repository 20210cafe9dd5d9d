-- 0004: rate decks and their rates (package rating prices calls with them).
--
-- A deck belongs to an account (sell rates) or to a carrier gateway (buy
-- rates), never both. An account or gateway may have several decks; the one
-- in force for a call is the latest whose effective_from is not after the
-- call's start, so a new deck can be loaded ahead of its date. Every change
-- to a deck or its rates increments version, which keys the compiled decks
-- cached in each process. Money is bigint micro-units of the deck's
-- currency; times of day are seconds since local midnight.

CREATE TABLE rate_decks (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id              uuid REFERENCES accounts(id) ON DELETE CASCADE,
    gateway                 text CHECK (gateway ~ '^[A-Za-z0-9._-]{1,64}$'),
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    currency                text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    time_zone               text NOT NULL CHECK (length(time_zone) BETWEEN 1 AND 64),
    precision               smallint NOT NULL DEFAULT 6 CHECK (precision BETWEEN 0 AND 6),
    rounding                text NOT NULL DEFAULT 'up' CHECK (rounding IN ('up', 'half_up', 'down')),
    short_ms                integer NOT NULL DEFAULT 1000 CHECK (short_ms BETWEEN 0 AND 3600000),
    -- The default rate prices calls no rate matches; NULL per_minute: none.
    default_per_minute      bigint CHECK (default_per_minute BETWEEN 0 AND 1000000000000),
    default_connect_fee     bigint NOT NULL DEFAULT 0 CHECK (default_connect_fee BETWEEN 0 AND 1000000000000),
    default_min_charge      bigint NOT NULL DEFAULT 0 CHECK (default_min_charge BETWEEN 0 AND 1000000000000),
    default_first_increment integer NOT NULL DEFAULT 60 CHECK (default_first_increment BETWEEN 1 AND 86400),
    default_next_increment  integer NOT NULL DEFAULT 60 CHECK (default_next_increment BETWEEN 1 AND 86400),
    default_description     text NOT NULL DEFAULT '' CHECK (length(default_description) <= 200),
    -- Dates in time_zone on which only bands with the holiday day apply.
    holidays                date[] NOT NULL DEFAULT '{}',
    effective_from          timestamptz NOT NULL DEFAULT '1970-01-01T00:00:00Z',
    version                 bigint NOT NULL DEFAULT 1,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rate_decks_one_owner CHECK ((account_id IS NULL) <> (gateway IS NULL))
);
-- Two decks of one owner taking over at the same instant would make the
-- deck in force ambiguous.
CREATE UNIQUE INDEX rate_decks_account_from_key ON rate_decks (account_id, effective_from) WHERE account_id IS NOT NULL;
CREATE UNIQUE INDEX rate_decks_gateway_from_key ON rate_decks (gateway, effective_from) WHERE gateway IS NOT NULL;

CREATE TABLE rates (
    deck_id          uuid NOT NULL REFERENCES rate_decks(id) ON DELETE CASCADE,
    prefix           text NOT NULL CHECK (prefix ~ '^[1-9][0-9]{0,14}$'),
    description      text NOT NULL DEFAULT '' CHECK (length(description) <= 200),
    band             text NOT NULL DEFAULT '' CHECK (length(band) <= 200),
    per_minute       bigint NOT NULL CHECK (per_minute BETWEEN 0 AND 1000000000000),
    connect_fee      bigint NOT NULL DEFAULT 0 CHECK (connect_fee BETWEEN 0 AND 1000000000000),
    min_charge       bigint NOT NULL DEFAULT 0 CHECK (min_charge BETWEEN 0 AND 1000000000000),
    first_increment  integer NOT NULL DEFAULT 60 CHECK (first_increment BETWEEN 1 AND 86400),
    next_increment   integer NOT NULL DEFAULT 60 CHECK (next_increment BETWEEN 1 AND 86400),
    -- Bit n is weekday n (0 Sunday); bit 7 is the deck's holidays.
    days             smallint NOT NULL DEFAULT 255 CHECK (days BETWEEN 1 AND 255),
    time_from        integer NOT NULL DEFAULT 0 CHECK (time_from BETWEEN 0 AND 86399),
    time_until       integer NOT NULL DEFAULT 86400 CHECK (time_until BETWEEN 1 AND 86400),
    effective_from   timestamptz,
    effective_until  timestamptz,
    priority         integer NOT NULL DEFAULT 0,
    CHECK (time_from < time_until),
    CHECK (effective_from IS NULL OR effective_until IS NULL OR effective_until > effective_from)
);
-- The same key rating.ParseCSV refuses twice in one file.
CREATE UNIQUE INDEX rates_key ON rates (deck_id, prefix, days, time_from, time_until,
    coalesce(effective_from, '1970-01-01T00:00:00Z'::timestamptz), priority);
