SELECT t.id, t.key, t.title, t.status
FROM tasks t
WHERE t.parent_id = $1
ORDER BY t.id
