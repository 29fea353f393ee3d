-- The tasks to settle after this one's status changed: its dependents, and its parent (a
-- parent waits for its children).
SELECT d.task_id FROM task_deps d WHERE d.dep_id = ?1
UNION
SELECT t.parent_id FROM tasks t WHERE t.id = ?1 AND t.parent_id IS NOT NULL
ORDER BY 1
