SELECT DISTINCT task_id FROM info_requests WHERE state = 'open' ORDER BY task_id
