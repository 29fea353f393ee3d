UPDATE tasks SET attempts_used = $2 WHERE id = $1
