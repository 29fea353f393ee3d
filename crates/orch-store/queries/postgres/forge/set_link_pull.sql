UPDATE task_forge_links SET pr_number = $2, pr_url = $3, head_branch = $4, updated_at = $5
WHERE task_id = $1
