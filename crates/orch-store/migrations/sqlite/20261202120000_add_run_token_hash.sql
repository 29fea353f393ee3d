-- Fencing tokens are random secrets, one per claim (issue 9): the run's id is in URLs and
-- guessable, so it no longer proves anything. The store keeps only the token's SHA-256; the
-- secret itself exists only in the claim answer and the claiming worker's memory. Runs claimed
-- before this migration have no hash, so no token matches them: their workers see `lease_lost`
-- and stale recovery gives their tasks back.
ALTER TABLE runs ADD COLUMN token_sha256 BLOB;

-- Refusals of requests by anyone but the run's holder (a wrong owner or a made-up token) are
-- rate-limited: at most one `refused` event per run per window, which says how many requests
-- were refused since the last one. These two columns hold that window.
ALTER TABLE runs ADD COLUMN refusal_recorded_at INTEGER;
ALTER TABLE runs ADD COLUMN refusals_unrecorded INTEGER NOT NULL DEFAULT 0;

-- Run ids are no longer fencing tokens, but they still order a task's runs and name them in
-- events, so they must still only grow: the trigger stays, with a message that says why.
DROP TRIGGER runs_refuse_delete;
CREATE TRIGGER runs_refuse_delete BEFORE DELETE ON runs
BEGIN
    SELECT RAISE(ABORT, 'runs are never deleted: their ids order and name a task''s history');
END;
