SELECT agent, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_usd)
FROM agent_usage GROUP BY agent ORDER BY agent
