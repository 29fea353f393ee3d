INSERT INTO task_deps (task_id, dep_id, waived) VALUES ($1, $2, $3)
