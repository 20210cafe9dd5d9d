-- 0009: webhooks identified by their event.
--
-- An event heard by several controllers (each follows every node's
-- events, so each sees a binding call start) or offered again after a
-- lost reply was enqueued once per offer. event_id names the event a
-- webhook reports; the outbox keeps one webhook per account and event id.
-- Webhooks written in the transaction of the change they report (callback
-- status changes) need none and leave it NULL.
ALTER TABLE webhooks ADD COLUMN event_id text CHECK (length(event_id) BETWEEN 1 AND 200);
CREATE UNIQUE INDEX webhooks_event_id ON webhooks (account_id, event_id) WHERE event_id IS NOT NULL;
