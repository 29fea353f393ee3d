SELECT task_id, issue_number, pr_number FROM task_forge_links WHERE project_id = $1 AND (issue_number IS NOT NULL OR pr_number IS NOT NULL) ORDER BY task_id
