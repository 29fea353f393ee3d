SELECT id, project_id, workflow_id, parent_id, key, title, priority, spec, status, status_reason,
       approved, attempts_used, max_attempts, run_count, not_before, created_at, updated_at,
       unique_key
FROM tasks ORDER BY id
