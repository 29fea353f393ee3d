-- `orch usage`: agent usage per (UTC) day, project and agent, from the day `?1` on, newest first.
SELECT agent_usage.day, projects.name, agent_usage.agent, COUNT(DISTINCT agent_usage.run_id),
       COUNT(*), SUM(agent_usage.input_tokens + agent_usage.output_tokens),
       SUM(agent_usage.cost_usd)
FROM agent_usage JOIN tasks ON tasks.id = agent_usage.task_id
JOIN projects ON projects.id = tasks.project_id
WHERE agent_usage.day >= ?1
GROUP BY agent_usage.day, projects.name, agent_usage.agent
ORDER BY agent_usage.day DESC, projects.name, agent_usage.agent
