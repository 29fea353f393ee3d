-- Runs started in a day window, per project (the daily run quota).
SELECT projects.name, COUNT(*)
FROM runs JOIN tasks ON tasks.id = runs.task_id JOIN projects ON projects.id = tasks.project_id
WHERE runs.started_at >= $1 AND runs.started_at < $2
GROUP BY projects.name
