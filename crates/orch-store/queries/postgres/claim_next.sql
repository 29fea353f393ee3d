WITH next AS (
    SELECT id FROM tasks WHERE status = 'queued'
    ORDER BY priority DESC, id LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks
SET status = 'running', attempts_used = attempts_used + 1, run_count = run_count + 1,
    status_reason = NULL, not_before = NULL, updated_at = $1
FROM next WHERE tasks.id = next.id AND tasks.status = 'queued'
RETURNING tasks.id, tasks.run_count
