SELECT id, idempotency_key, project_id, task_id, event_id, op, state, attempts, next_attempt_at,
    last_error, result, created_at, updated_at
FROM forge_outbox ORDER BY id
