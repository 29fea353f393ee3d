SELECT id, task_id, message, agent, step, session_id, created_at, answered_run
FROM task_replies ORDER BY id
