SELECT 1 FROM tasks WHERE status = 'queued' LIMIT 1
