UPDATE info_requests SET state = 'closed', closed_at = ?1, closed_by = ?2
WHERE state = 'open'
  AND (SELECT status FROM tasks WHERE tasks.id = info_requests.task_id) <> 'awaiting_input'
