-- A task's link row, if it has none yet (its project's id and the repository given).
INSERT INTO task_forge_links (task_id, project_id, repo, updated_at)
SELECT id, project_id, $2, $3 FROM tasks WHERE id = $1
ON CONFLICT (task_id) DO NOTHING
