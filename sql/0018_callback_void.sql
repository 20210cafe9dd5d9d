-- 0018: void callbacks, shared by every controller.
--
-- A creation whose outcome the API could not learn (the connection died
-- around the commit and the callback could not be found) is answered with
-- an error. Its id is then taken by a row in status 'void': no worker
-- claims it, no list or lookup shows it, and the creation statement, if
-- the server is still running it, can no longer insert that id (the
-- primary key refuses it), so no controller dials a callback whose request
-- was answered with an error. A void row holds the request's numbers only
-- because the columns require them; it is deleted after a day.
ALTER TABLE callbacks DROP CONSTRAINT callbacks_status_check;
ALTER TABLE callbacks ADD CONSTRAINT callbacks_status_check CHECK (status IN
    ('queued', 'calling_a', 'a_answered', 'calling_b', 'bridged', 'completed', 'failed', 'void'));
CREATE INDEX callbacks_void_idx ON callbacks (created_at) WHERE status = 'void';
