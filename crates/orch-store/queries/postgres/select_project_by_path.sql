SELECT id, name, path, created_at FROM projects WHERE path = $1
