INSERT INTO runs (task_id, attempt, owner, lease_expires_at, state, started_at, token_sha256)
VALUES ($1, $2, $3, $4, 'active', $5, $6)
RETURNING id
