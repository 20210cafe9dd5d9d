-- 0007: billing speed.
--
-- The daily rollup reads one day of CDRs for every account. cdrs_account_idx
-- leads with the account, so a day across all accounts was one index probe
-- per account (and a random heap read per CDR). CDRs are written when calls
-- hang up, so a partition's heap is in start_at order up to call length and
-- late arrivals: a BRIN index on start_at finds a day's pages for a few
-- kilobytes of index and almost no cost on the CDR write path, where a
-- B-tree would add a fourth index to every insert. Partitions created
-- later by cdrs_ensure_partition get it when they are attached.
CREATE INDEX cdrs_start_brin ON cdrs USING brin (start_at) WITH (pages_per_range = 16);

-- invoice_recheck: the months of an account whose rollups changed since an
-- invoice last compared them with what was invoiced. An invoice compares
-- its own month and the marked months of the correction window only, so
-- closing a month reads one month of rollups, not a year of them. The
-- rollup marks every month it changes, in the same transaction; the
-- invoice run clears the marks it compared. Every month rolled up so far
-- starts marked, so the first run after this migration compares them all.
CREATE TABLE invoice_recheck (
    account_id  uuid NOT NULL,
    month       date NOT NULL CHECK (extract(day FROM month) = 1),
    PRIMARY KEY (account_id, month)
);
INSERT INTO invoice_recheck (account_id, month)
SELECT DISTINCT account_id, day - (extract(day FROM day)::int - 1) FROM rollups;

-- Rollups are written a day at a time, so their heap is in day order: a
-- BRIN index finds a day's rows (the daily report, a day's recompute) as
-- well as the B-tree did, without a B-tree insert for every rollup row.
-- Reads by account use the primary key.
DROP INDEX rollups_day_idx;
CREATE INDEX rollups_day_brin ON rollups USING brin (day) WITH (pages_per_range = 8);
