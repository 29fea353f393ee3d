SELECT 1 FROM tasks WHERE status = 'queued' AND ?1 = ?1 LIMIT 1
