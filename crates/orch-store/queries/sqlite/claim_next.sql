UPDATE tasks
SET status = 'running', attempts_used = attempts_used + 1, run_count = run_count + 1,
    status_reason = NULL, not_before = NULL, updated_at = ?1
WHERE id = (SELECT id FROM tasks WHERE status = 'queued' ORDER BY priority DESC, id LIMIT 1)
RETURNING id, run_count
