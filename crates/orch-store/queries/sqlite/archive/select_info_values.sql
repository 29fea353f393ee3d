SELECT request_id, task_id, key, secret, value FROM info_values ORDER BY request_id, key
