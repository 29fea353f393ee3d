SELECT id, name, path, created_at FROM projects ORDER BY id
