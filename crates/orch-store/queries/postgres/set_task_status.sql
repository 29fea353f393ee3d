UPDATE tasks SET status = $3, status_reason = $4, not_before = $5, updated_at = $6
WHERE id = $1 AND status = $2
