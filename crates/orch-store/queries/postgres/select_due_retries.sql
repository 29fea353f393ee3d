SELECT id FROM tasks WHERE status = 'retry_wait' AND not_before <= $1 ORDER BY not_before
