INSERT INTO job_firings (job_id, slot_at, kind, task_id, error, fired_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
