SELECT id, message, agent, step, session_id FROM task_replies
WHERE task_id = $1 AND answered_run IS NULL ORDER BY id LIMIT 1
