SELECT agent, COUNT(*), SUM(input_tokens)::BIGINT, SUM(output_tokens)::BIGINT, SUM(cost_usd)
FROM agent_usage GROUP BY agent ORDER BY agent
