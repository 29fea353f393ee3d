INSERT INTO agent_usage (run_id, step, task_id, agent, model, session_id, input_tokens,
                         output_tokens, cost_usd, day, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
