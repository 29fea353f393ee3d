-- The whole claim in one statement: take the best queued task no other claimer holds, mark it
-- running, open its run and log the claim. Returns nothing when no task is free.
WITH next AS (
    SELECT id FROM tasks WHERE status = 'queued'
    ORDER BY priority DESC, id LIMIT 1
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE tasks
    SET status = 'running', attempts_used = attempts_used + 1, run_count = run_count + 1,
        status_reason = NULL, not_before = NULL, updated_at = $1
    FROM next WHERE tasks.id = next.id AND tasks.status = 'queued'
    RETURNING tasks.id, tasks.run_count
), run AS (
    INSERT INTO runs (task_id, attempt, owner, lease_expires_at, state, started_at, token_sha256)
    SELECT id, run_count, $2, $3, 'active', $1, $4 FROM claimed
    RETURNING id, task_id, attempt
)
INSERT INTO events (task_id, run_id, at, actor, kind, from_status, to_status, reason, data)
SELECT task_id, id, $1, $5, 'claim', 'queued', 'running', NULL,
       jsonb_build_object('owner', $2::TEXT, 'attempt', attempt, 'token', $6::TEXT)::TEXT
FROM run
RETURNING task_id, run_id, (SELECT attempt FROM run)
