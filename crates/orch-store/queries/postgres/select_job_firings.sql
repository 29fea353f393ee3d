SELECT job_id, slot_at, kind, task_id, error, fired_at FROM job_firings
WHERE job_id = $1 ORDER BY slot_at DESC LIMIT $2
