SELECT t.id, t.key, t.title, t.status
FROM task_deps d JOIN tasks t ON t.id = d.dep_id
WHERE d.task_id = $1 AND NOT d.waived
ORDER BY t.id
FOR SHARE OF t
