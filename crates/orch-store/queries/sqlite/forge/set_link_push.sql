UPDATE task_forge_links SET head_branch = ?2, pushed_commit = ?3, updated_at = ?4 WHERE task_id = ?1
