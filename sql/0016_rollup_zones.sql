-- 0016: the zone rollups were made in.
--
-- Days and months are read in a zone (CALLBRIDGE_TIMEZONE, or bill
-- --timezone). Rollups of one account and month made in two zones would
-- overlap or leave gaps, and an invoice would bill neither. rollup_zones
-- records, per account and month, the zone its rollups were made in; a
-- rollup or an invoice run in another zone for that month or a month next
-- to it (a zone's day can reach into the next month of another zone) is
-- refused. Rollups made before this migration have no record: the first
-- run after it records its zone.
CREATE TABLE rollup_zones (
    account_id  uuid NOT NULL,
    month       date NOT NULL CHECK (extract(day FROM month) = 1),
    zone        text NOT NULL,
    PRIMARY KEY (account_id, month)
);
