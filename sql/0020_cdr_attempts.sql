-- 0020: the attempt of a leg routed by a route plan. A binding call's
-- sequential bridge (and a callback leg's failover) tries the plan's
-- gateways in turn; every attempt is a leg with its own CDR, linked to
-- the leg it serves by other_uuid. attempt numbers them, 1 for the first
-- gateway tried; 0 for legs no plan routed.
ALTER TABLE cdrs ADD COLUMN attempt smallint NOT NULL DEFAULT 0 CHECK (attempt BETWEEN 0 AND 100);
ALTER TABLE cdr_staging ADD COLUMN attempt smallint NOT NULL DEFAULT 0;
