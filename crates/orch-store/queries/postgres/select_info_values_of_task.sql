SELECT v.request_id, r.step, v.key, v.secret, v.value
FROM info_values v JOIN info_requests r ON r.id = v.request_id
WHERE v.task_id = $1 AND r.state = 'answered'
ORDER BY v.request_id, v.key
