SELECT job_id, slot_at, kind, task_id, error, fired_at FROM job_firings
ORDER BY job_id, slot_at
