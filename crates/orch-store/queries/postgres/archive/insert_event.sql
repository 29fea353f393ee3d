INSERT INTO events (id, task_id, run_id, at, actor, kind, from_status, to_status, reason, data)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
