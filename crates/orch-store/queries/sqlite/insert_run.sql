INSERT INTO runs (task_id, attempt, owner, lease_expires_at, state, started_at)
VALUES (?1, ?2, ?3, ?4, 'active', ?5)
RETURNING id
