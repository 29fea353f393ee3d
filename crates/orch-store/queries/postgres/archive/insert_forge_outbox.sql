INSERT INTO forge_outbox (id, idempotency_key, project_id, task_id, event_id, op, state, attempts,
    next_attempt_at, last_error, result, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
