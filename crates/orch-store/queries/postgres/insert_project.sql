INSERT INTO projects (name, path, created_at) VALUES ($1, $2, $3)
RETURNING id, name, path, created_at
