-- Stored once per idempotency key: a repeat inserts nothing.
INSERT INTO forge_outbox (idempotency_key, project_id, task_id, event_id, op, next_attempt_at,
    created_at, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6)
ON CONFLICT (idempotency_key) DO NOTHING
