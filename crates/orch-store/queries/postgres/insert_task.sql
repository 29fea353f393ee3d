INSERT INTO tasks (project_id, workflow_id, parent_id, key, title, priority, spec, status,
                   status_reason, max_attempts, created_at, updated_at, unique_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12)
RETURNING id
