SELECT run_id, step, agent, model, session_id, input_tokens, output_tokens, cost_usd, day
FROM agent_usage WHERE task_id = $1 ORDER BY run_id, step
