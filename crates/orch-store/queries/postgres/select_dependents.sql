SELECT d.task_id FROM task_deps d WHERE d.dep_id = $1 ORDER BY d.task_id
