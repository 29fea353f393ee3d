SELECT r.id, r.task_id, r.keys, r.created_at, r.expires_at
FROM info_requests r JOIN tasks t ON t.id = r.task_id
WHERE r.state = 'open' AND r.expires_at IS NOT NULL AND r.expires_at <= $1
  AND t.status = 'awaiting_input'
ORDER BY r.id
