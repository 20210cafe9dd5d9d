-- 0021: the carrier attempts of callback legs. A leg a route plan routes
-- is placed through its gateways in turn; each attempt is in the
-- callback's history (gateway_attempt and failover entries: the gateway,
-- the attempt's number among the leg's, the hangup cause and the
-- carrier's final SIP response, how long it took), and the leg's record
-- names the gateway of its current placement.
ALTER TABLE callback_events
    ADD COLUMN gateway         text     NOT NULL DEFAULT '',
    ADD COLUMN gateway_attempt smallint NOT NULL DEFAULT 0 CHECK (gateway_attempt BETWEEN 0 AND 100),
    ADD COLUMN cause           text     NOT NULL DEFAULT '',
    ADD COLUMN sip_status      smallint NOT NULL DEFAULT 0 CHECK (sip_status BETWEEN 0 AND 699),
    ADD COLUMN duration_ms     bigint   NOT NULL DEFAULT 0 CHECK (duration_ms >= 0);
ALTER TABLE callback_legs ADD COLUMN gateway text NOT NULL DEFAULT '';
