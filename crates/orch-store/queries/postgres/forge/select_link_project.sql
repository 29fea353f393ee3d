SELECT project_id FROM task_forge_links WHERE task_id = $1
