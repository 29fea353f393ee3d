UPDATE job_firings SET task_id = ?3 WHERE job_id = ?1 AND slot_at = ?2
