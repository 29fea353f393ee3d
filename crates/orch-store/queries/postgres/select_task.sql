SELECT id, project_id, workflow_id, parent_id, spec, status, status_reason, approved,
       attempts_used, max_attempts, run_count, not_before, created_at, updated_at,
       (SELECT string_agg(dep_id::TEXT, ',') FROM task_deps WHERE task_id = tasks.id) AS needs,
       (SELECT id FROM runs WHERE task_id = tasks.id AND state = 'active') AS current_run
FROM tasks WHERE id = $1
