UPDATE task_deps SET waived = TRUE
WHERE task_id = $1 AND dep_id = $2 AND NOT waived
