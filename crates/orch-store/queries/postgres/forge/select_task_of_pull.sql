SELECT task_id FROM task_forge_links WHERE project_id = $1 AND repo = $2 AND pr_number = $3 ORDER BY task_id LIMIT 1
