SELECT id, project_id, name, source, created_at FROM workflows ORDER BY id
