INSERT INTO runs (id, task_id, attempt, owner, lease_expires_at, state, started_at, ended_at,
                  outcome, token_sha256, refusal_recorded_at, refusals_unrecorded)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
