-- `select_children` of run $1's task (sent right after `end_run_facts`, so read under its lock).
SELECT t.id, t.key, t.title, t.status
FROM tasks t
WHERE t.parent_id = (SELECT task_id FROM runs WHERE id = $1)
ORDER BY t.id
