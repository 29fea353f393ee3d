SELECT id, name, path, created_at FROM projects WHERE name = ?1
