INSERT INTO task_deps (task_id, dep_id) VALUES ($1, $2) ON CONFLICT DO NOTHING
