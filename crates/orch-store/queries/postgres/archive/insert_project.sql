INSERT INTO projects (id, name, path, created_at) VALUES ($1, $2, $3, $4)
