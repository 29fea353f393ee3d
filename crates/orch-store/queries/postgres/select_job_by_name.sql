SELECT j.id, j.name, j.project_id, p.path, j.schedule, j.timezone, j.missed, j.target, j.source, j.enabled, j.last_slot, j.created_at, j.updated_at
FROM jobs j JOIN projects p ON p.id = j.project_id
WHERE j.name = $1
