-- A gated claim (under the limits' lock), with `claim_rest`: take this queued task, chosen by
-- the limits, as `claim_pick_next` takes the best one. Returns nothing when another
-- transaction holds or changed it.
WITH next AS (
    SELECT id FROM tasks WHERE id = $7 AND status = 'queued'
    FOR UPDATE SKIP LOCKED
)
