-- What running tasks count under: their project and spec (agents and labels are in the spec).
SELECT projects.name, tasks.spec
FROM tasks JOIN projects ON projects.id = tasks.project_id
WHERE tasks.status = 'running'
