SELECT id, status FROM tasks ORDER BY id
