SELECT id, task_id, attempt, owner, lease_expires_at, state, started_at, ended_at, outcome
FROM runs WHERE id = $1
