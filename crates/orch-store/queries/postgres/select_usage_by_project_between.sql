-- Agent usage recorded in a day window, per project: runs, sessions, tokens, cost.
SELECT projects.name, COUNT(DISTINCT agent_usage.run_id), COUNT(*),
       SUM(agent_usage.input_tokens + agent_usage.output_tokens)::BIGINT, SUM(agent_usage.cost_usd)
FROM agent_usage JOIN tasks ON tasks.id = agent_usage.task_id
JOIN projects ON projects.id = tasks.project_id
WHERE agent_usage.recorded_at >= $1 AND agent_usage.recorded_at < $2
GROUP BY projects.name
