SELECT task_id, owner, state, token_sha256, refusal_recorded_at, refusals_unrecorded
FROM runs WHERE id = $1
