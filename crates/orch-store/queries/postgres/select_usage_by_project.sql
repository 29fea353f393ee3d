SELECT p.name, COUNT(*), SUM(u.input_tokens)::BIGINT, SUM(u.output_tokens)::BIGINT, SUM(u.cost_usd)
FROM agent_usage u JOIN tasks t ON t.id = u.task_id JOIN projects p ON p.id = t.project_id
GROUP BY p.name ORDER BY p.name
