SELECT id, task_id, attempt, owner, token, lease_expires_at, state, started_at, ended_at, outcome
FROM runs WHERE state = 'active' ORDER BY id
