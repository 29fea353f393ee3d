UPDATE tasks SET status_reason = $2 WHERE id = $1 AND status_reason IS DISTINCT FROM $2
