SELECT day, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_usd)
FROM agent_usage GROUP BY day ORDER BY day DESC LIMIT $1
