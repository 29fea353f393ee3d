SELECT id, project_id, workflow_id, parent_id, spec, status, status_reason, approved,
       attempts_used, max_attempts, run_count, not_before, created_at, updated_at,
       (SELECT string_agg(dep_id::TEXT, ',') FROM task_deps WHERE task_id = tasks.id) AS needs,
       (SELECT id FROM runs WHERE task_id = tasks.id AND state = 'active') AS current_run
FROM tasks
WHERE ($1::TEXT IS NULL OR status = $1)
  AND ($2::BIGINT IS NULL OR project_id = $2)
  AND ($3::TEXT IS NULL OR (spec::JSONB -> 'labels') ? $3)
  AND ($4::TEXT IS NULL
       OR (spec::JSONB -> 'steps') @> jsonb_build_array(jsonb_build_object('agent', $4::TEXT)))
  AND ($5::TEXT IS NULL OR strpos(lower(title), lower($5)) > 0 OR id::TEXT = $5)
  AND ($6::BIGINT IS NULL OR workflow_id = $6)
  AND ($7::BIGINT IS NULL OR id < $7)
ORDER BY id DESC
LIMIT $8
