INSERT INTO runs (task_id, attempt, owner, token, lease_expires_at, state, started_at)
VALUES (?1, ?2, ?3, (SELECT IFNULL(MAX(token), 0) + 1 FROM runs), ?4, 'active', ?5)
RETURNING id, token
