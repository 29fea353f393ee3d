INSERT INTO workflows (id, project_id, name, source, created_at) VALUES ($1, $2, $3, $4, $5)
