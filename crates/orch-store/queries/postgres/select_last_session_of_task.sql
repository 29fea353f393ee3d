SELECT agent, step, session_id FROM agent_usage
WHERE task_id = $1 AND session_id IS NOT NULL AND session_id <> ''
ORDER BY run_id DESC, recorded_at DESC LIMIT 1
