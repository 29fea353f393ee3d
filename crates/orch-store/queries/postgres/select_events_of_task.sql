SELECT id, task_id, run_id, at, actor, kind, from_status, to_status, reason, data
FROM events WHERE task_id = $1 ORDER BY id
