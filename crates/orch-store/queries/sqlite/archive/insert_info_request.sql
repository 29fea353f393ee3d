INSERT INTO info_requests (id, task_id, run_id, step, keys, hint, reason, state, created_at,
    expires_at, closed_at, closed_by)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
