-- The whole claim in one statement (with `claim_rest`): take the best queued task no other
-- claimer holds, mark it running, open its run, log the claim, and read back what the worker
-- needs. Returns nothing when no task is free.
WITH next AS (
    SELECT id FROM tasks WHERE status = 'queued'
    ORDER BY priority DESC, id LIMIT 1
    FOR UPDATE SKIP LOCKED
)
