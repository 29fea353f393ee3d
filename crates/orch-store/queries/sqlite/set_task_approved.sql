UPDATE tasks SET approved = 1 WHERE id = ?1
