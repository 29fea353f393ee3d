SELECT id, project_id, workflow_id, parent_id, spec, status, status_reason, approved,
       attempts_used, max_attempts, run_count, not_before, created_at, updated_at,
       (SELECT group_concat(dep_id) FROM task_deps WHERE task_id = tasks.id) AS needs,
       (SELECT id FROM runs WHERE task_id = tasks.id AND state = 'active') AS current_run
FROM tasks
WHERE (?1 IS NULL OR status = ?1)
  AND (?2 IS NULL OR project_id = ?2)
  AND (?3 IS NULL OR EXISTS (SELECT 1 FROM json_each(tasks.spec, '$.labels') WHERE value = ?3))
  AND (?4 IS NULL OR EXISTS (SELECT 1 FROM json_each(tasks.spec, '$.steps')
                             WHERE json_extract(value, '$.agent') = ?4))
  AND (?5 IS NULL OR instr(lower(title), lower(?5)) > 0 OR CAST(id AS TEXT) = ?5)
  AND (?6 IS NULL OR workflow_id = ?6)
  AND (?7 IS NULL OR id < ?7)
ORDER BY id DESC
LIMIT ?8
