-- A gated claim's candidates, best first (the claim order), with what they count under.
SELECT tasks.id, projects.name, tasks.spec, tasks.status_reason
FROM tasks JOIN projects ON projects.id = tasks.project_id
WHERE tasks.status = 'queued'
ORDER BY tasks.priority DESC, tasks.id LIMIT ?1
