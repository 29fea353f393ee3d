INSERT INTO tasks (id, project_id, workflow_id, parent_id, key, title, priority, spec, status,
                   status_reason, approved, attempts_used, max_attempts, run_count, not_before,
                   created_at, updated_at, unique_key)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
