INSERT INTO info_requests (task_id, run_id, step, keys, hint, reason, state, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8)
RETURNING id
