-- `select_dependents` of run $1's task (sent right after `end_run_facts`, so read under its
-- lock: a new dependent must lock the task to be created, so none can appear until commit).
SELECT d.task_id FROM task_deps d WHERE d.dep_id = (SELECT task_id FROM runs WHERE id = $1)
UNION
SELECT t.parent_id FROM tasks t
WHERE t.id = (SELECT task_id FROM runs WHERE id = $1) AND t.parent_id IS NOT NULL
ORDER BY 1
