UPDATE task_deps SET waived = 1
WHERE task_id = ?1 AND dep_id = ?2 AND waived = 0
