INSERT INTO task_replies (task_id, message, agent, step, session_id, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
