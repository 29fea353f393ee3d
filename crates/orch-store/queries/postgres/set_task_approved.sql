UPDATE tasks SET approved = TRUE WHERE id = $1
