UPDATE info_requests SET state = 'closed', closed_at = ?2, closed_by = ?3
WHERE task_id = ?1 AND state = 'open'
