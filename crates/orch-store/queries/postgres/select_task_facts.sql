SELECT id, status, attempts_used, max_attempts, approved, spec,
       (SELECT id FROM runs WHERE task_id = tasks.id AND state = 'active') AS current_run
FROM tasks WHERE id = $1
FOR UPDATE OF tasks
