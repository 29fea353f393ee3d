SELECT DISTINCT task_id FROM info_requests WHERE state = 'open' AND ?1 = ?1 ORDER BY task_id
