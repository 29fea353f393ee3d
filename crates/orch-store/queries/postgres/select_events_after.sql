SELECT e.id, e.task_id, e.run_id, e.at, e.actor, e.kind, e.from_status, e.to_status, e.reason,
       e.data, t.workflow_id
FROM events e JOIN tasks t ON t.id = e.task_id
WHERE e.id > $1 ORDER BY e.id LIMIT $2
