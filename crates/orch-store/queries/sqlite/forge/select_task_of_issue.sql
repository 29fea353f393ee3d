SELECT task_id FROM task_forge_links WHERE project_id = ?1 AND repo = ?2 AND issue_number = ?3
