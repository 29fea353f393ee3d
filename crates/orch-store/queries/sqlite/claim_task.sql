-- A gated claim: take this queued task (chosen by the limits), mark it running.
UPDATE tasks
SET status = 'running', attempts_used = attempts_used + 1, run_count = run_count + 1,
    status_reason = NULL, not_before = NULL, updated_at = ?1
WHERE id = ?2 AND status = 'queued'
RETURNING id, run_count
