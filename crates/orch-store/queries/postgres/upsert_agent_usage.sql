INSERT INTO agent_usage (run_id, step, task_id, agent, model, session_id, input_tokens, output_tokens, cost_usd, day, recorded_at)
SELECT $1, $2, runs.task_id, $4, $5, $6, $7, $8, $9, $10, $11
FROM runs WHERE runs.id = $1 AND runs.token_sha256 = $3 AND runs.owner = $12 AND runs.state = 'active'
ON CONFLICT (run_id, step) DO UPDATE SET
    agent = excluded.agent, model = excluded.model, session_id = excluded.session_id,
    input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,
    cost_usd = excluded.cost_usd, day = excluded.day, recorded_at = excluded.recorded_at
