SELECT id, task_id, run_id, at, actor, kind, from_status, to_status, reason, data
FROM events ORDER BY id
