UPDATE task_forge_links SET marker_comment_id = $2, updated_at = $3 WHERE task_id = $1
