SELECT project_id FROM tasks WHERE id = ?1
