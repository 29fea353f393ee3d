SELECT id, task_id, run_id, step, keys, hint, reason, state, created_at, expires_at,
       closed_at, closed_by
FROM info_requests WHERE task_id = ?1
ORDER BY id
