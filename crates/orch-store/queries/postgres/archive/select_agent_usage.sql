SELECT run_id, step, task_id, agent, model, session_id, input_tokens, output_tokens, cost_usd,
       day, recorded_at
FROM agent_usage ORDER BY run_id, step
