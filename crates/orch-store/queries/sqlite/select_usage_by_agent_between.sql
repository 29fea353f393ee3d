-- Agent usage recorded in a day window, per agent: runs that used it, sessions, tokens, cost.
SELECT agent, COUNT(DISTINCT run_id), COUNT(*), SUM(input_tokens + output_tokens), SUM(cost_usd)
FROM agent_usage
WHERE recorded_at >= ?1 AND recorded_at < ?2
GROUP BY agent
