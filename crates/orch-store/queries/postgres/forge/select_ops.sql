-- Every op, or a task's ($1 NULL: all), oldest first.
SELECT id, idempotency_key, project_id, task_id, event_id, op, state, attempts, next_attempt_at,
    last_error, result, created_at, lease_owner
FROM forge_outbox WHERE $1::BIGINT IS NULL OR task_id = $1 ORDER BY id
