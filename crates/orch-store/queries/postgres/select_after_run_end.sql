-- What deciding about run $1's task needs besides its facts, sent right after `end_run_facts`
-- and so read under its lock, in one statement: the task's children (kind 'c', as
-- `select_children`), the tasks to settle after it (kind 'd': its dependents and its parent; a
-- new dependent must lock the task to be created, so none can appear until commit), and its
-- pending replies (kind 'r'; a reply locks the task too). Ordered by kind, then id.
WITH task AS (SELECT task_id AS id FROM runs WHERE id = $1)
SELECT 'c' AS kind, t.id, t.key, t.title, t.status
FROM tasks t WHERE t.parent_id = (SELECT id FROM task)
UNION ALL
SELECT 'd', x.id, NULL, NULL, NULL FROM (
    SELECT d.task_id AS id FROM task_deps d WHERE d.dep_id = (SELECT id FROM task)
    UNION
    SELECT t.parent_id FROM tasks t
    WHERE t.id = (SELECT id FROM task) AND t.parent_id IS NOT NULL
) x
UNION ALL
SELECT 'r', r.id, NULL, NULL, NULL
FROM task_replies r WHERE r.task_id = (SELECT id FROM task) AND r.answered_run IS NULL
ORDER BY 1, 2
