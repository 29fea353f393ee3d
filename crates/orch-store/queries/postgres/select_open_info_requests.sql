SELECT r.id, r.task_id, r.run_id, r.step, r.keys, r.hint, r.reason, r.state, r.created_at,
       r.expires_at, r.closed_at, r.closed_by
FROM info_requests r JOIN tasks t ON t.id = r.task_id
WHERE r.state = 'open' AND t.status = 'awaiting_input'
ORDER BY r.id
