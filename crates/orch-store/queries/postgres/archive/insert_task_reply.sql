INSERT INTO task_replies (id, task_id, message, agent, step, session_id, created_at, answered_run)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
