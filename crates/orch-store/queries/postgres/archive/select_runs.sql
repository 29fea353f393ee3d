SELECT id, task_id, attempt, owner, lease_expires_at, state, started_at, ended_at, outcome,
       token_sha256, refusal_recorded_at, refusals_unrecorded
FROM runs ORDER BY id
