-- Zero rows: the task is linked to another issue already.
UPDATE task_forge_links SET issue_number = $2, updated_at = $3
WHERE task_id = $1 AND (issue_number IS NULL OR issue_number = $2)
